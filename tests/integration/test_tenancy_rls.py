"""Row-level security: the application role sees no tenant rows without app.tenant_id."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import Harness, raw_connect

SHIRT = {"sku": "S-1", "name": "Shirt", "price": {"amount": 100, "currency": "EUR"}, "stock": 1}


async def test_app_role_without_tenant_sees_no_rows(harness: Harness, acme: dict[str, Any]) -> None:
    assert (await harness.client.post("/v1/products", json=SHIRT)).status_code == 201
    conn = await raw_connect(harness.cluster, "primary", "storefront_app")
    try:
        assert await conn.fetchval("SELECT count(*) FROM products") == 0
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
        tenant_id = str(acme["tenant"].id)
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
            assert await conn.fetchval("SELECT count(*) FROM products") == 1
        # Outside that transaction the setting is gone again.
        assert await conn.fetchval("SELECT count(*) FROM products") == 0
    finally:
        await conn.close()


async def test_app_role_cannot_write_into_another_tenant(
    harness: Harness, acme: dict[str, Any]
) -> None:
    other, _ = await harness.tenant_with_key("globex")
    conn = await raw_connect(harness.cluster, "primary", "storefront_app")
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('app.tenant_id', $1, true)", str(acme["tenant"].id)
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO products (id, tenant_id, sku, name, price_amount, price_currency,"
                    " stock) VALUES (gen_random_uuid(), $1, 'X', 'X', 1, 'EUR', 1)",
                    other.id,
                )
    finally:
        await conn.close()


async def test_app_role_is_not_the_table_owner(harness: Harness) -> None:
    conn = await raw_connect(harness.cluster, "primary", "postgres")
    try:
        owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename='products'")
        forced = await conn.fetchval(
            "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'products'"
        )
    finally:
        await conn.close()
    assert owner == "storefront"
    assert forced is True


async def test_one_pooled_connection_alternating_tenants_never_mixes_them(
    make_harness: Any,
) -> None:
    """Read-only work sets the tenant at session level with a per-connection cache: with a
    single replica connection, alternating tenants must each see only their own rows."""
    harness: Harness = await make_harness(replica_pool={"size": 1, "max_overflow": 0})
    keys = {}
    for slug in ("acme", "globex"):
        _, keys[slug] = await harness.tenant_with_key(slug)
        created = await harness.client.post(
            "/v1/products", json={**SHIRT, "sku": f"{slug}-1"}, headers={"X-API-Key": keys[slug]}
        )
        assert created.status_code == 201
    harness.client.consistency_token = None
    await harness.wait_for(
        lambda: harness.database_read_on_replica(created.json()["id"]), what="replay"
    )
    for slug in ("acme", "globex", "acme", "globex", "acme"):
        listing = await harness.client.get("/v1/products", headers={"X-API-Key": keys[slug]})
        assert [p["sku"] for p in listing.json()["items"]] == [f"{slug}-1"]
    assert (await harness.ops_db())["replica-1"]["routed_reads"] >= 5

"""Shared steps of the identity tests: sign up, log in, authorize a client."""

from __future__ import annotations

from typing import Any

import httpx

PASSWORD = "correct-horse-battery"


async def sign_up(
    client: httpx.AsyncClient, slug: str = "acme", email: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/v1/tenants",
        json={
            "name": slug.title(),
            "slug": slug,
            "owner": {"email": email or f"owner@{slug}.example", "password": PASSWORD},
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def log_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, expect: int = 200
) -> dict[str, Any]:
    response = await client.post("/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}

"""Identity building blocks without I/O: permission table, key format, tokens, throttle, policy."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from limits.aio.storage import MemoryStorage

from app.core.clock import FixedClock
from app.identity import keys
from app.identity.passwords import WeakPassword, check_password_policy
from app.identity.permissions import SCOPES, Permission, Role, grantable_scopes, role_permissions
from app.identity.principal import InsufficientPermission, Principal
from app.identity.schemas import Scope
from app.identity.throttle import LoginLocked, LoginThrottle
from app.identity.tokens import InvalidToken, TokenService, generate_signing_key
from app.ratelimit.limiter import RateLimiter
from app.settings import LockoutSettings, SigningKey, TokenSettings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_schema_offers_exactly_the_tables_scopes() -> None:
    assert set(get_args(Scope)) == SCOPES


def test_roles_are_cumulative_and_only_owners_transfer_or_delete_keys() -> None:
    ordered = sorted(Role)
    for lower, higher in itertools.pairwise(ordered):
        assert role_permissions(lower) < role_permissions(higher)
    assert Permission.OWNERSHIP_TRANSFER not in role_permissions(Role.admin)
    assert Permission.API_KEYS_DELETE not in role_permissions(Role.admin)
    assert role_permissions(Role.viewer) == {
        Permission.CATALOG_READ,
        Permission.ORDERS_READ,
        Permission.ORDERS_WATCH,  # the live status sockets: the same data as orders.read
        Permission.REPORTS_READ,
    }


def test_grants_never_exceed_the_granter() -> None:
    assert "api_keys:manage" not in grantable_scopes(role_permissions(Role.admin))
    assert grantable_scopes(role_permissions(Role.owner)) == SCOPES
    key = Principal("api_key", uuid.uuid4(), uuid.uuid4(), scopes=frozenset({"catalog:read"}))
    assert grantable_scopes(key.permissions) == {"catalog:read"}
    with pytest.raises(InsufficientPermission):
        key.require(Permission.CATALOG_WRITE)


def test_new_secrets_are_well_formed_and_unique() -> None:
    made = {keys.new_secret() for _ in range(100)}
    assert len(made) == 100
    assert all(keys.well_formed(s) and s.startswith("sf_live_") for s in made)


@given(position=st.integers(min_value=8, max_value=keys.SECRET_LENGTH - 1), char=st.characters())
def test_any_one_character_typo_is_caught_by_the_checksum(position: int, char: str) -> None:
    secret = keys.new_secret()
    typo = secret[:position] + char + secret[position + 1 :]
    assert keys.well_formed(typo) == (typo == secret)


def _tokens(*configured: dict[str, str], clock: FixedClock | None = None) -> TokenService:
    settings = TokenSettings(keys=[SigningKey(**k) for k in configured])  # type: ignore[arg-type]
    return TokenService(settings, clock or FixedClock(NOW))


def test_newest_key_signs_and_older_keys_still_verify() -> None:
    old, new = generate_signing_key("old"), generate_signing_key("new", "ES256")
    before = _tokens(old)
    token = before.issue_access(uuid.uuid4(), uuid.uuid4(), Role.member, uuid.uuid4())
    after = _tokens(old, new)
    assert after.verify_access(token).role is Role.member
    fresh = after.issue_access(uuid.uuid4(), uuid.uuid4(), Role.member, uuid.uuid4())
    assert jwt.get_unverified_header(fresh)["kid"] == "new"
    with pytest.raises(InvalidToken):
        before.verify_access(fresh)  # a process that does not know the new key yet


def test_time_claims_follow_the_clock_with_leeway() -> None:
    clock = FixedClock(NOW)
    service = _tokens(generate_signing_key("k"), clock=clock)
    token = service.issue_access(uuid.uuid4(), uuid.uuid4(), Role.viewer, uuid.uuid4())
    clock.at = NOW + timedelta(seconds=900 + 4)  # expired 4 s ago, within the 5 s leeway
    service.verify_access(token)
    clock.at = NOW + timedelta(seconds=900 + 6)
    with pytest.raises(InvalidToken):
        service.verify_access(token)
    clock.at = NOW - timedelta(seconds=6)  # issued "in the future" beyond the leeway
    with pytest.raises(InvalidToken):
        service.verify_access(token)


def test_bad_key_configuration_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _tokens({"kid": "h", "algorithm": "HS256", "key": "short"})
    with pytest.raises(ValueError, match="not a RS256 key"):
        _tokens({**generate_signing_key("e"), "algorithm": "RS256"})
    private = generate_signing_key("p")
    public_only = _tokens(private)._keys["p"].verifier
    from cryptography.hazmat.primitives import serialization

    pem = public_only.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(ValueError, match="no key can sign"):
        _tokens({"kid": "pub", "algorithm": "EdDSA", "key": pem})


def _throttle(per_account: int, per_ip: int, window: int = 60) -> LoginThrottle:
    """The login throttle on the limiter it uses in production, counting in memory."""
    limiter = RateLimiter(MemoryStorage(), max_lease=1, lease_seconds=1.0, outage_seconds=1.0)
    return LoginThrottle(
        limiter,
        LockoutSettings(
            max_failures_per_account=per_account, max_failures_per_ip=per_ip, window_seconds=window
        ),
    )


async def _try(throttle: LoginThrottle, accounts: list[str]) -> None:
    """An attempt that reserves and gives back at once (raises LoginLocked when refused)."""
    await throttle.reserve(accounts)
    throttle.release(accounts)


def test_the_login_throttle_counts_failures_per_account_in_a_sliding_window() -> None:
    throttle = _throttle(per_account=2, per_ip=10, window=1)

    async def scenario() -> None:
        for _ in range(2):  # two failures are allowed
            await _try(throttle, ["a@x"])
            await throttle.failed("1.1.1.1", ["a@x"])
        with pytest.raises(LoginLocked) as locked:
            await _try(throttle, ["a@x"])
        assert locked.value.retry_after == 1
        await _try(throttle, ["b@x"])  # other accounts are not locked
        with pytest.raises(LoginLocked):  # one locked candidate refuses the attempt
            await _try(throttle, ["b@x", "a@x"])
        await asyncio.sleep(2.05)  # past both windows the sliding counter weighs
        await _try(throttle, ["a@x"])

    asyncio.run(scenario())


def test_an_address_over_its_limit_is_refused_on_its_own() -> None:
    """`attempt_from` decides before any account is known (no credentials lookup), on the
    failures counted from the address; checking counts nothing."""
    throttle = _throttle(per_account=100, per_ip=2)

    async def scenario() -> None:
        for _ in range(5):  # successful logins from an office's NAT address cost nothing
            await throttle.attempt_from("1.1.1.1")
        for n in range(2):
            await throttle.attempt_from("1.1.1.1")
            await throttle.failed("1.1.1.1", [f"u{n}@x"])
        with pytest.raises(LoginLocked):
            await throttle.attempt_from("1.1.1.1")
        await throttle.attempt_from("2.2.2.2")

    asyncio.run(scenario())


def test_a_success_clears_only_its_own_account() -> None:
    throttle = _throttle(per_account=2, per_ip=100)

    async def scenario() -> None:
        for _ in range(2):  # failed tenant-less guesses count on both candidates
            await throttle.failed("1.1.1.1", ["victim", "attacker"])
        await throttle.succeeded("attacker")  # the attacker's own login...
        await _try(throttle, ["attacker"])
        with pytest.raises(LoginLocked):  # ...clears nothing of the victim's count
            await _try(throttle, ["victim"])

    asyncio.run(scenario())


def test_concurrent_attempts_get_at_most_the_remaining_verifications_and_none_waits() -> None:
    """Each attempt in flight holds one of the account's remaining attempts: past them the
    next is refused at once, so concurrent guesses cannot pass the check before the first
    failures count, and nobody queues behind them."""
    throttle = _throttle(per_account=3, per_ip=1000)
    verdicts: list[str] = []

    async def guess() -> None:
        try:
            await throttle.reserve(["victim", "other"])
        except LoginLocked:
            verdicts.append("locked")
            return
        try:
            await asyncio.sleep(0.01)  # the password hash
            verdicts.append("verified")
            await throttle.failed("1.1.1.1", ["victim"])
        finally:
            throttle.release(["victim", "other"])

    async def scenario() -> None:
        await asyncio.gather(*(guess() for _ in range(20)))
        assert throttle._in_flight == {}  # every reservation was given back
        await throttle.reserve(["other"])  # its failures were not counted: still open

    asyncio.run(scenario())
    assert verdicts.count("verified") == 3
    assert verdicts.count("locked") == 17


@pytest.mark.parametrize("password", ["short", "x" * 129, "Password1234", "QWERTY123456"])
def test_password_policy_refuses(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_password_policy(password)


def test_password_policy_accepts_long_unlisted_passphrases() -> None:
    check_password_policy("violet staple orbit 42")
    check_password_policy("x" * 128)

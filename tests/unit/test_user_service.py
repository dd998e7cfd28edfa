"""UserService ownership rules on a fake unit of work (no I/O)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.core.clock import SystemClock
from app.identity.cache import CredentialCache
from app.identity.permissions import Role
from app.identity.principal import InsufficientPermission, Principal
from app.identity.revocations import USER_CHANGED, Revocations
from app.identity.service import EmailTaken, LastOwner, UserService
from tests.unit.fakes import FakeUnitOfWorkFactory

TENANT = uuid.uuid4()


class PlainHasher:
    """Hashing is not what these tests are about."""

    async def hash(self, password: str) -> str:
        return "hashed:" + password


@pytest.fixture
def service() -> tuple[UserService, FakeUnitOfWorkFactory]:
    factory = FakeUnitOfWorkFactory()
    clock = SystemClock()
    cache = CredentialCache(30, 30, clock, tombstone_seconds=935)
    revocations = Revocations(factory, clock, cache, resync_margin_seconds=30)  # type: ignore[arg-type]
    users = UserService(factory, clock, PlainHasher(), cache, revocations)  # type: ignore[arg-type]
    return users, factory


def _actor(role: Role, user_id: uuid.UUID | None = None) -> Principal:
    return Principal("user", user_id or uuid.uuid4(), TENANT, role=role)


async def _user(users: UserService, email: str, role: Role) -> Any:
    return await users.create(TENANT, email, "a-long-password-1", role)


async def test_last_owner_is_kept(service: tuple[UserService, Any]) -> None:
    users, _ = service
    owner = await _user(users, "o@x.example", Role.owner)
    me = _actor(Role.owner, owner.id)
    with pytest.raises(LastOwner):
        await users.update(me, owner.id, role=Role.admin)
    with pytest.raises(LastOwner):
        await users.delete(me, owner.id)
    second = await _user(users, "p@x.example", Role.owner)
    assert (await users.update(me, owner.id, role=Role.admin)).role == "admin"
    with pytest.raises(LastOwner):
        await users.delete(_actor(Role.owner, second.id), second.id)


async def test_only_owners_touch_ownership(service: tuple[UserService, Any]) -> None:
    users, _ = service
    owner = await _user(users, "o@x.example", Role.owner)
    member = await _user(users, "m@x.example", Role.member)
    admin = _actor(Role.admin)
    for attempt in (
        users.update(admin, owner.id, role=Role.member),
        users.update(admin, member.id, role=Role.owner),
        users.delete(admin, owner.id),
        users.update(admin, owner.id, password="taken-over-pass-1"),
        users.create(TENANT, "n@x.example", "a-long-password-1", Role.owner, admin),
    ):
        with pytest.raises(InsufficientPermission):
            await attempt
    assert (await users.update(admin, member.id, role=Role.viewer)).role == "viewer"


async def test_a_new_password_revokes_sessions_and_emails_are_unique_per_tenant(
    service: tuple[UserService, FakeUnitOfWorkFactory],
) -> None:
    users, factory = service
    member = await _user(users, "M@X.example", Role.member)
    assert member.email == "m@x.example"
    with pytest.raises(EmailTaken):
        await _user(users, "m@x.EXAMPLE", Role.viewer)
    elsewhere = await users.create(uuid.uuid4(), "m@x.EXAMPLE", "a-long-password-1", Role.viewer)
    assert elsewhere.email == member.email
    assert elsewhere.tenant_id != member.tenant_id
    await users.update(_actor(Role.admin), member.id, password="another-password-2")
    assert factory.refresh_tokens.revoked_users == [member.id]


async def test_a_refused_change_keeps_nothing(
    service: tuple[UserService, FakeUnitOfWorkFactory],
) -> None:
    users, factory = service
    owner = await _user(users, "o@x.example", Role.owner)
    before = dict(factory.users.rows)
    with pytest.raises(LastOwner):
        await users.update(_actor(Role.owner, owner.id), owner.id, role=Role.viewer)
    assert factory.users.rows == before


async def test_no_one_makes_a_user_stronger_than_themselves(
    service: tuple[UserService, Any],
) -> None:
    users, _ = service
    viewer = await _user(users, "v@x.example", Role.viewer)
    key = Principal("api_key", uuid.uuid4(), TENANT, scopes=frozenset({"users:manage"}))
    with pytest.raises(InsufficientPermission):
        await users.create(TENANT, "n@x.example", "a-long-password-1", Role.viewer, key)
    with pytest.raises(InsufficientPermission):  # taking over an account is gaining its role
        await users.update(key, viewer.id, password="another-password-2")
    reader = Principal(
        "api_key",
        uuid.uuid4(),
        TENANT,
        scopes=frozenset({"users:manage", "catalog:read", "orders:read", "reports:read"}),
    )
    assert (await users.update(reader, viewer.id, password="another-password-2")).role == "viewer"
    await users.delete(key, viewer.id)  # removing gives no one anything


async def test_revocations_are_recorded_and_announced_only_when_committed(
    service: tuple[UserService, FakeUnitOfWorkFactory],
) -> None:
    users, factory = service
    owner = await _user(users, "o@x.example", Role.owner)
    member = await _user(users, "m@x.example", Role.member)
    with pytest.raises(LastOwner):  # rolled back: nothing durable, nothing announced
        await users.update(_actor(Role.owner, owner.id), owner.id, role=Role.viewer)
    assert factory.revocations.rows == {}
    assert factory.invalidations.messages == []
    await users.update(_actor(Role.owner, owner.id), member.id, role=Role.viewer)
    assert factory.invalidations.messages == [(USER_CHANGED, [str(member.id)])]
    await users.delete(_actor(Role.owner, owner.id), member.id)
    assert list(factory.revocations.rows) == [member.id]
    assert factory.invalidations.messages[-1] == ("identity.revoked", [str(member.id)])

"""Use cases of tenant secrets: the webhook signing secret (generated, stored encrypted, shown
once; only its metadata afterwards) and the re-encryption of every stored secret under the
first key of `secrets.keys` (`storefront secrets rotate-key`).

Plaintext only ever travels as `SecretStr` (its repr is masked), so no log line, traceback
local or error message can carry it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from pydantic import SecretStr

from app.core.clock import Clock
from app.db.uow import UnitOfWorkFactory, read_fresh
from app.secrets.box import SecretBox
from app.secrets.errors import SecretUndecryptable, WebhookSecretNotFound
from app.secrets.repository import SecretRecord

log = structlog.get_logger(__name__)
WEBHOOK_SIGNING = "webhook_signing"
WEBHOOK_PREFIX = "whsec_"


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret after its creation: never the value."""

    name: str
    fingerprint: str
    created_at: datetime
    updated_at: datetime


def fingerprint(value: SecretStr) -> str:
    """16 hex digits of SHA-256 of the value: tells two secrets apart, reveals nothing usable
    (the values are 256-bit random)."""
    return hashlib.sha256(value.get_secret_value().encode()).hexdigest()[:16]


class WebhookSecrets:
    """The tenant's webhook signing secret. A later webhook sender calls `signing_key()`."""

    def __init__(self, uow_factory: UnitOfWorkFactory, box: SecretBox, clock: Clock) -> None:
        self._uow = uow_factory
        self._box = box
        self._clock = clock

    async def generate(self, tenant_id: uuid.UUID) -> tuple[SecretInfo, SecretStr]:
        """A new random secret replaces the previous one at once; returned this one time."""
        value = SecretStr(WEBHOOK_PREFIX + secrets.token_urlsafe(32))
        ciphertext = self._box.encrypt(value)
        async with self._uow(tenant_id) as uow:
            record = await uow.tenant_secrets.put(WEBHOOK_SIGNING, ciphertext, self._clock.now())
            await uow.commit()
        log.info("secrets.webhook_generated", tenant=str(tenant_id), fingerprint=fingerprint(value))
        return _info(record, value), value

    async def info(self, tenant_id: uuid.UUID) -> SecretInfo:
        record = await self._record(tenant_id)
        return _info(record, self._decrypt(tenant_id, record))

    async def signing_key(self, tenant_id: uuid.UUID) -> SecretStr:
        """The decrypted value, for signing outgoing webhooks (never for a response)."""
        record = await self._record(tenant_id)
        return self._decrypt(tenant_id, record)

    async def _record(self, tenant_id: uuid.UUID) -> SecretRecord:
        # A secret generated a moment ago may not have reached the replica yet.
        record = await read_fresh(
            self._uow, tenant_id, lambda uow: uow.tenant_secrets.get(WEBHOOK_SIGNING)
        )
        if record is None:
            raise WebhookSecretNotFound("no webhook secret yet: POST /v1/webhook-secret")
        return record

    def _decrypt(self, tenant_id: uuid.UUID, record: SecretRecord) -> SecretStr:
        try:
            return self._box.decrypt(record.ciphertext)
        except SecretUndecryptable:
            log.error(
                "secrets.undecryptable",
                tenant=str(tenant_id),
                name=record.name,
                hint="secrets.keys lacks the key this secret was written under",
            )
            raise


def _info(record: SecretRecord, value: SecretStr) -> SecretInfo:
    return SecretInfo(record.name, fingerprint(value), record.created_at, record.updated_at)


@dataclass
class RotationReport:
    tenants: int = 0
    rotated: int = 0
    current: int = 0  # already under the first key
    undecryptable: list[tuple[uuid.UUID, str]] = field(default_factory=list)


class SecretKeyRotation:
    """Re-encrypt every stored secret under the first key, tenant by tenant, one transaction
    per batch (rows locked while re-encrypted, so a concurrent write is not overwritten).
    Idempotent: secrets already under the first key are left alone, so a re-run is cheap."""

    def __init__(self, uow_factory: UnitOfWorkFactory, box: SecretBox, batch_size: int) -> None:
        self._uow = uow_factory
        self._box = box
        self._batch = batch_size

    async def rotate_all(self) -> RotationReport:
        self._box.check_configured()  # before any work
        async with self._uow(read_only=True, strong=True) as uow:
            tenants = await uow.tenants.list()
        report = RotationReport(tenants=len(tenants))
        for tenant in tenants:
            await self._rotate_tenant(tenant.id, report)
        return report

    async def _rotate_tenant(self, tenant_id: uuid.UUID, report: RotationReport) -> None:
        after: str | None = None
        while True:
            async with self._uow(tenant_id) as uow:
                batch = await uow.tenant_secrets.batch_for_update(after, self._batch)
                for record in batch:
                    if self._box.is_current(record.ciphertext):
                        report.current += 1
                        continue
                    try:
                        ciphertext = self._box.rotate(record.ciphertext)
                    except SecretUndecryptable:  # reported by the caller, run goes on
                        report.undecryptable.append((tenant_id, record.name))
                        continue
                    await uow.tenant_secrets.set_ciphertext(record.name, ciphertext)
                    report.rotated += 1
                await uow.commit()
            if len(batch) < self._batch:
                return
            after = batch[-1].name

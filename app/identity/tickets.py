"""Single-use WebSocket tickets: browsers cannot set headers on a WebSocket, so an authenticated
caller asks `POST /v1/ws-tickets` for a short-lived ticket and opens the socket with
`?ticket=...`.

A ticket is `wst_<tenant id hex>_<256-bit secret>`; only its SHA-256 is stored (`ws_tickets`,
under the tenant's row-level security), with the principal it was issued to. Redeeming deletes
the row in one statement, so it works once, in whichever API process the socket reaches. The
expiry is checked against the container's clock (`websocket.ticket_ttl_seconds`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.clock import Clock
from app.core.errors import Unauthenticated
from app.db.uow import UnitOfWorkFactory
from app.identity.permissions import Role
from app.identity.principal import Principal
from app.identity.repository import WsTicketRecord

_FORMAT = re.compile(r"^wst_([0-9a-f]{32})_[A-Za-z0-9_-]{43}$")


class TicketInvalid(Unauthenticated):
    code = "auth.ticket_invalid"
    title = "Invalid WebSocket ticket"


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    ticket: str
    expires_at: datetime
    ttl_seconds: float


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


class WsTicketService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, ttl_seconds: float) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._ttl = ttl_seconds

    async def issue(self, principal: Principal) -> IssuedTicket:
        """A ticket for `principal`, valid once within the TTL (the tenant's expired ones are
        deleted in the same transaction)."""
        ticket = f"wst_{principal.tenant_id.hex}_{secrets.token_urlsafe(32)}"
        now = self._clock.now()
        expires_at = now + timedelta(seconds=self._ttl)
        record = WsTicketRecord(
            principal.kind,
            principal.id,
            principal.role.name if principal.role else None,
            sorted(principal.scopes),
            expires_at,
        )
        async with self._uow(principal.tenant_id) as uow:
            await uow.ws_tickets.purge_expired(now)
            await uow.ws_tickets.add(_digest(ticket), record)
            await uow.commit(token=False)
        return IssuedTicket(ticket, expires_at, self._ttl)

    async def redeem(self, ticket: str) -> Principal:
        """The principal the ticket was issued to; TicketInvalid when it is malformed, unknown,
        used before or expired (it is gone either way)."""
        match = _FORMAT.fullmatch(ticket)
        if match is None:
            raise TicketInvalid("the ticket is malformed")
        tenant_id = uuid.UUID(hex=match[1])
        async with self._uow(tenant_id) as uow:
            record = await uow.ws_tickets.redeem(_digest(ticket))
            await uow.commit(token=False)
        if record is None:
            raise TicketInvalid("the ticket is unknown or was used before")
        if record.expires_at <= self._clock.now():
            raise TicketInvalid("the ticket has expired")
        return Principal(
            kind="user" if record.principal_kind == "user" else "api_key",
            id=record.principal_id,
            tenant_id=tenant_id,
            role=Role[record.role] if record.role else None,
            scopes=frozenset(record.scopes),
        )

"""What a connect that a dying server interrupts raises, and how it is classified.

SQLAlchemy's pool raises the asyncpg dialect's own DBAPI error (an `EmulatedDBAPIException`
around asyncpg's), never a `DBAPIError`, when it cannot open a connection: that is the error a
node checkout sees (`engine.raw_connection()`). The exception chains here are made by the real
driver and pool, talking to a socket that answers as PostgreSQL does while it shuts down.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from app.db.engines import create_engine
from app.db.errors import connect_failure, is_unavailable
from app.settings import ConnectSettings, PoolSettings

Handshake = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _fatal(sqlstate: str, text: str) -> bytes:
    fields = [b"SFATAL", b"VFATAL", b"C" + sqlstate.encode(), b"M" + text.encode()]
    return _message(b"E", b"".join(field + b"\0" for field in fields) + b"\0")


async def _startup(reader: asyncio.StreamReader) -> None:
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    await reader.readexactly(length - 4)


async def _shutting_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The postmaster during `pg_ctl stop`: it still accepts, then refuses the session."""
    await _startup(reader)
    writer.write(_fatal("57P03", "the database system is shutting down"))


async def _killed_before_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _startup(reader)  # and the server dies before it answers


async def _killed_after_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _startup(reader)
    writer.write(_message(b"R", struct.pack("!i", 0)))  # AuthenticationOk, then gone


async def _wrong_password(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _startup(reader)
    writer.write(_fatal("28P01", 'password authentication failed for user "app"'))


@asynccontextmanager
async def _server(handshake: Handshake) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handshake(reader, writer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _connect_error(handshake: Handshake) -> BaseException:
    """What a node's checkout raises when the pool opens a connection to this server."""
    async with _server(handshake) as port:
        engine = create_engine(
            f"postgresql://app:secret@127.0.0.1:{port}/storefront",
            pool=PoolSettings(),
            connect=ConnectSettings(ssl="disable"),
            pgbouncer=False,
            role="replica",
        )
        try:
            with pytest.raises(sa_exc.EmulatedDBAPIException) as caught:
                await engine.raw_connection()
        finally:
            await engine.dispose()
    return caught.value


async def test_a_server_shutting_down_during_connect_is_unavailable() -> None:
    error = await _connect_error(_shutting_down)
    # The chain seen behind the 500s of the replica-kill test.
    assert isinstance(error, AsyncAdapt_asyncpg_dbapi.Error)
    assert not isinstance(error, sa_exc.DBAPIError)
    assert isinstance(error.__cause__, asyncpg.exceptions.CannotConnectNowError)
    assert is_unavailable(error)
    assert connect_failure(error) == "the database system is shutting down"


@pytest.mark.parametrize("handshake", [_killed_before_auth, _killed_after_auth])
async def test_a_server_killed_mid_handshake_is_unavailable(handshake: Handshake) -> None:
    error = await _connect_error(handshake)
    assert isinstance(error, AsyncAdapt_asyncpg_dbapi.Error)
    assert isinstance(error.__cause__, asyncpg.exceptions.ConnectionDoesNotExistError)
    assert is_unavailable(error)
    assert connect_failure(error) == "connection was closed in the middle of operation"


async def test_a_refused_password_during_connect_is_not_an_outage() -> None:
    error = await _connect_error(_wrong_password)
    assert isinstance(error.__cause__, asyncpg.exceptions.InvalidPasswordError)
    assert not is_unavailable(error)  # the node is up: the breaker must not open
    assert connect_failure(error) == 'password authentication failed for user "app"'


def _translated(driver_error: Exception) -> BaseException:
    """The dialect's DBAPI error for `driver_error`, raised as its pool raises it."""
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    for kind in type(driver_error).__mro__:
        if kind in dbapi._asyncpg_error_translate:
            try:
                raise dbapi._asyncpg_error_translate[kind](str(driver_error), driver_error) from (
                    driver_error
                )
            except Exception as error:
                return error
    raise AssertionError(f"{driver_error!r} is not translated")


@pytest.mark.parametrize(
    ("driver_error", "unavailable"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation"), True),
        (asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), True),
        (asyncpg.exceptions.ProtocolViolationError("unexpected message"), True),  # 08P01
        # Our own misuse of a connection, and the driver's internal errors: never an outage.
        (asyncpg.exceptions.InterfaceError("another operation is in progress"), False),
        (asyncpg.exceptions.InternalClientError("unexpected message type"), False),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
    ],
)
def test_the_dialects_errors_are_classified_by_the_driver_error_inside(
    driver_error: Exception, unavailable: bool
) -> None:
    translated = _translated(driver_error)
    assert is_unavailable(translated) is unavailable
    wrapped = sa_exc.DBAPIError(None, None, translated)  # as a Connection re-raises it
    assert is_unavailable(wrapped) is unavailable

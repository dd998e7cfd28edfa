"""Async Alembic environment: runs migrations as the schema owner from Storefront's settings."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from app.catalog import models as _catalog  # noqa: F401  (register tables on the metadata)
from app.db import models as _db  # noqa: F401
from app.db.base import Base
from app.db.engines import asyncpg_url
from app.events import models as _events  # noqa: F401
from app.identity import models as _identity  # noqa: F401
from app.orders import models as _orders  # noqa: F401
from app.reports import models as _reports  # noqa: F401
from app.settings import load_settings
from app.sso import models as _sso  # noqa: F401
from app.tenants import models as _tenants  # noqa: F401
from app.versions import models as _versions  # noqa: F401

config = context.config
settings = load_settings()
config.attributes.setdefault("app_role", settings.database.app_role)
target_metadata = Base.metadata


# One transaction per revision: the locks an expand step takes are released when it commits,
# not held while a later revision (a contract step's guard, a VALIDATE) scans a table, and a
# refused contract step leaves the expand steps before it applied.
PER_REVISION = True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=PER_REVISION,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = config.attributes.get("url") or settings.database.owner_url
    engine = create_async_engine(
        asyncpg_url(url), connect_args={"timeout": settings.database.connect.connect_timeout}
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=settings.database.owner_url,
        target_metadata=target_metadata,
        transaction_per_migration=PER_REVISION,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())

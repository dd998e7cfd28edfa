"""The sales_daily read model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from app.db.repository import TenantScoped
from app.reports.errors import BIGINT_MAX, BIGINT_MIN, SalesTotalOverflow


@dataclass(frozen=True, slots=True)
class SalesRow:
    day: date
    product_id: uuid.UUID
    currency: str
    units: int
    revenue: int


# The live table, and a replay's rebuild of it (the same rows tagged with the replay's run id).
_KEY = "tenant_id, day, product_id, currency"
_TABLES = {False: ("sales_daily", ""), True: ("sales_daily_rebuild", "run_id, ")}


def _upsert_sql(rebuild: bool) -> str:
    """Add to a day's totals, checked: the sums are compared in numeric, so the check itself
    cannot overflow; the conflict branch's WHERE leaves the row alone and returns nothing."""
    table, run = _TABLES[rebuild]
    value = "$9, " if rebuild else ""
    return (
        f"INSERT INTO {table} ({run}{_KEY}, units, revenue) VALUES ({value}$1, $2, $3, $4, $5, $6)"
        f" ON CONFLICT ({run}{_KEY}) DO UPDATE SET units = {table}.units + EXCLUDED.units,"
        f" revenue = {table}.revenue + EXCLUDED.revenue"
        f" WHERE {table}.units::numeric + EXCLUDED.units BETWEEN $7 AND $8"
        f" AND {table}.revenue::numeric + EXCLUDED.revenue BETWEEN $7 AND $8"
        " RETURNING true"
    )


_UPSERT = {rebuild: _upsert_sql(rebuild) for rebuild in (False, True)}
# md5 over the tenant's rows in key order: equal checksums, equal tables.
_CHECKSUM = (
    "SELECT md5(coalesce(string_agg(concat_ws('|', day, product_id, currency, units, revenue),"
    " ',' ORDER BY day, product_id, currency), ''))"
)


class SalesRepository(TenantScoped):
    async def add(
        self,
        day: date,
        product_id: uuid.UUID,
        currency: str,
        units: int,
        revenue: int,
        run: uuid.UUID | None = None,
    ) -> None:
        """Add to the day's totals (of the live table, or of replay `run`'s rebuild), checked:
        raises SalesTotalOverflow (and changes nothing) when a sum would leave the bigint
        range."""
        for value in (units, revenue):
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                raise SalesTotalOverflow(f"{value} does not fit sales_daily (bigint)")
        arguments = [self._tenant_id, day, product_id, currency, units, revenue]
        arguments += [BIGINT_MIN, BIGINT_MAX, *([run] if run else [])]
        applied = await self._conn.fetchval(_UPSERT[run is not None], *arguments)
        if not applied:
            raise SalesTotalOverflow(
                f"adding {units} units / {revenue} to {day} {product_id} {currency} would"
                " overflow sales_daily (bigint)"
            )

    async def between(self, first: date, last: date) -> list[SalesRow]:
        rows = await self._conn.fetch(
            "SELECT day, product_id, currency, units, revenue FROM sales_daily"
            " WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day, product_id, currency",
            self._tenant_id,
            first,
            last,
        )
        return [SalesRow(*row) for row in rows]

    async def checksums(self, run: uuid.UUID) -> tuple[str, str]:
        """(live, rebuild of `run`): md5 of the tenant's rows of each, in key order."""
        row = await self._conn.fetchrow(
            f"SELECT ({_CHECKSUM} FROM sales_daily WHERE tenant_id = $1),"
            f" ({_CHECKSUM} FROM sales_daily_rebuild WHERE tenant_id = $1 AND run_id = $2)",
            self._tenant_id,
            run,
        )
        assert row is not None
        return row[0], row[1]

    async def swap_in(self, run: uuid.UUID) -> int:
        """The tenant's live rows become those of the rebuild (in the caller's transaction: the
        report sees the old rows until it commits, then the new); returns how many."""
        await self._conn.execute("DELETE FROM sales_daily WHERE tenant_id = $1", self._tenant_id)
        status: str = await self._conn.execute(
            f"INSERT INTO sales_daily ({_KEY}, units, revenue) SELECT {_KEY}, units, revenue"
            " FROM sales_daily_rebuild WHERE tenant_id = $1 AND run_id = $2",
            self._tenant_id,
            run,
        )
        return int(status.split()[-1])

    async def discard(self, run: uuid.UUID) -> None:
        await self._conn.execute(
            "DELETE FROM sales_daily_rebuild WHERE tenant_id = $1 AND run_id = $2",
            self._tenant_id,
            run,
        )

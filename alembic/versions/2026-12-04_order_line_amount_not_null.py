"""Contract (issue 12): `order_lines.line_amount` becomes NOT NULL, without holding an ACCESS
EXCLUSIVE lock while the table is scanned:

1. a guard: refuse (nothing changed) while any line has no amount: the backfill has not
   completed, or a process of the previous release still inserts lines without it;
2. `CHECK (line_amount IS NOT NULL) NOT VALID`: a brief lock, no scan; new rows are checked
   from here on (which is why no process of the previous release may run any more);
3. `VALIDATE CONSTRAINT` in its own transaction (autocommit block): scans the table under
   SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes;
4. `SET NOT NULL`: PostgreSQL 12+ takes the valid check as proof and skips the scan; the check
   is dropped again (NOT NULL says the same).

Rerunnable after a failure between the steps (step 2 is committed before step 3 runs): the
check of an interrupted run is dropped and added again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

CHECK = "ck_order_lines_line_amount_not_null"

# The guard reads order_lines, which FORCEs row-level security: a role that does not bypass
# it would see no rows and let the migration through on a table full of NULLs.
GUARD = """
DO $$
BEGIN
    IF NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'migration 0013 must run as a role that bypasses row-level security'
            ' (BYPASSRLS or superuser): database.migration_url';
    END IF;
    IF EXISTS (SELECT 1 FROM order_lines WHERE line_amount IS NULL) THEN
        RAISE EXCEPTION 'order lines without line_amount: run `storefront migrate backfill'
            ' order_line_amounts` once no process of the previous release runs, then'
            ' migrate again';
    END IF;
END $$
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '3s'")
    # The guard scans the table (under ACCESS SHARE only).
    op.execute("SET LOCAL statement_timeout = '30min'")
    op.execute(GUARD)
    op.execute("SET LOCAL statement_timeout = '15s'")
    op.execute(
        "-- only the not-yet-validated check of an interrupted run of this migration:\n"
        "-- squawk-ignore ban-drop-constraint\n"
        f"ALTER TABLE order_lines DROP CONSTRAINT IF EXISTS {CHECK}"
    )
    op.execute(
        f"ALTER TABLE order_lines ADD CONSTRAINT {CHECK} CHECK (line_amount IS NOT NULL) NOT VALID"
    )
    with op.get_context().autocommit_block():
        # Session settings (each statement is its own transaction here), reset after.
        op.execute("SET lock_timeout = '3s'")
        op.execute("SET statement_timeout = '1h'")  # a full scan; reads and writes go on
        op.execute(f"ALTER TABLE order_lines VALIDATE CONSTRAINT {CHECK}")
        op.execute("RESET statement_timeout")
        op.execute("RESET lock_timeout")
    op.execute("SET LOCAL lock_timeout = '3s'")
    op.execute("SET LOCAL statement_timeout = '15s'")
    op.execute("ALTER TABLE order_lines ALTER COLUMN line_amount SET NOT NULL")
    op.execute(
        "-- the temporary check (NOT NULL now guarantees the same):\n"
        "-- squawk-ignore ban-drop-constraint\n"
        f"ALTER TABLE order_lines DROP CONSTRAINT {CHECK}"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '3s'")
    op.execute("SET LOCAL statement_timeout = '15s'")
    op.execute("ALTER TABLE order_lines ALTER COLUMN line_amount DROP NOT NULL")

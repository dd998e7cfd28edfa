"""Every migration's SQL passes squawk and sets lock_timeout and statement_timeout.

Each revision is linted on its own: its offline SQL (`alembic upgrade <down>:<rev> --sql`),
with the repository's `.squawk.toml`. Revisions shipped before the rule (issue 12) carry the
findings they were shipped with in HISTORICAL, each with its reason; they are never edited
(they have run on every database; a fresh one runs them on empty tables). A new revision gets
no entry: it must lint clean.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.schema_rehearsal import ROOT, offline_sql, revisions

SQUAWK = Path(sys.executable).parent / "squawk"  # squawk-cli, a dev dependency: make install

_TABLES_ONLY = "shipped before the rule; creates tables, so on the empty databases it runs on now"
_BOUNDED_INTS = (
    "int4 columns hold bounded quantities (stock, quantity, version, attempts, HTTP status,"
    " rollout buckets: limits enforced at the edge), never ids or sequences"
)
_TIMEOUTS = {"require-lock-timeout": _TABLES_ONLY, "require-statement-timeout": _TABLES_ONLY}
HISTORICAL: dict[str, dict[str, str]] = {
    "0001": {**_TIMEOUTS, "prefer-bigint-over-int": _BOUNDED_INTS},
    "0002": _TIMEOUTS,
    "0003": {**_TIMEOUTS, "prefer-bigint-over-int": _BOUNDED_INTS},
    "0004": _TIMEOUTS,
    "0005": {
        **_TIMEOUTS,
        # Ran once on small identity tables before any release served traffic at scale; the
        # unique constraint swap is its content and cannot be rewritten without changing it.
        "ban-drop-constraint": "shipped: uq_users_email replaced by the per-tenant one",
        "constraint-missing-not-valid": "shipped: the unique constraint that replaces it",
        "disallowed-unique-constraint": "shipped: the unique constraint that replaces it",
        "require-concurrent-index-creation": "shipped: ix_users_email on a small table",
    },
    "0006": {**_TIMEOUTS, "prefer-bigint-over-int": _BOUNDED_INTS},
    # CREATE INDEX CONCURRENTLY IF NOT EXISTS: a statement_timeout that cut the build short
    # would leave an INVALID index, which the IF NOT EXISTS of a rerun then keeps.
    "0007": {"require-statement-timeout": "a concurrent build is never cut short"},
}
TIMEOUT_EXEMPT = {rev for rev, rules in HISTORICAL.items() if "require-lock-timeout" in rules}


def squawk(sql: str, name: str, ignore: list[str] | None = None) -> list[dict[str, object]]:
    """squawk's findings for `sql` (the repository's config, JSON reporter); `ignore`: rules
    this file is exempt from (a `-- squawk-ignore-file` line in front of it)."""
    if ignore:
        sql = f"-- squawk-ignore-file {', '.join(ignore)}\n{sql}"
    assert SQUAWK.exists(), f"{SQUAWK} missing: make install (squawk-cli is a dev dependency)"
    command = [str(SQUAWK), "-c", str(ROOT / ".squawk.toml"), "--reporter", "json"]
    done = subprocess.run(
        [*command, "--stdin-filepath", name], input=sql, capture_output=True, text=True, timeout=60
    )
    assert done.returncode in (0, 1), done.stderr
    findings: list[dict[str, object]] = json.loads(done.stdout or "[]")
    assert (done.returncode == 1) == bool(findings), (done.returncode, done.stdout, done.stderr)
    return findings


REVISIONS = revisions()


def test_historical_entries_name_shipped_revisions() -> None:
    known = [r.revision for r in REVISIONS]
    assert set(HISTORICAL) <= set(known)
    assert "0012" in known, "this tree's own expand step is linted"


@pytest.mark.parametrize("script", REVISIONS, ids=lambda s: s.revision)
def test_squawk_passes_on_every_migration(script: object) -> None:
    revision = getattr(script, "revision")  # noqa: B009 (a Script, typed loosely for ids=)
    sql = offline_sql(script)  # type: ignore[arg-type]
    findings = squawk(sql, f"{revision}.sql", ignore=sorted(HISTORICAL.get(revision, {})))
    assert findings == [], "\n".join(
        f"{f['line']}: {f['rule_name']}: {f['message']}" for f in findings
    )
    if revision in HISTORICAL:  # every exemption still matches a finding (none is stale)
        found = {f["rule_name"] for f in squawk(sql, f"{revision}.sql")}
        assert set(HISTORICAL[revision]) <= found, f"{revision}: drop stale exemptions"


def test_squawk_fails_on_unsafe_migration_sql() -> None:
    """The test of the test: what the lint exists to catch is caught with our config."""
    unsafe = (
        "BEGIN;\n\nALTER TABLE orders ADD COLUMN note_id uuid NOT NULL"
        " DEFAULT gen_random_uuid();\n\nCREATE INDEX ix_orders_note ON orders (note_id);\n\n"
        "COMMIT;\n"
    )
    rules = {f["rule_name"] for f in squawk(unsafe, "unsafe.sql")}
    assert {
        "adding-field-with-default",  # a volatile default rewrites the table
        "require-concurrent-index-creation",  # blocks writes while it builds
        "require-lock-timeout",
        "require-statement-timeout",
    } <= rules
    concurrently_in_a_transaction = (
        "BEGIN;\n\nSET LOCAL lock_timeout = '3s';\n\nSET LOCAL statement_timeout = '15s';\n\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a ON orders (status);\n\nCOMMIT;\n"
    )
    rules = {f["rule_name"] for f in squawk(concurrently_in_a_transaction, "in_tx.sql")}
    assert rules == {"ban-concurrent-index-creation-in-transaction"}


_SET = re.compile(r"^SET (LOCAL )?(lock_timeout|statement_timeout)\b", re.IGNORECASE)
_HOUSEKEEPING = re.compile(
    r"^(SET |RESET |(UPDATE|INSERT INTO|CREATE TABLE) alembic_version )", re.IGNORECASE
)


def missing_timeouts(sql: str) -> list[str]:
    """The statements of offline migration SQL that run in a transaction (or, in an autocommit
    block, a session stretch) where lock_timeout or statement_timeout was not set before them.
    Each stretch between BEGIN/COMMIT boundaries must set its own: SET LOCAL ends at COMMIT."""
    problems = []
    have: set[str] = set()
    for chunk in sql.split(";\n"):
        lines = [ln for ln in chunk.strip().splitlines() if not ln.lstrip().startswith("--")]
        statement = " ".join(ln.strip() for ln in lines).strip()
        if not statement:
            continue
        if statement.upper() in ("BEGIN", "COMMIT"):
            have = set()
        elif match := _SET.match(statement):
            have.add(match.group(2).lower())
        elif not _HOUSEKEEPING.match(statement) and have != {"lock_timeout", "statement_timeout"}:
            problems.append(
                f"{sorted({'lock_timeout', 'statement_timeout'} - have)}: {statement[:80]}"
            )
    return problems


@pytest.mark.parametrize(
    "script", [s for s in REVISIONS if s.revision not in TIMEOUT_EXEMPT], ids=lambda s: s.revision
)
def test_every_migration_sets_its_timeouts(script: object) -> None:
    sql = offline_sql(script)  # type: ignore[arg-type]
    if getattr(script, "revision") == "0007":  # noqa: B009
        # Its one statement runs with lock_timeout only (see HISTORICAL).
        assert "SET lock_timeout = '5s'" in sql
        return
    assert missing_timeouts(sql) == []


def test_the_timeout_check_catches_a_stretch_without_them() -> None:
    unsafe = (
        "BEGIN;\n\nSET LOCAL lock_timeout = '3s';\n\nSET LOCAL statement_timeout = '15s';\n\n"
        "ALTER TABLE a ADD COLUMN b bigint;\n\nCOMMIT;\n\n"
        "ALTER TABLE a VALIDATE CONSTRAINT c;\n\n"  # autocommit: the SET LOCALs are gone
        "BEGIN;\n\nSET LOCAL lock_timeout = '3s';\n\nALTER TABLE a DROP COLUMN b;\n\nCOMMIT;\n"
    )
    assert missing_timeouts(unsafe) == [
        "['lock_timeout', 'statement_timeout']: ALTER TABLE a VALIDATE CONSTRAINT c",
        "['statement_timeout']: ALTER TABLE a DROP COLUMN b",
    ]

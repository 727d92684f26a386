"""Ordered SQL migrations, applied automatically and recorded in schema_migrations."""

from __future__ import annotations

import logging
from importlib import resources

from gong_sync.postgres import Connection

log = logging.getLogger(__name__)

# Any fixed number works: it only serialises migrators of this one database.
_MIGRATION_LOCK = 0x60_6E_65_00


def available() -> list[tuple[str, str]]:
    """Return (version, sql) for every bundled migration, in order."""
    files = resources.files("gong_sync") / "migrations"
    names = sorted(f.name for f in files.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (files / name).read_text("utf-8")) for name in names]


def apply(conn: Connection) -> list[str]:
    """Apply the migrations this database lacks, in one transaction; return them."""
    cur = conn.cursor()
    # A transaction-level lock: two functions cold-starting together must not both migrate.
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT version FROM schema_migrations")
    done = {row[0] for row in cur.fetchall()}
    applied: list[str] = []
    for version, sql in available():
        if version in done:
            continue
        # Simple-query protocol: a migration file holds many statements.
        conn.execute_simple(sql)
        cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        applied.append(version)
        log.info("applied migration %s", version)
    conn.commit()
    return applied

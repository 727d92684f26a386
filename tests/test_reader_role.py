"""The coaching app's read-only role: it reads every synced table and can write none."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pg8000.dbapi
import pytest

from gong_sync import sources
from gong_sync.postgres import Connection, connect
from tests.conftest import Env

TARGETS = sorted({t.table for s in sources.SOURCES.values() for t in s.targets})
_names = itertools.count()


@pytest.fixture
def app(env: Env) -> Iterator[Connection]:
    """A connection as the app would log in: a user that is a member of gong_sync_reader."""
    user = f"coaching_app_{next(_names)}_{env.settings.postgres.database}"
    env.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'app-secret' IN ROLE gong_sync_reader")
    settings = dataclasses.replace(env.settings.postgres, user=user, password="app-secret")
    conn = connect(settings)
    try:
        yield conn
    finally:
        conn.close()
        env.execute(f"DROP ROLE {user}")


def _denied(conn: Connection, statement: str) -> bool:
    try:
        conn.cursor().execute(statement)
    except pg8000.dbapi.DatabaseError as exc:
        conn.rollback()
        return exc.args[0]["C"] == "42501"  # insufficient_privilege
    conn.rollback()
    return False


@pytest.mark.parametrize("table", TARGETS)
def test_the_app_reads_each_synced_table(app: Connection, table: str) -> None:
    cur = app.cursor()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone() == [0]


@pytest.mark.parametrize("table", TARGETS)
def test_the_app_writes_no_synced_table(app: Connection, table: str) -> None:
    assert _denied(app, f"DELETE FROM {table}")
    assert _denied(app, f"UPDATE {table} SET {_first_column(app, table)} = NULL")
    assert _denied(app, f"TRUNCATE {table}")


def test_the_app_sees_neither_run_state_nor_dead_letters(env: Env, app: Connection) -> None:
    """Dead letters hold raw source records; run state is ours, whichever migration made it."""
    tables = {
        r[0] for r in env.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    internal = sorted(tables - set(TARGETS))
    assert {"sync_status", "dead_letters", "pending_derivations", "derivation_floors"} <= tables
    for table in internal:
        assert _denied(app, f"SELECT 1 FROM {table} LIMIT 1"), table


def test_a_table_a_later_migration_adds_is_readable(env: Env, app: Connection) -> None:
    """Default privileges: a new source's table needs no GRANT of its own."""
    migrator = env.connect()  # the user migrations run as
    try:
        migrator.cursor().execute("CREATE TABLE later_source (id text PRIMARY KEY)")
        migrator.commit()
    finally:
        migrator.close()
    cur = app.cursor()
    cur.execute("SELECT count(*) FROM later_source")
    assert cur.fetchone() == [0]
    assert _denied(app, "INSERT INTO later_source VALUES ('x')")


def _first_column(conn: Connection, table: str) -> str:
    cur = conn.cursor()
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " ORDER BY ordinal_position LIMIT 1",
        (table,),
    )
    return str(cur.fetchone()[0])

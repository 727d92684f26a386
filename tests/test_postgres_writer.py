"""The writer's fast paths keep the upsert's result: direct COPY into an empty table."""

from __future__ import annotations

import pytest

from gong_sync.postgres_writer import TargetWriter
from gong_sync.row_mapping import RowMapper
from gong_sync.sources.calls import CALLS
from tests.conftest import Env
from tests.factories import at


def call(cid: str, synced: object, title: str | None = None) -> dict[str, object]:
    """A row as the calls SELECT returns it: target column names."""
    row: dict[str, object] = {c.name: None for c in CALLS.columns}
    row.update(gong_call_id=cid, title=title or f"Call {cid}", source_synced_at=synced)
    return row


def _lines(*rows: dict[str, object]) -> dict[tuple[str, ...], str]:
    mapper = RowMapper(CALLS)
    return dict(mapper.map(r) for r in rows)


def test_direct_copy_into_an_empty_table_falls_back_to_the_upsert_on_a_repeated_key(
    env: Env,
) -> None:
    """The first page goes in by bare COPY; a key seen again is upserted, not duplicated."""
    conn = env.connect()
    writer = TargetWriter(conn, CALLS, [])
    first = writer.replace(_lines(call("a", at(0)), call("b", at(0))), [], CALLS.key)
    conn.commit()
    assert writer._direct is True  # the table was empty: bare COPY
    assert (first.upserted, first.unchanged) == (2, 0)

    again = writer.replace(
        _lines(call("b", at(1), title="Renamed"), call("c", at(1))), [], CALLS.key
    )
    conn.commit()
    assert writer._direct is False  # "b" repeated: rolled back to the savepoint, upserted
    assert (again.upserted, again.unchanged) == (2, 0)
    assert env.query("SELECT gong_call_id, title FROM calls ORDER BY 1") == [
        ("a", "Call a"),
        ("b", "Renamed"),
        ("c", "Call c"),
    ]
    conn.close()


def test_a_table_with_rows_is_never_copied_into_directly(env: Env) -> None:
    """Rows already there mean the upsert, whose guard leaves unchanged rows untouched."""
    env.execute("INSERT INTO calls (gong_call_id, title) VALUES ('a', 'Call a')")
    conn = env.connect()
    writer = TargetWriter(conn, CALLS, [])
    stats = writer.replace(_lines(call("a", at(0))), [], CALLS.key)
    conn.commit()
    conn.close()
    assert writer._direct is False
    assert (stats.upserted, stats.unchanged) == (0, 1)  # the guarded upsert found it equal


def test_a_statement_past_its_timeout_is_cancelled(env: Env) -> None:
    """The functions set statement_timeout, so no query holds a run past the platform's limit."""
    import dataclasses

    from gong_sync.errors import sqlstate
    from gong_sync.postgres import connect

    limited = dataclasses.replace(env.settings.postgres, statement_timeout_seconds=0.2)
    conn = connect(limited)
    try:
        with pytest.raises(Exception, match="statement timeout") as cancelled:
            conn.cursor().execute("SELECT pg_sleep(3)")
        assert sqlstate(cancelled.value) == "57014"  # query_canceled
    finally:
        conn.close()

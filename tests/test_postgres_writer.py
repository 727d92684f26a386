"""The writer's fast paths keep the upsert's result: direct COPY into an empty table."""

from __future__ import annotations

import pytest

from gong_sync.postgres_writer import TargetWriter
from gong_sync.row_mapping import RowMapper
from gong_sync.sources.calls import CALL_SPEAKERS, CALLS
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


def _speakers(*pairs: tuple[str, str]) -> dict[tuple[str, ...], str]:
    """COPY lines of call_speakers rows, one per (call, speaker)."""
    mapper = RowMapper(CALL_SPEAKERS)
    rows = [{c.name: None for c in CALL_SPEAKERS.columns} for _ in pairs]
    for row, (cid, sid) in zip(rows, pairs, strict=True):
        row.update(gong_call_id=cid, speaker_id=sid, name=f"{cid}/{sid}")
    return dict(mapper.map(r) for r in rows)


def _replace_sets(writer: TargetWriter, *pairs: tuple[str, str], parents: str) -> None:
    """Replace the whole speaker sets of these parents by these rows, and commit."""
    writer.replace(_speakers(*pairs), [(p,) for p in parents], ("gong_call_id",))
    writer.conn.commit()


def test_new_sets_in_parent_order_go_in_by_bare_copy_and_a_parent_seen_again_is_replaced(
    env: Env,
) -> None:
    """A sweep's sets skip stage, upsert and delete; a set written again still replaces."""
    conn = env.connect()
    writer = TargetWriter(conn, CALL_SPEAKERS, [])
    _replace_sets(writer, ("a", "1"), ("a", "2"), ("b", "1"), parents="ab")
    _replace_sets(writer, ("c", "1"), parents="cd")  # d has no speakers: nothing to empty
    assert writer._stage_ready is False  # no stage was ever needed: bare COPY throughout
    # "b" again, with a set sharing no key with the stored one: bare COPY would keep "b"/"1".
    _replace_sets(writer, ("b", "9"), ("e", "1"), parents="be")
    _replace_sets(writer, ("a", "2"), parents="a")  # before the greatest parent written
    assert writer._stage_ready is True
    assert env.query("SELECT gong_call_id, speaker_id FROM call_speakers ORDER BY 1, 2") == [
        ("a", "2"),
        ("b", "9"),
        ("c", "1"),
        ("e", "1"),
    ]
    conn.close()


@pytest.mark.parametrize("before", ["stored row", "rows by key"])
def test_sets_are_staged_where_a_stored_row_may_be_theirs(env: Env, before: str) -> None:
    """A table with rows, or rows this writer wrote by key, rule the bare COPY of sets out."""
    conn = env.connect()
    writer = TargetWriter(conn, CALL_SPEAKERS, [])
    if before == "stored row":
        env.execute("INSERT INTO call_speakers (gong_call_id, speaker_id) VALUES ('z', 'old')")
    else:
        writer.replace(_speakers(("z", "old")), [], CALL_SPEAKERS.key)
        conn.commit()
    _replace_sets(writer, ("z", "new"), parents="z")
    assert writer._stage_ready is True
    assert env.query("SELECT gong_call_id, speaker_id FROM call_speakers") == [("z", "new")]
    conn.close()


def test_sets_of_a_target_with_children_are_staged_for_the_cascade(env: Env) -> None:
    """Only the delete pass cascades: a parent's set is never bare-copied where it has children."""
    conn = env.connect()
    writer = TargetWriter(conn, CALLS, [CALL_SPEAKERS])
    assert writer._new_sets([("a",)]) is False
    assert TargetWriter(conn, CALL_SPEAKERS, [])._new_sets([("a",)]) is True
    conn.close()


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

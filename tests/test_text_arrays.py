"""Keys passed to Postgres as text[] arrive as themselves: a key "null" is not a NULL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gong_sync import pending
from gong_sync.postgres import Connection, connect, text_array
from gong_sync.settings import PostgresSettings
from tests.conftest import fresh_database

# Words and characters of the array-literal syntax, and what pg8000 itself quotes or not.
ELEMENTS: list[str | None] = [
    "null", "Null", "NULL", " null", "nULL", "", " ", '"', "\\", "{", "}", ",", "{a,b}",
    'a"b\\c', "é", "\U0001f600", "NaN", "true", None,
]  # fmt: skip


@pytest.fixture
def conn(pg_server: PostgresSettings) -> Iterator[Connection]:
    db = connect(fresh_database(pg_server))
    yield db
    db.close()


def test_every_element_round_trips(conn: Connection) -> None:
    cur = conn.cursor()
    cur.execute(
        "SELECT x FROM unnest(CAST(%s AS text[])) WITH ORDINALITY AS t(x, n) ORDER BY n",
        (text_array(ELEMENTS),),
    )
    assert [r[0] for r in cur.fetchall()] == ELEMENTS


def test_a_parent_named_null_is_not_the_null_parent(conn: Connection) -> None:
    """A NULL parent means "rows with no parent"; a parent "null" is an ordinary key."""
    pending.add(conn, "calls", "transcripts", ["null", None, "Null"], "*", "call")
    taken = {p.parent for p in pending.take(conn, "calls", "transcripts", 10)}
    assert taken == {None, "null", "Null"}
    pending.done(conn, "calls", "transcripts", ["null", "Null"])
    assert [p.parent for p in pending.take(conn, "calls", "transcripts", 10)] == [None]

"""Where a stream's result goes on: rows in cursor order, a stored result from its position."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime

from gong_sync import arrow_rows
from gong_sync import bigquery_sql as sql
from gong_sync.arrow_rows import Row
from gong_sync.bigquery_reader import QueryResult, ResultGone
from gong_sync.declarations import Stream
from gong_sync.positions import Position


class UnorderedResult(RuntimeError):
    """A result came back out of cursor order: committing its positions could skip rows."""


def in_cursor_order(stream: str, rows: Sequence[Row], newest: datetime | None) -> datetime | None:
    """The page's last cursor, once every row is at or after the one before it.

    Each page commits the position of its last row, and a continuation queries after it, so a
    row that arrives after a later one would be skipped for good. The Storage Read API keeps
    an ORDER BY result's order in a single stream; this refuses, before anything of the page
    is committed, a read path that does not.
    """
    at = arrow_rows.first_descent(rows, sql.CURSOR, newest)
    if at is not None:
        cursor = rows[at][sql.CURSOR]
        before = rows[at - 1][sql.CURSOR] if at else newest or cursor  # row 0: below newest
        raise UnorderedResult(
            f"{stream}: BigQuery returned a row with cursor {cursor.isoformat()} after one"
            f" with {before.isoformat()}; nothing of this page was committed. Reading over"
            " REST (GONG_SYNC_BQ_READ_API=rest) keeps the query's order"
        )
    return rows[-1][sql.CURSOR] if rows else newest


def resumed(
    position: Position, stream: Stream, pages: Iterator[QueryResult]
) -> Iterator[QueryResult]:
    """A stored result's pages from its row at the position on, that row itself dropped.

    A result whose row there is another one is not the query the position was read from.
    """
    first = next(pages, None)
    if first is None:
        raise ResultGone("the stored result ends before the position")
    row = first.rows[0]
    key = tuple(row[sql.key_column(i)] for i in range(len(stream.key)))
    if (row[sql.CURSOR], key) != (position.cursor, tuple(position.key)):
        raise ResultGone("the stored result does not continue at the position")
    if len(first.rows) > 1:
        yield dataclasses.replace(first, rows=first.rows[1:])
    yield from pages

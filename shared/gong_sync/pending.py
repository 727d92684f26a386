"""Parents waiting to be derived again, kept in Postgres with the positions that named them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gong_sync.declarations import Target
from gong_sync.postgres import Connection, text_array
from gong_sync.row_mapping import holdable

FULL = ""  # the feeds of a touch that may change any column: the whole row is derived
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Pending:
    """One touched parent of a target, and what the touches ask of it."""

    parent: str | None
    feeds: frozenset[str]  # FULL among them: derive the whole set
    stream: str  # the first stream that named it


def due(every: timedelta | None, now: datetime) -> datetime | None:
    """When parents noted now by a touch derived once per `every` are due: the next boundary.

    Boundaries are multiples of `every` since the epoch (midnight UTC for a day), so a day's
    touches all fall due together, whatever hour noted them. None: due at once.
    """
    if not every:
        return None
    return _EPOCH + ((now - _EPOCH) // every + 1) * every


def add(
    conn: Connection,
    source: str,
    target: str,
    parents: Iterable[str | None],
    feeds: str,
    stream: str,
    when: datetime | None = None,
) -> None:
    """Note parents to derive, from `when` on (None: at once); the page's transaction commits.

    A parent noted again keeps the earlier of its two due times.
    """
    keys = list(set(parents))
    if keys:
        conn.cursor().execute(
            "INSERT INTO pending_derivations (source, target, parent, feeds, stream, due)"
            " SELECT %s, %s, unnest(CAST(%s AS text[])), %s, %s,"
            " COALESCE(CAST(%s AS timestamptz), '-infinity')"
            " ON CONFLICT ON CONSTRAINT pending_derivations_unique DO UPDATE SET due = excluded.due"
            " WHERE pending_derivations.due > excluded.due",
            (source, target, text_array(keys), feeds, stream, when),
        )


def stored_parents(
    conn: Connection, source: str, target: Target, column: str, values: Iterable[str]
) -> set[str]:
    """The parents of the target's rows whose `column` holds one of these values.

    Stored rows, and rows the ledger holds as rejected: a row rejected for what a user
    carried (a NUL in a name) lands once the user is fixed, so the fix must reach it.
    """
    keys = sorted(set(values))
    if not keys:
        return set()
    cur = conn.cursor()
    cur.execute(
        f'SELECT "{target.parent}" FROM "{target.table}"'
        f' WHERE "{column}" = ANY(CAST(%s AS text[]))'
        " UNION SELECT record ->> %s FROM dead_letters"
        " WHERE source = %s AND target = %s AND record ->> %s = ANY(CAST(%s AS text[]))",
        (text_array(keys), target.parent, source, target.table, column, text_array(keys)),
    )
    # A ledger record keeps a parent too long for a key whole: it was never a stored parent.
    return {row[0] for row in cur.fetchall() if row[0] is not None and holdable(row[0])}


def targets(conn: Connection, source: str) -> list[str]:
    """The targets of a source with parents due."""
    cur = conn.cursor()
    cur.execute(
        "SELECT DISTINCT target FROM pending_derivations WHERE source = %s AND due <= now()"
        " ORDER BY target",
        (source,),
    )
    return [row[0] for row in cur.fetchall()]


def take(conn: Connection, source: str, target: str, limit: int) -> list[Pending]:
    """Up to `limit` due parents of a target, each with every feed asked of it (due or not:
    deriving it now serves them all)."""
    cur = conn.cursor()
    cur.execute(
        "SELECT parent, array_agg(feeds), min(stream) FROM pending_derivations"
        " WHERE source = %s AND target = %s GROUP BY parent HAVING min(due) <= now()"
        " ORDER BY parent NULLS FIRST LIMIT %s",
        (source, target, limit),
    )
    return [Pending(p, frozenset(f), s) for p, f, s in cur.fetchall()]


def waiting(conn: Connection, source: str, target: str, parents: Iterable[str]) -> set[str]:
    """Which of these parents are noted and not derived yet: in flight, not drift."""
    return set(of_parents(conn, "pending_derivations", "parent", source, target, parents))


def of_parents(
    conn: Connection, table: str, column: str, source: str, target: str, parents: Iterable[str]
) -> list[Any]:
    """One column of a bookkeeping table's rows (kept per source, target and parent) for
    these parents of a target; a parent no key can hold is in none of them."""
    cur = conn.cursor()
    cur.execute(
        f"SELECT {column} FROM {table} WHERE source = %s AND target = %s"
        " AND parent = ANY(CAST(%s AS text[]))",
        (source, target, text_array(sorted({p for p in parents if holdable(p)}))),
    )
    return [row[0] for row in cur.fetchall()]


def done(conn: Connection, source: str, target: str, parents: Sequence[str | None]) -> None:
    """Forget derived parents; the caller commits this with their new rows. A parent no key
    can hold (a NUL in it) was never noted, and cannot be named to Postgres."""
    keys = [p for p in parents if p is not None and holdable(p)]
    conn.cursor().execute(
        "DELETE FROM pending_derivations WHERE source = %s AND target = %s"
        " AND (parent = ANY(CAST(%s AS text[])) OR (parent IS NULL AND %s))",
        (source, target, text_array(keys), None in parents),
    )


def forget(conn: Connection, source: str, target: str) -> None:
    """Drop every parent noted for a target; the caller commits."""
    conn.cursor().execute(
        "DELETE FROM pending_derivations WHERE source = %s AND target = %s", (source, target)
    )

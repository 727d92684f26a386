"""Per-parent floors: the earliest cursor of any row of a parent a touching stream has read.

A derivation reads a parent's rows by key, and on a table clustered on `_fivetran_synced` a key
filter prunes nothing: every hourly derivation of a new call's speakers billed both speaker
tables in full. Fivetran stamps `_fivetran_synced` on every write, so a row's cursor only grows:
every row of a parent has a cursor at or after the earliest its streams ever read for it, or,
for a row no stream has read yet, after its stream's watermark less the lookback (the same
bound every page query relies on). `cursor >= @floor` on each such table is then exact, and
prunes to the blocks since the oldest parent of the batch was first seen.

A target's floors are trusted once they cover every row read before: either its streams had
never been read (every row is recorded as it is read, or as a skipped stream is passed over),
or one seed query recorded the earliest cursor of every parent already there (again whenever
the streams naming its parents change). A run by ids lowers the floors of what it derived:
it may land a row no page read (later than the lookback), which a floor must not drop again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.cloud import bigquery

from gong_sync import arrow_rows, pending
from gong_sync import bigquery_sql as sql
from gong_sync.arrow_rows import Row
from gong_sync.declarations import Source, Stream
from gong_sync.positions import lookback_from
from gong_sync.postgres import Connection, text_array
from gong_sync.row_mapping import holdable

if TYPE_CHECKING:
    from gong_sync.engine import SourceRun

log = logging.getLogger(__name__)

Floors = dict[str, dict[str, datetime]]  # target -> parent -> earliest cursor read
NO_FLOOR = datetime(1, 1, 1, tzinfo=UTC)  # a parent with a NULL-cursor row (sql.NULL_CURSOR)
_WRITE_BATCH = 50_000  # parents per INSERT: bounds one statement's parameters


def streams(source: Source, target: str) -> list[Stream]:
    """The streams whose rows name the target's parents in a column: what a floor bounds."""
    return [s for s in source.streams if s.names_parents_of(target)]


def of_page(stream: Stream, page: Sequence[Row]) -> Floors:
    """Target -> parent -> the earliest cursor among a page's rows of that parent."""
    out: Floors = {}
    cursors = arrow_rows.column(page, sql.CURSOR) if stream.touches else []
    for touch in stream.touches:
        if touch.column is None:
            continue
        earliest = out.setdefault(touch.target, {})
        for parent, cursor in zip(arrow_rows.column(page, touch.column), cursors, strict=True):
            if parent is None or cursor is None:
                continue
            key = str(parent)
            if key not in earliest or cursor < earliest[key]:
                earliest[key] = cursor
    return out


def record(conn: Connection, source: str, floors: Floors) -> None:
    """Lower the stored floors to these; the caller's transaction commits them (a page's,
    a skipped stream's, a seed's or an ids run's). A parent no key can hold is left out: it
    is never derived from a floor (see Derivations.notes)."""
    for target, earliest in floors.items():
        items = sorted((p, c) for p, c in earliest.items() if holdable(p))
        for i in range(0, len(items), _WRITE_BATCH):
            chunk = items[i : i + _WRITE_BATCH]
            conn.cursor().execute(
                "INSERT INTO derivation_floors (source, target, parent, floor)"
                " SELECT %s, %s, unnest(CAST(%s AS text[])),"
                " unnest(CAST(CAST(%s AS text[]) AS timestamptz[]))"
                " ON CONFLICT (source, target, parent) DO UPDATE SET floor = excluded.floor"
                " WHERE derivation_floors.floor > excluded.floor",
                (
                    source,
                    target,
                    text_array(p for p, _ in chunk),
                    text_array(c.isoformat() for _, c in chunk),
                ),
            )


def _seeded_for(conn: Connection, source: str, target: str) -> str | None:
    """The streams a target's floors were last seeded for (comma-joined), None if never."""
    cur = conn.cursor()
    cur.execute(
        "SELECT streams FROM derivation_floor_seeds WHERE source = %s AND target = %s",
        (source, target),
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _found(rows: Iterable[Row]) -> dict[str, datetime]:
    """Parent -> floor from a floor query's rows."""
    return {str(r["k"]): r["floor"] for r in rows if r["k"] is not None}


class RunFloors:
    """One run's floors: seeded before its streams are read, recorded as they are, used last."""

    def __init__(self, run: SourceRun) -> None:
        """Bind to the run whose connection, queries and watermarks these use."""
        self.run = run
        self.marks: Mapping[str, datetime] = {}
        self.ready: set[str] = set()  # targets whose floors cover every row read before

    def prepare(self, marks: Mapping[str, datetime], started: Iterable[str]) -> None:
        """Seed every target whose floors do not cover what its streams read before.

        `marks` are the run's starting watermarks, `started` the streams with a position to
        resume from: a stream with neither was never read, so every row of it will be
        recorded. A target is seeded again when the streams naming its parents change (a touch
        added to a stream read for months), since those streams' rows were never recorded.
        """
        self.marks = dict(marks)
        conn, source = self.run.conn, self.run.source
        begun = set(marks) | set(started)
        for target in source.targets:
            named = streams(source, target.table)
            if not named:
                continue
            tables = ",".join(sorted(s.table for s in named))
            if _seeded_for(conn, source.name, target.table) != tables:
                if begun & {s.table for s in named}:
                    self._seed(target.table, named)
                conn.cursor().execute(
                    "INSERT INTO derivation_floor_seeds (source, target, streams)"
                    " VALUES (%s, %s, %s) ON CONFLICT (source, target)"
                    " DO UPDATE SET streams = excluded.streams, seeded_at = now()",
                    (source.name, target.table, tables),
                )
                conn.commit()
            self.ready.add(target.table)

    def _pages(
        self,
        target: str,
        named: Sequence[Stream],
        keys: Sequence[str] = (),
        until: datetime | None = None,
    ) -> Iterator[Sequence[Row]]:
        """A floor query over these streams' rows of the target's parents (all, or `keys`),
        up to `until` (now), a page at a time: a seed or a backfill's skipped stream names
        every parent (a million calls), which a whole result would hold in memory at once.
        Its cost counts towards the first stream."""
        text = sql.floor_query([(s, _column(s, target)) for s in named], self.run.tables,
                               keyed=bool(keys))  # fmt: skip
        params: list[Any] = [sql.scalar("until", "TIMESTAMP", until or datetime.now(UTC))]
        if keys:
            params.append(bigquery.ArrayQueryParameter("keys", "STRING", list(keys)))
        job = named[0].table if until else f"{target} (floors)"
        return (page.rows for page in self.run.query_pages(text, params, job, named[0].table))

    def _record(self, target: str, pages: Iterable[Sequence[Row]]) -> tuple[int, datetime | None]:
        """Record a floor query's floors page by page; returns its parents and newest cursor."""
        parents, newest = 0, None
        for rows in pages:
            found = _found(rows)
            record(self.run.conn, self.run.source.name, {target: found})
            parents += len(found)
            cursors = [c for c in (newest, *(r["newest"] for r in rows)) if c is not None]
            newest = max(cursors, default=None)
        return parents, newest

    def _seed(self, target: str, named: Sequence[Stream]) -> None:
        """Record the earliest cursor of every parent already in the streams' tables."""
        parents, _ = self._record(target, self._pages(target, named))
        log.info(
            "%s: floors seeded for %d parents", target, parents,
            extra={"fields": {"target": target, "parents": parents}},
        )  # fmt: skip

    def lower(self, ids: Iterable[str]) -> None:
        """Lower the floors of parents a run by ids derived, in its transaction.

        Such a run reads all of time and may land a row older than its parent's floor (one
        that arrived later than the lookback, or has no cursor): a later derivation from the
        floor would drop it again, and every fix would be undone by the next touch.
        """
        keys = sorted({i for i in ids if holdable(i)})
        for target in self.run.source.targets:
            named = streams(self.run.source, target.table)
            if named and keys:
                self._record(target.table, self._pages(target.table, named, keys))

    def skip(self, stream: Stream, until: datetime) -> datetime | None:
        """Record the floors of a stream passed over unread; returns its newest cursor.

        Its rows were derived, not read: without this, a later derivation would trust floors
        that never saw them. One query per target it names parents of (one, so far); a stream
        that names none asks for its newest cursor alone.
        """
        targets = [t.target for t in stream.touches if t.column is not None]
        if not targets:
            text = sql.newest_cursor_query(stream, self.run.tables)
            until_param = [sql.scalar("until", "TIMESTAMP", until)]
            mark: datetime | None = self.run.query_rows(
                text, until_param, stream.table, stream.table
            )[0]["newest"]
            return mark
        newest = [self._record(t, self._pages(t, [stream], until=until))[1] for t in targets]
        return max((n for n in newest if n is not None), default=None)

    def floor(self, target: str, parents: Iterable[str]) -> datetime | None:
        """The cursor every live row of these parents is at or after; None: not known.

        Known only once prepare() ran, which a run by ids never does: a repair must not depend
        on the state it repairs. Nor the first invocation of a full refresh, whose watermarks
        are gone (its continuations may: what they have not read is past their watermarks).
        A parent with a row whose cursor is NULL (its year-1 floor) is read whole.
        """
        named = streams(self.run.source, target)
        if target not in self.ready or any(s.table not in self.marks for s in named):
            return None
        parents = list(parents)
        if not all(holdable(p) for p in parents):  # never recorded: their rows are rejected
            return None
        unread = min(lookback_from(self.marks[s.table], self.run.settings.lookback) for s in named)
        conn, source = self.run.conn, self.run.source.name
        stored: list[datetime] = pending.of_parents(
            conn, "derivation_floors", "floor", source, target, parents
        )
        lowest = min([unread, *stored])
        return None if lowest <= NO_FLOOR else lowest


def _column(stream: Stream, target: str) -> str:
    """The column of a stream's rows that names the target's parents."""
    return next(t.column for t in stream.touches if t.target == target and t.column)

"""Touched parents: named by a stream's pages, their target rows derived again.

A run notes the parents each page touches in Postgres, in the page's own transaction, and
derives them once per target at its end: a backfill of a thousand pages of speakers is a
handful of derivation queries (one per DERIVE_BATCH parents), not a thousand, and one run's
speaker, participant and user changes share one. After a full read of the stream a target's
rows come from, every parent is waiting and the target is swept instead (see sweep.py). A
touch that feeds only some columns (an email's recipients) reads and updates only those
(see narrowing.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from google.cloud import bigquery

from gong_sync import arrow_rows, floors, pending, sweep
from gong_sync import bigquery_sql as sql
from gong_sync.arrow_rows import Row
from gong_sync.batches import Batch
from gong_sync.dead_letters import DeadLetter
from gong_sync.declarations import Source, Stream, Target
from gong_sync.narrowing import narrowed
from gong_sync.postgres_writer import TargetWriter
from gong_sync.row_mapping import RowMapper, holdable

if TYPE_CHECKING:
    from gong_sync.engine import SourceRun

log = logging.getLogger(__name__)

# How many parent keys one derivation query carries in its UNNEST parameter: it bounds the
# rows (email bodies included) one query brings into memory.
DERIVE_BATCH = 10_000
# Parents remembered per target as derived in this invocation; past this, touches derive again
# (correct, only slower), so memory stays bounded however large a re-import is.
REMEMBER_PARENTS = 250_000

Touched = dict[tuple[str, str], set[str | None]]  # (target, feeds) -> parents
# (target, feeds, target column) -> values of a page's rows that find the parents they fed
Was = dict[tuple[str, str, str], set[str]]


@dataclass
class Notes:
    """What a stream's page leaves for its run's derivations, noted in its transaction."""

    touched: Touched  # parents to derive again, but those derived already
    was: Was  # what finds the parents its rows fed before
    floors: floors.Floors  # the earliest cursor its rows carry per parent


def feeds_key(feeds: Iterable[str]) -> str:
    """How a set of fed columns is stored: sorted and comma-joined ('' is the whole row)."""
    return ",".join(sorted(feeds))


def label(table: str, feeds: str) -> str:
    """A derivation's job label: the target, and the columns it feeds if not all."""
    return f"{table} (derived {feeds})" if feeds else f"{table} (derived)"


def batched(source: Source) -> dict[str, Target]:
    """The derivations a run batches its touches into, one per target and fed columns.

    `gong-sync check` dry-runs these and the cost model prices them: what a run issues.
    """
    out: dict[str, Target] = {}
    for touch in (t for stream in source.streams for t in stream.touches):
        name = label(touch.target, feeds_key(touch.feeds))
        if name not in out:
            whole = source.target(touch.target)
            out[name] = narrowed(whole, touch.feeds) if touch.feeds else whole
    return out


class Derivations:
    """The derivations of one run: noted per page, done per target, remembered per parent."""

    def __init__(self, run: SourceRun) -> None:
        """Bind to the run whose queries, mapping and commits these use."""
        self.run = run
        self.floors = floors.RunFloors(run)
        # Parents derived during this invocation, per target: a later touch of one is a no-op.
        self.derived: dict[str, set[str | None]] = {}
        self.narrow: dict[tuple[str, str], tuple[RowMapper, TargetWriter]] = {}

    # -- noting ------------------------------------------------------------------------------

    def notes(self, stream: Stream, page: Sequence[Row], letters: list[DeadLetter]) -> Notes:
        """What a page of the stream leaves to note: touches, earlier parents, floors; and,
        into `letters`, the rows of the parents no Postgres key can hold."""
        touched = self.touched(stream, page)
        letters += self._turned_away(stream, touched)
        return Notes(self.fresh(touched), self.was(stream, page), floors.of_page(stream, page))

    def _turned_away(self, stream: Stream, touched: Touched) -> list[DeadLetter]:
        """Take out the parents no Postgres key can hold (a NUL in a call id): noting one
        failed the page on every run. Where the stream's rows are the target's own, they are
        derived now, each a dead letter of this page; elsewhere the target's rows are the
        dead letters of the stream they come from, and nothing of this row is stored."""
        letters: list[DeadLetter] = []
        for (table, _), parents in touched.items():
            bad = {p for p in parents if p is not None and not holdable(p)}
            parents -= bad
            if bad and self.run.source.target(table).base_table == stream.table:
                letters += self.derive({table: set(bad)}, stream.table)[1]
        return letters

    def touched(self, stream: Stream, page: Sequence[Row]) -> Touched:
        """(target, feeds) -> parents named by a page of a touching stream.

        Where the stream's rows are the target's rows (call_speaker for call_speakers), a NULL
        parent is named too: its rows are read and rejected, never silently dropped.
        """
        out: Touched = {}
        for touch in stream.touches:
            parents = out.setdefault((touch.target, feeds_key(touch.feeds)), set())
            if touch.column:
                values = arrow_rows.column(page, touch.column)
                parents.update(str(v) for v in values if v is not None)
                base = self.run.source.target(touch.target).base_table == stream.table
                if None in values and base:
                    parents.add(None)
            elif touch.lookup_sql:
                parents.update(self._lookup(touch.target, touch.lookup_sql, stream, page))
        return out

    def _lookup(
        self, target: str, lookup_sql: str, stream: Stream, page: Sequence[Row]
    ) -> set[str]:
        """The parents a lookup finds for the changed keys of a page."""
        first = sql.key_column(0)
        ids = sorted({str(v) for v in arrow_rows.column(page, first) if v is not None})
        if not ids:
            return set()
        param = bigquery.ArrayQueryParameter("ids", "STRING", ids)
        lookup = sql.resolve(lookup_sql, self.run.tables)
        found = self.run.query_rows(lookup, [param], f"{target} (lookup)", stream.table)
        return {str(r["k"]) for r in found if r["k"]}

    def was(self, stream: Stream, page: Sequence[Row]) -> Was:
        """What finds, in Postgres, the parents a page's rows fed before (see Touch.was)."""
        out: Was = {}
        for touch in stream.touches:
            if touch.was:
                values = arrow_rows.column(page, touch.was[0])
                at = (touch.target, feeds_key(touch.feeds), touch.was[1])
                held = (str(v) for v in values if v is not None)  # no stored row holds others
                out.setdefault(at, set()).update(v for v in held if holdable(v))
        return out

    def fresh(self, touched: Touched) -> Touched:
        """The touched parents but those whose whole set this invocation wrote already.

        A page of the stream that drives their target read them after the run began, so it
        saw every row up to `until` that a touch could name: a re-import of emails would
        otherwise derive each email's recipients again.
        """
        return {k: parents - self.derived.get(k[0], set()) for k, parents in touched.items()}

    @cached_property
    def every(self) -> dict[tuple[str, str, str], timedelta | None]:
        """(stream, target, feeds) -> the period its touch's parents wait for (Touch.every),
        of the declaration the run resolved (a fallback's, where it uses one)."""
        return {
            (s.table, t.target, feeds_key(t.feeds)): t.every
            for s in self.run.source.streams
            for t in s.touches
        }

    def note(self, notes: Notes, stream: str) -> None:
        """Note the touched parents in the page's transaction: derived at the end of the run.

        With them, the parents the page's rows fed before: a row that moved to another parent
        in place must leave the set of the one it left. And the floors its rows lower.
        """
        conn, source = self.run.conn, self.run.source.name
        for (table, feeds, column), values in notes.was.items():
            target = self.run.source.target(table)
            before = pending.stored_parents(conn, source, target, column, values)
            notes.touched.setdefault((table, feeds), set()).update(before)
        now = datetime.now(UTC)
        for (table, feeds), parents in notes.touched.items():
            when = pending.due(self.every.get((stream, table, feeds)), now)
            pending.add(conn, source, table, parents, feeds, stream, when)
        floors.record(conn, source, notes.floors)

    def remember(self, table: str, parents: Iterable[str | None]) -> None:
        """Parents whose whole set a stream's page wrote, where a later touch may name them.

        Only while streams are read, and only targets a stream touches: derivations run at
        the end, after every note, so nothing else would ever look (at a million calls, the
        calls, speaker and link parents held some 40 MB for nothing).
        """
        if not any(t.target == table for s in self.run.source.streams for t in s.touches):
            return
        seen = self.derived.setdefault(table, set())
        if len(seen) < REMEMBER_PARENTS:
            seen.update(parents)

    # -- deriving ----------------------------------------------------------------------------

    def flush(self) -> bool:
        """Derive every parent waiting, a batch per transaction; False if time ran out."""
        conn, source = self.run.conn, self.run.source.name
        declared = {t.table for t in self.run.source.targets}
        for table in pending.targets(conn, source):
            if table not in declared:  # a target since removed from the declaration
                log.warning("%s: dropping parents noted for %s, no longer declared", source, table)
                pending.forget(conn, source, table)
                conn.commit()
                continue
            target = self.run.source.target(table)
            stream = sweep.sweeping_stream(self.run, target)
            job = label(table, pending.FULL)
            if stream is not None and not sweep.sweep(self, target, stream, DERIVE_BATCH, job):
                return False
            while batch := pending.take(conn, source, table, DERIVE_BATCH):
                if self.run.out_of_time():
                    return False
                self._derive_waiting(target, batch)
        return True

    def _derive_waiting(self, target: Target, waiting: Sequence[pending.Pending]) -> None:
        """Derive one batch of waiting parents and forget them, in one transaction."""
        stream_of = {p.parent: p.stream for p in waiting}
        whole = {p.parent for p in waiting if pending.FULL in p.feeds}
        by_feeds: dict[str, set[str | None]] = defaultdict(set)
        for p in waiting:
            if p.parent not in whole:
                by_feeds[feeds_key(set().union(*(f.split(",") for f in p.feeds)))].add(p.parent)
        letters: list[DeadLetter] = []
        for feeds, parents in by_feeds.items():
            whole |= self._update_narrowly(target, feeds, parents, stream_of, letters)
        batches, more = self.derive({target.table: whole}, stream_of)
        pending.done(self.run.conn, self.run.source.name, target.table, list(stream_of))
        self.run.commit_page(batches, [*letters, *more], None, None)

    def _update_narrowly(
        self,
        target: Target,
        feeds: str,
        parents: set[str | None],
        stream_of: Mapping[str | None, str],
        letters: list[DeadLetter],
    ) -> set[str | None]:
        """Update the fed columns of stored rows; returns the parents that need their whole row.

        Those are the parents with no live row in BigQuery (deleted: the whole derivation
        deletes it) or none in Postgres (not landed: it inserts it), as deriving all would.
        """
        if (target.table, feeds) not in self.narrow:  # built once a run, not once a batch
            narrow = narrowed(target, feeds.split(","))
            suffix = f"_n{len(self.narrow)}"
            writer = TargetWriter(self.run.conn, narrow, [], stage_suffix=suffix)
            self.narrow[(target.table, feeds)] = (RowMapper(narrow), writer)
        mapper, writer = self.narrow[(target.table, feeds)]
        narrow = mapper.target
        rows = self._query(narrow, parents, label(target.table, feeds))
        batch = Batch(narrow, narrow.key)
        for stream, group in _by_stream(rows, narrow.parent, stream_of).items():
            self.run.fill_batch(batch, group, stream, letters, mapper)
        write, missing = writer.update(batch.lines)
        self.run.stats.add_write(write)
        live = {u[0] for u in batch.lines} | {u[0] for u in batch.kept}
        return {p for p in parents if p not in live} | {k[0] for k in missing}

    def derive(
        self,
        parents: Mapping[str, set[str | None]],
        stream_of: Mapping[str | None, str] | str,
        found: set[str] | None = None,
    ) -> tuple[list[Batch], list[DeadLetter]]:
        """Each target's whole sets for these parents; `found` collects those with rows."""
        batches: list[Batch] = []
        letters: list[DeadLetter] = []
        for table, keys in parents.items():
            if not keys:
                continue
            target = self.run.source.target(table)
            rows = self._query(target, keys, label(table, pending.FULL))
            if found is not None:  # only an ids run asks: a backfill would hold every id
                found.update(str(r[target.parent]) for r in rows if r[target.parent] is not None)
            batches.append(self.whole_sets(target, rows, keys, stream_of, letters))
        return batches, letters

    def whole_sets(
        self,
        target: Target,
        rows: Sequence[Row],
        parents: Iterable[str | None],
        stream_of: Mapping[str | None, str] | str,
        letters: list[DeadLetter],
    ) -> Batch:
        """These parents' whole sets from their rows (a parent without any is emptied)."""
        batch = Batch(target, (target.parent,))
        if isinstance(stream_of, str):
            self.run.fill_batch(batch, rows, stream_of, letters)
        else:
            for stream, group in _by_stream(rows, target.parent, stream_of).items():
                self.run.fill_batch(batch, group, stream, letters)
        batch.units |= {(k,) for k in parents if k is not None}
        return batch

    def _query(self, target: Target, parents: Iterable[str | None], job: str) -> list[Row]:
        """All live rows of target for these parents (None: the rows whose parent is NULL)."""
        wanted = set(parents)
        keys = sorted(k for k in wanted if k is not None)
        rows: list[Row] = []
        cost = label(target.table, pending.FULL)  # it serves every stream that touched it
        for i in range(0, len(keys), DERIVE_BATCH):
            chunk = keys[i : i + DERIVE_BATCH]
            params: list[Any] = [bigquery.ArrayQueryParameter("keys", "STRING", chunk)]
            floor = self.floors.floor(target.table, chunk)
            named: list[Stream] = []
            if floor is not None:  # its floored tables are read from there on
                named = floors.streams(self.run.source, target.table)
                params.append(sql.scalar("floor", "TIMESTAMP", floor))
            text = sql.derive_query(target, self.run.tables, floored=named)
            rows += self.run.query_rows(text, params, job, cost)
        if None in wanted:  # no stored set to replace: each such row becomes a dead letter
            text = sql.derive_query(target, self.run.tables, null_parent=True)
            rows += self.run.query_rows(text, [], f"{job}, null parent", cost)
        return rows


def _by_stream(
    rows: Sequence[Row], parent: str, stream_of: Mapping[str | None, str]
) -> dict[str, list[Row]]:
    """Rows grouped by the stream that named their parent: a dead letter names that stream."""
    out: dict[str, list[Row]] = defaultdict(list)
    fallback = next(iter(stream_of.values()), "derived")
    for row in rows:
        value = row.get(parent)
        out[stream_of.get(None if value is None else str(value), fallback)].append(row)
    return out

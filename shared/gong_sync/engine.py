"""The sync engine: one source, one lock, pages of changes, each committed with its watermark."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gong_sync import (
    arrow_lines,
    arrow_rows,
    pending,
    positions,
    prefetch,
    quality,
    result_order,
    state,
)
from gong_sync import bigquery_sql as sql
from gong_sync.arrow_rows import Row
from gong_sync.batches import Batch, dead_letter, fill
from gong_sync.bigquery_reader import (
    BigQueryReader,
    OutOfTime,
    Query,
    QueryResult,
    ResultGone,
)
from gong_sync.dead_letters import DeadLetter, DeadLetterSink
from gong_sync.declarations import Source, Stream, Target
from gong_sync.derivations import Derivations, Notes
from gong_sync.positions import Position, Result
from gong_sync.postgres import Connection
from gong_sync.postgres_writer import TargetWriter
from gong_sync.row_mapping import RowMapper
from gong_sync.runs import RunHooks, RunOptions, RunStats
from gong_sync.settings import Settings
from gong_sync.write_behind import OverlapClock, WriteBehind

log = logging.getLogger(__name__)


class SourceRun:
    """One run of one source against one connection; see DESIGN §4 for the contract."""

    def __init__(
        self,
        source: Source,
        settings: Settings,
        reader: BigQueryReader,
        conn: Connection,
        sink: DeadLetterSink,
        options: RunOptions,
        hooks: RunHooks | None = None,
    ) -> None:
        """Bind the run to its source, clients and options."""
        self.hooks = hooks or RunHooks()
        self.source = source
        self.settings = settings
        self.reader = reader
        self.conn = conn
        self.sink = sink
        self.options = options
        self.stats = RunStats(source.name)
        self.tables: dict[str, sql.TableRef] = {}
        self.started = time.monotonic()
        # Filled by execute() for the declaration it resolves (the source or its fallback).
        self.mappers: dict[str, RowMapper] = {}
        self.writers: dict[str, TargetWriter] = {}
        # Targets derived for every parent during this invocation: later touches are no-ops.
        self.complete: set[str] = set()
        self.derivations = Derivations(self)
        # Mapping and writing overlap once pages are written behind: counted once.
        self.load_clock = OverlapClock()

    def _bind(self, source: Source) -> None:
        """Prepare mappers and writers for the declaration this run uses."""
        self.mappers = {t.table: RowMapper(t) for t in source.targets}
        self.writers = {
            t.table: TargetWriter(self.conn, t, [source.target(c) for c in t.children])
            for t in source.targets
        }

    # -- reading -----------------------------------------------------------------------------

    def _bq(self, text: str, params: list[Any], label: str) -> Query:
        """A query of this source, under its cap on bytes billed."""
        cap = self.settings.bigquery.max_bytes_billed_for(self.source.name)
        return Query(text, params, label, cap)

    def query_rows(self, text: str, params: list[Any], label: str, stream: str) -> list[Row]:
        """All rows of one query; its cost counts towards the stream that asked for it."""
        started = time.perf_counter()
        result = self.reader.query(self._bq(text, params, label), self.options.hard_deadline)
        self.stats.read_seconds += time.perf_counter() - started
        self.stats.add_cost(stream, result.bytes_processed, result.bytes_billed)
        return list(result.rows)

    # -- mapping -----------------------------------------------------------------------------

    def fill_batch(
        self,
        batch: Batch,
        rows: Sequence[Row],
        stream: str,
        letters: list[DeadLetter],
        mapper: RowMapper | None = None,
    ) -> None:
        """Map rows into batch; each rejected row becomes a dead letter."""
        started = time.perf_counter()
        try:
            with self.load_clock.running():
                rejected = fill(batch, mapper or self.mappers[batch.target.table], rows)
        finally:
            self.stats.transform_seconds += time.perf_counter() - started
        name, run_id = self.source.name, self.stats.run_id
        letters += (
            dead_letter(name, stream, batch.target, row, reason, run_id) for row, reason in rejected
        )

    # -- writing -----------------------------------------------------------------------------

    def commit_page(
        self,
        batches: Sequence[Batch],
        letters: Sequence[DeadLetter],
        stream: Stream | None,
        mark: datetime | None,
        position: Mapping[str, Any] | None = None,
        advance: bool = True,
    ) -> None:
        """Write the page's batches, letters and watermark in one transaction."""
        self.hooks.before_commit(self.source.name)
        started = time.perf_counter()
        try:
            with self.load_clock.running():
                for batch in batches:
                    self._bury_deleted(batch)
                    write = self.writers[batch.target.table].replace(
                        batch.lines, batch.replaced_units(), batch.unit_cols, batch.kept_keys
                    )
                    self.stats.add_write(write)
                self.sink.publish(letters)
                if stream is not None and mark is not None:
                    state.advance_watermark(
                        self.conn, self.source.name, stream.table, mark, position, advance=advance
                    )
                self.conn.commit()
            self.stats.commits += 1
        except BaseException:
            self._rollback()
            raise
        finally:
            self.stats.load_seconds += time.perf_counter() - started
        self.stats.rows_failed += len(letters)
        for rule, n in quality.count_rules(letter.reason for letter in letters).items():
            self.stats.rejected_rules[rule] = self.stats.rejected_rules.get(rule, 0) + n

    def _bury_deleted(self, batch: Batch) -> None:
        """Remember the parents a batch deletes with their children (by any path: a page, ids)."""
        if batch.target.children and batch.target.key == (batch.target.parent,):
            gone = set(batch.replaced_units()) - batch.lines.keys()
            state.bury(self.conn, self.source.name, batch.target.table, (u[0] for u in gone))

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:  # the connection may be the thing that broke
            log.debug("rollback failed", exc_info=True)

    # -- the run -----------------------------------------------------------------------------

    def out_of_time(self) -> bool:
        """Whether the run must stop between pages: its budget is spent and it moved on.

        Not before its first commit: an invocation whose set-up outlasted its budget would
        otherwise end with nothing done, and so would each continuation after it, for ever.
        The hard deadline still bounds that first commit.
        """
        return self.stats.commits > 0 and self.hooks.out_of_time(self.stats, self.options)

    def _sync_stream(
        self,
        stream: Stream,
        since: datetime | None,
        until: datetime,
        resume: Position | None,
        advance: bool = True,
    ) -> bool:
        """Page through one stream; False if the time budget ran out first."""
        target = self.source.target(stream.drives) if stream.drives else None
        if resume is not None and resume.done:
            return True  # finished earlier in this (continued) run: no second lookback pass
        position = resume  # continue exactly where an unfinished run stopped
        if position is not None:
            since = None
        with WriteBehind() as writes:  # a page is written while the next one maps
            while True:
                if self.out_of_time():
                    return False
                pages, got, limit = self._pages_after(stream, target, since, until, position)
                try:
                    for result in pages:
                        got += len(result.rows)
                        read = Result(result.job_id, result.location, got, limit) if (
                            result.job_id) else None  # fmt: skip
                        page = self._map_stream_page(stream, target, result.rows, advance, read)
                        writes.wait()
                        if self.out_of_time():
                            return False  # between pages; a continuation resumes after `position`
                        position = self._submit(writes, page)
                except ResultGone as exc:  # committed pages moved `position`: nothing is lost
                    writes.wait()
                    log.info("%s: %s; querying again from the position", stream.table, exc)
                    position = dataclasses.replace(position, result=None) if position else None
                    continue
                writes.wait()
                if got < limit:
                    done = positions.finished(self._window(advance))  # binds no other window
                    state.finish_stream(self.conn, self.source.name, stream.table, done.to_json())
                    return True

    def _pages_after(
        self,
        stream: Stream,
        target: Target | None,
        since: datetime | None,
        until: datetime,
        position: Position | None,
    ) -> tuple[Iterator[QueryResult], int, int]:
        """The next pages of a stream, the rows of their result already read, and its LIMIT.

        A continuation pages on through the result of the query its chain already ran (read
        again, unbilled, while BigQuery keeps it); otherwise one new query covers many pages
        (one scan billed), its LIMIT bounding the sort BigQuery does on one worker.
        """
        size, hard = self.settings.page_size, self.options.hard_deadline
        stored = position.result if position is not None and self.options.resume else None
        if position is not None and stored is not None and stored.offset < stored.limit:
            # From the position's own row: reading it back proves the result is that query's.
            rows = self.reader.resume(stored.job_id, stored.location, stored.offset - 1, size, hard)
            pages = result_order.resumed(position, stream, rows)
            return self._pages(pages, stream.table, target), stored.offset, stored.limit
        limit = size * self.settings.pages_per_query
        text = sql.page_query(
            stream, target, self.tables,
            has_since=since is not None, has_position=position is not None,
        )  # fmt: skip
        after = None if position is None else (position.cursor, position.key)
        params = sql.page_params(stream, self.tables[stream.table], until, limit, since, after)
        query = self._bq(text, params, stream.table)
        return self._pages(self.reader.pages(query, size, hard), stream.table, target), 0, limit

    def _pages(
        self, pages: Iterator[QueryResult], stream: str, target: Target | None
    ) -> Iterator[QueryResult]:
        """A stream's pages, fetched one ahead, each checked to follow on in cursor order.

        Rows that the mapping will read one by one are converted by the fetching thread,
        while this one waits on Postgres.
        """
        if target is not None and not arrow_lines.complete(target):
            pages = map(_converted, pages)
        newest: datetime | None = None
        for result in self._ahead(pages, stream):
            newest = result_order.in_cursor_order(stream, result.rows, newest)
            yield result

    def _ahead(self, pages: Iterator[QueryResult], stream: str) -> Iterator[QueryResult]:
        """Pages fetched one ahead; only the time spent waiting for one counts as reading."""
        for result, waited in prefetch.ahead(pages, self.options.hard_deadline):
            self.stats.read_seconds += waited
            self.stats.add_cost(stream, result.bytes_processed, result.bytes_billed)
            if result.rows:  # an empty result's one page carries only its cost
                yield result

    def query_pages(
        self, text: str, params: list[Any], label: str, stream: str
    ) -> Iterator[QueryResult]:
        """One query's result a page at a time, in order; its cost counts towards stream."""
        query = self._bq(text, params, label)
        size, hard = self.settings.page_size, self.options.hard_deadline
        return self._ahead(self.reader.pages(query, size, hard), stream)

    def _window(self, advance: bool) -> datetime | None:
        """The window a position belongs to, if only that window's continuation may resume it.

        A window that starts after the watermark's lookback leaves the watermark alone: any
        other run resuming at its position would skip the rows between the two for good.
        """
        return None if advance else self.options.since

    def _map_stream_page(
        self,
        stream: Stream,
        target: Target | None,
        page: Sequence[Row],
        advance: bool,
        read: Result | None,
    ) -> MappedPage:
        """Map one page of a stream: what its transaction will write, and its position."""
        letters: list[DeadLetter] = []
        batches: list[Batch] = []
        notes = self.derivations.notes(stream, page, letters)
        if target is not None:
            batch = Batch(target, target.key)
            self.fill_batch(batch, page, stream.table, letters)
            batches.append(batch)
        last = page[-1]
        key = tuple(last[sql.key_column(i)] for i in range(len(stream.key)))
        position = positions.after(last[sql.CURSOR], key, self._window(advance), read)
        return MappedPage(stream, len(page), batches, letters, notes, position, advance)

    def _submit(self, writes: WriteBehind, page: MappedPage) -> Position:
        """Count a mapped page as this invocation's and start writing it; returns its position."""
        self.stats.rows_read += page.rows
        self.stats.pages += 1
        for batch in page.batches:
            target = batch.target
            if target.key == (target.parent,):  # each row is its parent's whole set
                # Not a kept unit: its stored row stays as it was, so a touch must still reach it.
                self.derivations.remember(target.table, (u[0] for u in batch.replaced_units()))
        writes.submit(lambda: self._write_stream_page(page))
        return page.position

    def _write_stream_page(self, page: MappedPage) -> None:
        """Commit one mapped page with its position, on the writing thread."""
        for batch in page.batches:
            for child, parents in self._returning_parents(batch).items():
                page.notes.touched.setdefault((child, pending.FULL), set()).update(parents)
        # Derived at the end of the run; noted in this page's transaction, so none is lost.
        self.derivations.note(page.notes, page.stream.table)
        mark, at = page.position.cursor, page.position.to_json()
        self.commit_page(page.batches, page.letters, page.stream, mark, at, page.advance)
        fields = {"stream": page.stream.table, "rows": page.rows}
        log.info(
            "%s: page %d, %d rows", page.stream.table, self.stats.pages, page.rows,
            extra={"fields": fields},
        )  # fmt: skip

    def _returning_parents(self, batch: Batch) -> dict[str, set[str | None]]:
        """Child target -> parents of this page that come back after a delete took children.

        Deleting a call deletes its transcripts, but their rows in BigQuery do not move, so a
        restored call would come back alone: commit_page remembers deleted parents.
        """
        target = batch.target
        if not target.children or target.key != (target.parent,):
            return {}
        back = state.exhume(self.conn, self.source.name, target.table, (k[0] for k in batch.lines))
        return {child: set(back) for child in target.children} if back else {}

    def _covered_by(self, stream: Stream) -> set[str]:
        """Targets that a full read of stream derives for every parent they can have."""
        return {
            t.table
            for t in self.source.targets
            if t.base_table == stream.table
            and (stream.drives == t.table or stream.names_parents_of(t.table))
        }

    def _redundant(self, stream: Stream) -> bool:
        """A touching stream whose targets were all derived in full after this run started.

        Those derivations already saw every row of this stream up to `until`, so reading it
        would only derive the same sets again (on a backfill: every speaker three times).
        """
        return (
            stream.drives is None
            and bool(stream.touches)
            and all(touch.target in self.complete for touch in stream.touches)
        )

    def _skip(self, stream: Stream, until: datetime) -> None:
        """Mark a redundant stream read to its newest row, without reading its rows."""
        newest = self.derivations.floors.skip(stream, until)  # and its rows' floors
        if newest is not None:  # the same watermark a full read would have left
            state.advance_watermark(self.conn, self.source.name, stream.table, newest)
        state.finish_stream(
            self.conn, self.source.name, stream.table, positions.finished().to_json()
        )
        log.info(
            "%s: rows not read; %s were derived in full earlier in this run",
            stream.table,
            ", ".join(sorted({t.target for t in stream.touches})),
            extra={"fields": {"stream": stream.table, "skipped": True}},
        )

    def _sync_ids(self, ids: Sequence[str]) -> None:
        """Derive every target again for the given parent ids; watermarks stay put."""
        wanted: set[str | None] = set(ids)
        found: set[str] = set()
        batches, letters = self.derivations.derive(
            {t.table: wanted for t in self.source.targets}, "ids", found
        )
        self.stats.rows_read += sum(len(b.lines) for b in batches) + len(letters)
        for batch in batches:  # their children are derived in this same commit
            self._returning_parents(batch)
        self.derivations.floors.lower(ids)  # so no later derivation drops what this lands
        self.commit_page(batches, letters, None, None)
        self.stats.ids_not_found = sorted(set(ids) - found)
        if self.stats.ids_not_found:
            log.warning(
                "%d of %d id(s) not found in BigQuery: %s",
                len(self.stats.ids_not_found),
                len(set(ids)),
                ", ".join(self.stats.ids_not_found[:20]),
                extra={"fields": {"ids_not_found": self.stats.ids_not_found}},
            )

    def execute(self) -> RunStats:
        """Run the source end to end; the caller holds the lock."""
        sessions = self.reader.sessions
        try:
            return self._execute()
        finally:
            self.stats.storage_reads = self.reader.sessions - sessions
            self.stats.load_phase_seconds = self.load_clock.seconds

    def _execute(self) -> RunStats:
        read = state.streams_read(self.conn, self.source.name)  # read once: never falls back
        self.source, self.tables = self.reader.resolve(self.source, read)
        state.note_streams_read(self.conn, self.source.name, (s.table for s in self.source.streams))
        self._bind(self.source)
        if self.options.ids:
            self._sync_ids(self.options.ids)
            self.stats.status = "success"
            return self.stats
        until = self.options.until or datetime.now(UTC)
        options = self.options
        if options.full_refresh and not options.resume:
            # Forgetting the watermarks makes the refresh resumable: a continuation (or the next
            # hourly run) is a plain incremental run that picks up where this one stopped.
            state.reset_watermarks(self.conn, self.source.name)
        state.take_rereads(self.conn, self.source.name)  # asked by a migration (0018)
        start = positions.load(
            self.conn, self.source.name, resume=options.resume, since=options.since
        )
        try:
            self._sync_streams(start.watermarks, start.positions, until)
        except OutOfTime as exc:
            # Every committed page moved its position: a continuation resumes after it.
            self._rollback()
            log.warning("stopping before the time limit: %s", exc)
            self.stats.continuation_needed = True
            self.stats.status = "partial"
        return self.stats

    def _sync_streams(
        self, marks: Mapping[str, datetime], resume: Mapping[str, Position], until: datetime
    ) -> None:
        """Read every stream in order; stops (partial) when the time budget runs out."""
        options = self.options
        self.derivations.floors.prepare(marks, resume)
        for stream in self.source.streams:
            if self._redundant(stream):
                self._skip(stream, until)
                continue
            mark = marks.get(stream.table)
            back = None if mark is None else positions.lookback_from(mark, self.settings.lookback)
            since = options.since if options.since is not None else back
            # A window that starts after the lookback of the watermark must not move it past
            # the rows in between, which it does not read.
            advance = options.since is None or (back is not None and options.since <= back)
            position = resume.get(stream.table)
            if not self._sync_stream(stream, since, until, position, advance):
                self.stats.continuation_needed = True
                self.stats.status = "partial"
                return
            if since is None and position is None:  # read from its very start to its end
                self.complete |= self._covered_by(stream)
        if not self.derivations.flush():  # what waits stays noted for the continuation
            self.stats.continuation_needed = True
            self.stats.status = "partial"
            return
        state.finish_run(self.conn, self.source.name)
        self.stats.status = "success"


@dataclasses.dataclass
class MappedPage:
    """A stream page mapped on the reading side, for the writing thread to commit."""

    stream: Stream
    rows: int
    batches: list[Batch]
    letters: list[DeadLetter]
    notes: Notes  # what the run's derivations must hear of it
    position: Position
    advance: bool


def _converted(result: QueryResult) -> QueryResult:
    """The result with its rows converted to dicts, for a caller that reads every one."""
    if isinstance(result.rows, arrow_rows.ArrowRows):
        result.rows.rows()
    return result

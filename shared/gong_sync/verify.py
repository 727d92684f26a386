"""Reconciliation: compare every target's keys (and a sample of values) with BigQuery.

It catches what the cursor cannot see: rows deleted in BigQuery without `_fivetran_synced`
moving, rows removed or edited by hand in Postgres, and late rows older than the lookback.
It also finds orphans: children (transcripts, speakers, links) of a call that BigQuery does
not have, which a sync keeps because a child may land before its parent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from google.cloud import bigquery

from gong_sync import bigquery_sql as sql
from gong_sync import pending, runs, staged_keys, state, sync
from gong_sync.arrow_rows import Row
from gong_sync.bigquery_reader import BigQueryReader, Query, QueryResult, ResultGone
from gong_sync.dead_letters import DeadLetterSink, record_key
from gong_sync.declarations import RowError, Source, Stream, Target
from gong_sync.postgres import Connection
from gong_sync.postgres_writer import TargetWriter, ident
from gong_sync.row_mapping import RowMapper
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, ...]
SAMPLE_SHOWN = 5
KEY_PAGE = 20_000  # keys staged per transaction
# Keys of one kind of drift listed per target (about 15 MB); the rest are counted. A verify
# that runs while a backfill is still loading can find tens of millions.
DRIFT_LISTED = 100_000
KINDS = ("missing", "extra", "changed", "orphans")


@dataclass
class TargetReport:
    """Drift of one target table."""

    target: str
    parent_at: int
    bigquery_rows: int = 0  # distinct live keys in BigQuery (a row with a null key counts 1)
    postgres_rows: int = 0
    missing: list[Key] = field(default_factory=list)  # in BigQuery, not in Postgres
    extra: list[Key] = field(default_factory=list)  # in Postgres, not in BigQuery
    changed: list[Key] = field(default_factory=list)  # values differ (sampled parents)
    # In Postgres, and their parent (a call) is not a live row in BigQuery: not drift of this
    # table's own rows, but nothing will ever delete them.
    orphans: list[Key] = field(default_factory=list)
    rejected: int = 0  # in BigQuery, absent here as dead letters (null keys included)
    values_checked: int = 0
    # Each missing key as a dead letter would record it: a fix that rejects it is not drift.
    records: dict[Key, str] = field(default_factory=dict, repr=False)
    # Keys of a kind found beyond DRIFT_LISTED: counted, not listed, so not repaired this time.
    unlisted: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        """How many keys of one kind of drift were found, listed or not."""
        return len(getattr(self, kind)) + self.unlisted.get(kind, 0)

    @property
    def drift(self) -> bool:
        """Whether any row differs from its source row."""
        return any(self.count(kind) for kind in ("missing", "extra", "changed"))

    @property
    def clean(self) -> bool:
        """Whether Postgres holds exactly what BigQuery does: no drift and no orphans."""
        return not (self.drift or self.count("orphans"))

    def summary(self) -> dict[str, Any]:
        """Counts plus a few sample keys of each kind of drift."""
        return {
            "target": self.target,
            "bigquery_rows": self.bigquery_rows,
            "postgres_rows": self.postgres_rows,
            **{kind: self.count(kind) for kind in KINDS},
            "unlisted": dict(self.unlisted),
            "rejected": self.rejected,
            "values_checked": self.values_checked,
            "samples": {
                kind: [list(k) for k in sorted(keys)[:SAMPLE_SHOWN]]
                for kind, keys in (
                    ("missing", self.missing),
                    ("extra", self.extra),
                    ("changed", self.changed),
                    ("orphans", self.orphans),
                )
                if keys
            },
        }


@dataclass
class SourceReport:
    """Drift of every target of one source, and what finding it cost."""

    source: str
    targets: list[TargetReport] = field(default_factory=list)
    bytes_processed: int = 0
    bytes_billed: int = 0

    @property
    def drift(self) -> bool:
        """Whether any target drifted."""
        return any(t.drift for t in self.targets)

    @property
    def clean(self) -> bool:
        """Whether every target is clean (no drift, no orphans)."""
        return all(t.clean for t in self.targets)

    def drift_counts(self) -> dict[str, dict[str, int]]:
        """Per drifted table, how many keys of each kind (missing, extra, changed, orphans)."""
        return {
            t.target: {k: t.count(k) for k in KINDS if t.count(k)}
            for t in self.targets
            if not t.clean
        }


def parent_target(source: Source, child: Target) -> Target | None:
    """The target whose deletes the child follows (calls for transcripts), if any."""
    return next((t for t in source.targets if child.table in t.children), None)


class Verifier:
    """Compares one source's targets with BigQuery, and repairs the drift it finds."""

    def __init__(
        self,
        source: Source,
        settings: Settings,
        reader: BigQueryReader,
        conn: Connection,
        out_of_time: Callable[[], bool] | None = None,
    ) -> None:
        """Bind to a source and its connections; out_of_time ends an invocation's share."""
        self.source, self.tables = reader.resolve(source, state.streams_read(conn, source.name))
        self.settings = settings
        self.reader = reader
        self.conn = conn
        self.report = SourceReport(source.name)
        self.out_of_time = out_of_time or (lambda: False)

    def _bq(self, text: str, label: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        result = self.reader.query(self._query(text, label, params))
        self._cost(result)
        return list(result.rows)

    def _query(self, text: str, label: str, params: list[Any] | None = None) -> Query:
        cap = self.settings.bigquery.max_bytes_billed_for(self.source.name)
        return Query(text, params or [], label, cap)

    def _cost(self, result: QueryResult) -> None:
        self.report.bytes_processed += result.bytes_processed
        self.report.bytes_billed += result.bytes_billed

    def _pg(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(text, args)
        return [tuple(r) for r in cur.fetchall()]

    def run(self, sample: int) -> SourceReport | None:
        """Compare every target: all keys, and the values of up to `sample` parents each.

        None when the time ran out first: the keys staged so far wait for the next call.
        """
        name = self.source.name
        if not state.try_lock_verify(self.conn, name):
            raise Busy(f"a verify of {name} is running; it reports when it ends")
        try:
            jobs = staged_keys.progress(self.conn, name) or self._start()
            try:
                if not all(self._stage(target, jobs) for target in self.source.targets):
                    return None
            except ResultGone as exc:  # after about 24 h: every side is read again, in order
                log.warning("verify %s: %s; starting over", name, exc)
                jobs = self._start()
                if not all(self._stage(target, jobs) for target in self.source.targets):
                    return None
            for target in self.source.targets:
                self.report.targets.append(self._target(target, jobs[target.table], sample))
            staged_keys.clear(self.conn, name)
            self.conn.commit()
            return self.report
        finally:
            state.unlock_verify(self.conn, name)

    def _start(self) -> dict[str, staged_keys.Job]:
        """Snapshot every target's Postgres keys, then start every BigQuery key query.

        Postgres first, for every target: a row synced while BigQuery is read then shows as
        missing (a fix re-syncs it, harmlessly), never as extra or as an orphan (which a fix
        would delete), its parent included.
        """
        name = self.source.name
        staged_keys.clear(self.conn, name)
        staged_keys.snapshot(self.conn, name, self.source.targets)
        self.conn.commit()
        jobs: dict[str, staged_keys.Job] = {}
        for target in self.source.targets:
            job = jobs[target.table] = staged_keys.Job()
            query = self._query(sql.key_query(target, self.tables), f"{target.table} (keys)")
            first = next(self.reader.pages(query, KEY_PAGE))  # the result is kept
            self._cost(first)  # an empty result has one page too, with its cost
            if not first.rows:  # no live row at all
                job.done = True
                continue
            job.job_id, job.location = first.job_id, first.location
            self._stage_page(target, job, first.rows)
            job.total = first.total_rows
            job.done = _finished(job, len(first.rows))
        staged_keys.save(self.conn, name, jobs)
        self.conn.commit()
        return jobs

    def _stage_page(self, target: Target, job: staged_keys.Job, rows: Sequence[Row]) -> None:
        keys = [[row[k] for k in target.key] for row in rows]
        job.unstorable += staged_keys.stage(self.conn, self.source.name, target, keys)
        job.offset += len(rows)
        if keys:
            job.last = record_key(keys[-1])

    def _stage(self, target: Target, jobs: dict[str, staged_keys.Job]) -> bool:
        """Page a target's BigQuery keys into Postgres; False if the time ran out first."""
        job = jobs[target.table]
        if job.done:
            return True
        # From the last staged row, dropped again: a start at the result's end is an error.
        pages = self.reader.resume(job.job_id or "", job.location, job.offset - 1, KEY_PAGE)
        skip = 1
        for page in pages:
            if skip and record_key([page.rows[0][k] for k in target.key]) != job.last:
                # Pages are read by row index: a result whose row there differs is not the
                # one staged so far, and staging on would mix two results.
                raise ResultGone(f"the key result of {target.table} does not continue there")
            self._stage_page(target, job, page.rows[skip:])
            skip = 0
            job.done = _finished(job, len(page.rows))
            staged_keys.save(self.conn, self.source.name, jobs)
            self.conn.commit()
            if job.done:
                return True
            if self.out_of_time():  # after a page: every call moves the verify on
                return False
        job.done = True
        staged_keys.save(self.conn, self.source.name, jobs)
        self.conn.commit()
        return True

    def _target(self, target: Target, job: staged_keys.Job, sample: int) -> TargetReport:
        report = TargetReport(target.table, target.key.index(target.parent))
        parent = parent_target(self.source, target)
        name = self.source.name
        bigquery_rows, report.postgres_rows = staged_keys.counts(self.conn, name, target)
        report.bigquery_rows = bigquery_rows + job.unstorable
        report.rejected = job.unstorable  # a null, blank or unstorable key: a dead letter
        absent, totals = staged_keys.absent(self.conn, name, target, parent, DRIFT_LISTED)
        report.rejected += sum(n for (rejected, _), n in totals.items() if rejected)
        for key, record, rejected, live in absent:
            if not rejected and live:  # an orphan need not be stored
                report.missing.append(key)
                report.records[key] = record
        surplus, by_live = staged_keys.surplus(self.conn, name, target, parent, DRIFT_LISTED)
        for key, live in surplus:
            (report.extra if live else report.orphans).append(key)
        found = {"missing": totals.get((False, True), 0), "extra": by_live.get(True, 0),
                 "orphans": by_live.get(False, 0)}  # fmt: skip
        report.unlisted = {k: n - len(getattr(report, k)) for k, n in found.items()
                           if n > len(getattr(report, k))}  # fmt: skip
        self.conn.rollback()
        report.changed, report.values_checked = self._values(target, sample, parent)
        return report

    def _values(self, target: Target, sample: int, parent: Target | None) -> tuple[list[Key], int]:
        """Derive a sample of parents from BigQuery and diff their rows in Postgres.

        Drawn from the window's rows where the target has one (see `_window`). Orphans are
        left out: they are reported as such, and a fix deletes them.
        """
        if sample <= 0:
            return [], 0
        window = self._window(target)
        if window:
            since = sql.scalar("since", "TIMESTAMP", window.since)
            text = sql.recent_parents_query(target, self.tables, window.stream)
            found = self._bq(
                text, f"{target.table} (draw)", [since, sql.scalar("n", "INT64", sample)]
            )
            parents = [str(r["k"]) for r in found]
        else:
            column = ident(target.parent)
            drawn = f"SELECT DISTINCT {column} FROM {ident(target.table)}"
            query = f"SELECT {column} FROM ({drawn}) p ORDER BY random() LIMIT %s"
            parents = [str(r[0]) for r in self._pg(query, sample)]
        if parent is not None:
            live = staged_keys.live_parents(self.conn, self.source.name, parent, parents)
            parents = [p for p in parents if p in live]
        # Noted and not derived yet (a user change waits for the day's end): not drift.
        waiting = pending.waiting(self.conn, self.source.name, target.table, parents)
        return self.values_of(target, [p for p in parents if p not in waiting])

    def values_of(self, target: Target, parents: list[str]) -> tuple[list[Key], int]:
        """Keys whose stored row differs from these parents' rows derived from BigQuery."""
        if not parents:
            return [], 0
        params: list[Any] = [bigquery.ArrayQueryParameter("keys", "STRING", parents)]
        window = self._window(target)
        if window:  # only the rows drawn from: compared by key, so a partial set is fine
            params.append(sql.scalar("since", "TIMESTAMP", window.since))
        mapper = RowMapper(target)
        lines: dict[Key, str] = {}
        cursor = sql.stream_cursor(window.stream) if window else None
        text = sql.derive_query(target, self.tables, cursor=cursor)
        for row in self._bq(text, f"{target.table} (sample)", params):
            try:
                key, line = mapper.map(row)
            except RowError:
                continue  # a dead letter: reported as rejected, not as drift
            lines[key] = line
        writer = TargetWriter(self.conn, target, [])
        changed = writer.changed(list(lines.values()))
        self.conn.rollback()
        return sorted(changed), len(lines)

    def _window(self, target: Target) -> Window | None:
        """Where a value sample of target is drawn from: its driving stream's last days.

        Drawn in BigQuery, so a row whose change a sync missed (recent there, old here) is
        drawn too. None when values are sampled from all time, the target is derived in sets
        (call_speakers: a speaker's share needs the whole call), or the stream has no
        watermark yet: then from every parent stored.
        """
        days, stream = self.settings.verify_sample_days, driving_stream(self.source, target)
        if not days or stream is None:
            return None
        mark = self._watermarks.get(stream.table)
        if not isinstance(mark, datetime):
            return None
        return Window(stream, mark - timedelta(days=days))

    @cached_property
    def _watermarks(self) -> dict[str, Any]:
        """The source's watermarks, read once: every target's sample and its recheck use them."""
        return state.watermarks(self.conn, self.source.name)


def driving_stream(source: Source, target: Target) -> Stream | None:
    """The stream whose rows are target's rows, one for one, keyed by its own alias.

    Each of its rows derives alone, so the rows of a window compare exactly without their
    parent's others; a target derived in sets (a share of the call's talk time) would not.
    """
    parent = target.column(target.parent).sql or ""
    for stream in source.streams:
        if stream.drives == target.table and parent.startswith(f"{stream.alias}."):
            return stream
    return None


@dataclass(frozen=True)
class Window:
    """A value sample's rows: those whose cursor is at or after `since`."""

    stream: Stream  # the stream driving the target, whose cursor bounds the rows
    since: datetime


def _finished(job: staged_keys.Job, page_rows: int) -> bool:
    """Whether every row of the result is staged: by its total where BigQuery says it.

    A page's size is a maximum ("maxResults: maximum number of results to return",
    jobs.getQueryResults), so only without a total does a short page mean the last one.
    """
    if job.total is not None:
        return job.offset >= job.total
    return page_rows < KEY_PAGE


def verify_source(
    source: Source, settings: Settings, reader: BigQueryReader, conn: Connection, sample: int
) -> SourceReport:
    """Compare one source's targets with BigQuery, however long it takes."""
    report = Verifier(source, settings, reader, conn).run(sample)
    if report is None:  # only a deadline stops a verify early
        raise AssertionError("a verify without a deadline stopped early")
    return report


def verify_within(
    source: Source,
    settings: Settings,
    reader: BigQueryReader,
    conn: Connection,
    sample: int,
    out_of_time: Callable[[], bool],
) -> SourceReport | None:
    """Compare, or stage as much as the time allows; None: call again to go on."""
    return Verifier(source, settings, reader, conn, out_of_time).run(sample)


def _landed_since(conn: Connection, source: Source, report: SourceReport) -> dict[str, set[str]]:
    """Per target, its orphans' parents stored since the keys were snapshot (not extras).

    A child lands before its call (Fivetran loads tables one by one), so the snapshot saw an
    orphan; its call, landed and synced while BigQuery's keys were staged (hours, at scale),
    is stored now. Deleting the children would lose them until the next day's verify.
    """
    extras = {t.target: {str(k[t.parent_at]) for k in t.extra} for t in report.targets}
    landed: dict[str, set[str]] = {}
    for t in report.targets:
        parent = parent_target(source, source.target(t.target))
        orphaned = sorted({str(k[t.parent_at]) for k in t.orphans})
        if parent is None or not orphaned:
            continue
        stored = TargetWriter(conn, parent, []).stored([(p,) for p in orphaned])
        landed[t.target] = {k[0] for k in stored} - extras.get(parent.table, set())
    return landed


def _delete(conn: Connection, source: Source, t: TargetReport, landed: set[str]) -> None:
    """Delete a target's extra rows, and its orphans but those of parents landed since."""
    orphans = [k for k in t.orphans if str(k[t.parent_at]) not in landed]
    if not (t.extra or orphans):
        return
    target = source.target(t.target)
    # No cascade: each child table's own extras and orphans were found, and deleting
    # exactly those keys cannot touch a row that landed since.
    stats = TargetWriter(conn, target, []).replace({}, [*t.extra, *orphans], target.key)
    # A call that lands (again) later brings these children back.
    parent = parent_target(source, target)
    if parent is not None:
        state.bury(conn, source.name, parent.table, {k[t.parent_at] for k in orphans})
    if target.children:
        state.bury(conn, source.name, target.table, {k[0] for k in t.extra})
    log.info("%s: deleted %d extra and orphaned row(s)", t.target, stats.deleted)


class Busy(RuntimeError):
    """Another run holds the source's lock: repair later (a redelivery does)."""


def fix(
    source: Source,
    report: SourceReport,
    settings: Settings,
    reader: BigQueryReader,
    connect: Callable[[], Connection],
    sink_for: Callable[[Connection], DeadLetterSink],
) -> runs.RunStats | None:
    """Delete extra rows and orphans, then sync parents of missing and changed rows by id."""
    conn = connect()
    try:
        # covers=False: deleting extras is not an hourly run's work; a trigger must come back.
        if not state.try_lock(conn, source.name, covers=False):
            raise Busy(f"a sync of {source.name} is running; run verify --fix again later")
        try:
            landed = _landed_since(conn, source, report)
            for t in report.targets:
                _delete(conn, source, t, landed.get(t.target, set()))
            conn.commit()
        finally:
            state.unlock(conn, source.name)
    finally:
        conn.close()
    for t in report.targets:
        if t.unlisted:
            log.warning(
                "%s: more drift than one verify lists (%s beyond %d of a kind): repairing the"
                " listed keys; the next verify lists the rest (or resync --full)",
                t.target, t.unlisted, DRIFT_LISTED,
            )  # fmt: skip
    parents = sorted({k[t.parent_at] for t in report.targets for k in (*t.missing, *t.changed)})
    if not parents:
        return None
    return sync.run_source(
        source, settings, reader, connect, sink_for, runs.RunOptions(ids=tuple(parents))
    )

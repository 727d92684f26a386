"""Reconciliation: compare every target's keys (and a sample of values) with BigQuery.

It catches what the cursor cannot see: rows deleted in BigQuery without `_fivetran_synced`
moving, rows removed or edited by hand in Postgres, and late rows older than the lookback.
It also finds orphans: children (transcripts, speakers, links) of a call that BigQuery does
not have, which a sync keeps because a child may land before its parent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import bigquery

from gong_sync import bigquery_sql as sql
from gong_sync import runs, state, sync
from gong_sync.bigquery_reader import BigQueryReader, Query
from gong_sync.dead_letters import DeadLetterSink
from gong_sync.declarations import RowError, Source, Target
from gong_sync.postgres import Connection
from gong_sync.postgres_writer import TargetWriter, ident
from gong_sync.row_mapping import RowMapper
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, ...]
SAMPLE_SHOWN = 5


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

    @property
    def drift(self) -> bool:
        """Whether any row differs from its source row."""
        return bool(self.missing or self.extra or self.changed)

    @property
    def clean(self) -> bool:
        """Whether Postgres holds exactly what BigQuery does: no drift and no orphans."""
        return not (self.drift or self.orphans)

    def summary(self) -> dict[str, Any]:
        """Counts plus a few sample keys of each kind of drift."""
        return {
            "target": self.target,
            "bigquery_rows": self.bigquery_rows,
            "postgres_rows": self.postgres_rows,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "changed": len(self.changed),
            "orphans": len(self.orphans),
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
        kinds = ("missing", "extra", "changed", "orphans")
        return {
            t.target: {k: len(getattr(t, k)) for k in kinds if getattr(t, k)}
            for t in self.targets
            if not t.clean
        }


def parent_target(source: Source, child: Target) -> Target | None:
    """The target whose deletes the child follows (calls for transcripts), if any."""
    return next((t for t in source.targets if child.table in t.children), None)


def _key(values: Any) -> Key | None:
    """Keys as text tuples; None for a key no sync could store (null or blank)."""
    out = []
    for v in values:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        out.append(str(v))
    return tuple(out)


class Verifier:
    """Compares one source's targets with BigQuery, and repairs the drift it finds."""

    def __init__(
        self, source: Source, settings: Settings, reader: BigQueryReader, conn: Connection
    ) -> None:
        """Bind to a source and its connections."""
        self.source, self.tables = reader.resolve(source)
        self.settings = settings
        self.reader = reader
        self.conn = conn
        self.report = SourceReport(source.name)
        # Live keys in BigQuery per target, kept for the children that look up their parent.
        self.live: dict[str, set[Key]] = {}
        self.stored: dict[str, set[Key]] = {}  # keys in Postgres per target, read first

    def _bq(self, text: str, label: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cap = self.settings.bigquery.max_bytes_billed_for(self.source.name)
        result = self.reader.query(Query(text, params or [], label, cap))
        self.report.bytes_processed += result.bytes_processed
        self.report.bytes_billed += result.bytes_billed
        return result.rows

    def _pg(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(text, args)
        return [tuple(r) for r in cur.fetchall()]

    def run(self, sample: int) -> SourceReport:
        """Compare every target: all keys, and the values of up to `sample` parents each."""
        # Postgres first, for every target: a row synced while BigQuery is read then shows as
        # missing (a fix re-syncs it, harmlessly), never as extra or as an orphan (which a fix
        # would delete), its parent included.
        self.stored = {t.table: self._stored(t) for t in self.source.targets}
        for target in self.source.targets:
            self.report.targets.append(self._target(target, sample))
        self.conn.rollback()
        return self.report

    def _stored(self, target: Target) -> set[Key]:
        """The keys Postgres holds for a target (null or blank ones cannot be stored)."""
        keys = ", ".join(ident(c) for c in target.key)
        rows = self._pg(f"SELECT {keys} FROM {ident(target.table)}")
        self.conn.rollback()
        return {k for k in (_key(r) for r in rows) if k is not None}

    def _live_parents(self, target: Target) -> set[str] | None:
        """Parent ids live in BigQuery for a child target; None for a target with no parent."""
        parent = parent_target(self.source, target)
        if parent is None:
            return None
        if parent.table not in self.live:  # declared after its child: read it now
            self._target(parent, 0)
        return {k[0] for k in self.live[parent.table]}

    def _target(self, target: Target, sample: int) -> TargetReport:
        report = TargetReport(target.table, target.key.index(target.parent))
        stored = self.stored[target.table]
        raw = self._bq(sql.key_query(target, self.tables), f"{target.table} (keys)")
        by_key: dict[Key, list[Any]] = {}
        nulls = 0
        for row in raw:
            values = [row[k] for k in target.key]
            key = _key(values)
            if key is None:
                nulls += 1  # a null or blank key: always a dead letter, never stored
            else:
                by_key[key] = values
        self.live[target.table] = set(by_key)
        report.bigquery_rows = len(by_key) + nulls
        report.rejected = nulls
        report.postgres_rows = len(stored)
        rejected = {
            r[0]
            for r in self._pg(
                "SELECT record_key FROM dead_letters WHERE source = %s AND target = %s",
                self.source.name,
                target.table,
            )
        }
        parents = self._live_parents(target)
        at = report.parent_at
        for key in sorted(set(by_key) - stored):
            if json.dumps(by_key[key], default=str, ensure_ascii=False) in rejected:
                report.rejected += 1
            elif parents is None or key[at] in parents:  # an orphan need not be stored
                report.missing.append(key)
        for key in sorted(stored - set(by_key)):
            if parents is None or key[at] in parents:
                report.extra.append(key)
        if parents is not None:
            report.orphans = sorted(k for k in stored if k[at] not in parents)
        report.changed, report.values_checked = self._values(target, sample, parents)
        return report

    def _values(
        self, target: Target, sample: int, live_parents: set[str] | None
    ) -> tuple[list[Key], int]:
        """Derive a sample of parents from BigQuery and diff their rows in Postgres.

        Orphans are left out: they are reported as such, and a fix deletes them.
        """
        if sample <= 0:
            return [], 0
        parent = ident(target.parent)
        parents = [
            str(r[0])
            for r in self._pg(
                f"SELECT {parent} FROM (SELECT DISTINCT {parent} FROM {ident(target.table)}) p"
                " ORDER BY random() LIMIT %s",
                sample,
            )
        ]
        if live_parents is not None:
            parents = [p for p in parents if p in live_parents]
        if not parents:
            return [], 0
        param = bigquery.ArrayQueryParameter("keys", "STRING", parents)
        mapper = RowMapper(target)
        lines: dict[Key, str] = {}
        text = sql.derive_query(target, self.tables)
        for row in self._bq(text, f"{target.table} (sample)", [param]):
            try:
                key, line = mapper.map(row)
            except RowError:
                continue  # a dead letter: reported as rejected, not as drift
            lines[key] = line
        writer = TargetWriter(self.conn, target, [])
        changed = writer.changed(list(lines.values()))
        self.conn.rollback()
        return sorted(changed), len(lines)


def verify_source(
    source: Source, settings: Settings, reader: BigQueryReader, conn: Connection, sample: int
) -> SourceReport:
    """Compare one source's targets with BigQuery."""
    return Verifier(source, settings, reader, conn).run(sample)


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
            for t in report.targets:
                if t.extra or t.orphans:
                    target = source.target(t.target)
                    # No cascade: each child table's own extras and orphans were found, and
                    # deleting exactly those keys cannot touch a row that landed since.
                    writer = TargetWriter(conn, target, [])
                    stats = writer.replace({}, [*t.extra, *t.orphans], target.key)
                    # A call that lands (again) later brings these children back.
                    parent = parent_target(source, target)
                    if parent is not None:
                        orphaned = {k[t.parent_at] for k in t.orphans}
                        state.bury(conn, source.name, parent.table, orphaned)
                    if target.children:
                        state.bury(conn, source.name, target.table, {k[0] for k in t.extra})
                    log.info("%s: deleted %d extra and orphaned row(s)", t.target, stats.deleted)
            conn.commit()
        finally:
            state.unlock(conn, source.name)
    finally:
        conn.close()
    parents = sorted({k[t.parent_at] for t in report.targets for k in (*t.missing, *t.changed)})
    if not parents:
        return None
    return sync.run_source(
        source, settings, reader, connect, sink_for, runs.RunOptions(ids=tuple(parents))
    )

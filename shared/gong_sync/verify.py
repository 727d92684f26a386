"""Reconciliation: compare every target's keys (and a sample of values) with BigQuery.

It catches what the cursor cannot see: rows deleted in BigQuery without `_fivetran_synced`
moving, rows removed or edited by hand in Postgres, and late rows older than the lookback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import bigquery

from gong_sync import bigquery_sql as sql
from gong_sync import engine, state
from gong_sync.bigquery_reader import BigQueryReader
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
    bigquery_rows: int = 0
    postgres_rows: int = 0
    missing: list[Key] = field(default_factory=list)  # in BigQuery, not in Postgres
    extra: list[Key] = field(default_factory=list)  # in Postgres, not in BigQuery
    changed: list[Key] = field(default_factory=list)  # values differ (sampled parents)
    rejected: int = 0  # in BigQuery, absent here as dead letters (null keys included)
    values_checked: int = 0

    @property
    def drift(self) -> bool:
        """Whether anything differs."""
        return bool(self.missing or self.extra or self.changed)

    def summary(self) -> dict[str, Any]:
        """Counts plus a few sample keys of each kind of drift."""
        return {
            "target": self.target,
            "bigquery_rows": self.bigquery_rows,
            "postgres_rows": self.postgres_rows,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "changed": len(self.changed),
            "rejected": self.rejected,
            "values_checked": self.values_checked,
            "samples": {
                kind: [list(k) for k in sorted(keys)[:SAMPLE_SHOWN]]
                for kind, keys in (
                    ("missing", self.missing),
                    ("extra", self.extra),
                    ("changed", self.changed),
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

    @property
    def drift(self) -> bool:
        """Whether any target drifted."""
        return any(t.drift for t in self.targets)


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
        self.source, self.tables = engine.resolve(source, reader)
        self.settings = settings
        self.reader = reader
        self.conn = conn
        self.report = SourceReport(source.name)

    def _bq(self, text: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        result = self.reader.query(text, params or [])
        self.report.bytes_processed += result.bytes_processed
        return result.rows

    def _pg(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(text, args)
        return [tuple(r) for r in cur.fetchall()]

    def run(self, sample: int) -> SourceReport:
        """Compare every target: all keys, and the values of up to `sample` parents each."""
        for target in self.source.targets:
            self.report.targets.append(self._target(target, sample))
        self.conn.rollback()
        return self.report

    def _target(self, target: Target, sample: int) -> TargetReport:
        report = TargetReport(target.table, target.key.index(target.parent))
        # Postgres first: a row synced while BigQuery is read then shows as missing (and a
        # fix re-syncs it, harmlessly), never as extra (which a fix would delete).
        stored = {
            k
            for k in (
                _key(r)
                for r in self._pg(
                    f"SELECT {', '.join(ident(c) for c in target.key)} FROM {ident(target.table)}"
                )
            )
            if k is not None
        }
        self.conn.rollback()
        raw = self._bq(sql.key_query(target, self.tables))
        report.bigquery_rows = len(raw)
        by_key = {}
        for row in raw:
            values = [row[k] for k in target.key]
            key = _key(values)
            if key is None:
                report.rejected += 1  # a null or blank key: always a dead letter, never stored
            else:
                by_key[key] = values
        report.postgres_rows = len(stored)
        absent = sorted(set(by_key) - stored)
        rejected = {
            r[0]
            for r in self._pg(
                "SELECT record_key FROM dead_letters WHERE source = %s AND target = %s",
                self.source.name,
                target.table,
            )
        }
        for key in absent:
            if json.dumps(by_key[key], default=str, ensure_ascii=False) in rejected:
                report.rejected += 1
            else:
                report.missing.append(key)
        report.extra = sorted(stored - set(by_key))
        report.changed, report.values_checked = self._values(target, sample)
        return report

    def _values(self, target: Target, sample: int) -> tuple[list[Key], int]:
        """Derive a sample of parents from BigQuery and diff their rows in Postgres."""
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
        if not parents:
            return [], 0
        param = bigquery.ArrayQueryParameter("keys", "STRING", parents)
        mapper = RowMapper(target)
        lines: dict[Key, str] = {}
        for row in self._bq(sql.derive_query(target, self.tables), [param]):
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


def fix(
    source: Source,
    report: SourceReport,
    settings: Settings,
    reader: BigQueryReader,
    connect: Callable[[], Connection],
    sink_for: Callable[[Connection], DeadLetterSink],
) -> engine.RunStats | None:
    """Delete the extra rows, then sync the parents of missing and changed rows again by id."""
    conn = connect()
    try:
        # covers=False: deleting extras is not an hourly run's work; a trigger must come back.
        if not state.try_lock(conn, source.name, covers=False):
            raise RuntimeError(f"a sync of {source.name} is running; run verify --fix again later")
        try:
            for t in report.targets:
                if t.extra:
                    target = source.target(t.target)
                    # No cascade: each child table's own extras are found and deleted, and a
                    # child whose parent is gone from BigQuery (not soft-deleted) stays live.
                    writer = TargetWriter(conn, target, [])
                    stats = writer.replace({}, t.extra, target.key)
                    log.info("%s: deleted %d extra row(s)", t.target, stats.deleted)
            conn.commit()
        finally:
            state.unlock(conn, source.name)
    finally:
        conn.close()
    parents = sorted({k[t.parent_at] for t in report.targets for k in (*t.missing, *t.changed)})
    if not parents:
        return None
    return engine.run_source(
        source, settings, reader, connect, sink_for, engine.RunOptions(ids=tuple(parents))
    )

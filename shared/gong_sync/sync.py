"""Sync one source: take its lock, run the engine, record the outcome, log one summary line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime

from gong_sync import log as gs_log
from gong_sync import quality, state
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import DeadLetterSink
from gong_sync.declarations import Source
from gong_sync.engine import SourceRun
from gong_sync.postgres import Connection
from gong_sync.runs import RunHooks, RunOptions, RunStats
from gong_sync.settings import QualitySettings, Settings

log = logging.getLogger(__name__)


def run_source(
    source: Source,
    settings: Settings,
    reader: BigQueryReader,
    connect: Callable[[], Connection],
    sink_for: Callable[[Connection], DeadLetterSink],
    options: RunOptions | None = None,
    hooks: RunHooks | None = None,
) -> RunStats:
    """Sync one source under its lock, record the outcome, and log one summary line."""
    options = options or RunOptions()
    hooks = hooks or RunHooks()
    conn = connect()
    run = SourceRun(source, settings, reader, conn, sink_for(conn), options, hooks)
    stats = run.stats
    with gs_log.labels(source=source.name, run_id=stats.run_id):
        try:
            # An ids or window run says it covers no hourly trigger that finds it holding the lock.
            if not state.try_lock(conn, source.name, covers=options.reads_to_now):
                stats.status = "skipped"
                log.warning("another run of %s holds its lock; not running", source.name)
                return stats
            stats.started_at = datetime.now(UTC).isoformat()
            try:
                with hooks.running(source.name, options):
                    run.execute()
                _judge(stats, settings.quality)
            except Exception as exc:
                stats.status = "failed"
                stats.error = {"type": type(exc).__name__, "message": str(exc)[:2000]}
                raise
            finally:
                _finish(run, conn, connect)
        finally:
            try:
                conn.close()
            except Exception:  # closing a dead connection must not mask the real error
                log.debug("close failed", exc_info=True)
    return stats


def _finish(run: SourceRun, conn: Connection, connect: Callable[[], Connection]) -> None:
    """Round the run's timings, record its outcome and log its summary line."""
    stats = run.stats
    stats.duration_seconds = round(time.monotonic() - run.started, 3)
    for phase in ("read_seconds", "transform_seconds", "load_seconds", "load_phase_seconds"):
        setattr(stats, phase, round(getattr(stats, phase), 3))
    _record(stats.source, stats, conn, connect)
    bad = stats.status in ("failed", "degraded")
    # A degraded run says why on its one summary line: the errors metric alerts on it once.
    why = f"; {stats.error['message']}" if stats.status == "degraded" and stats.error else ""
    log.log(
        logging.ERROR if bad else logging.INFO,
        "sync %s %s: %d read, %d upserted, %d unchanged, %d deleted, %d failed%s",
        stats.source,
        stats.status,
        stats.rows_read,
        stats.rows_upserted,
        stats.rows_unchanged,
        stats.rows_deleted,
        stats.rows_failed,
        why,
        extra={"fields": {"run": asdict(stats)}},
    )


def _judge(stats: RunStats, rule: QualitySettings) -> None:
    """Mark a successful run degraded when too many of its rows were dead-lettered."""
    if stats.status != "success":
        return
    why = quality.verdict(stats, rule)
    if why is not None:
        stats.status = "degraded"
        stats.error = {"type": "DataQualityDegraded", "message": why}


def _record(
    source: str, stats: RunStats, conn: Connection, connect: Callable[[], Connection]
) -> None:
    """Record the run; on a fresh connection if the run's own one is broken.

    Never raises: failing to record must not hide why the run itself failed.
    """
    outcome = asdict(stats)
    try:
        conn.rollback()
        state.record_run(conn, source, outcome)
        return
    except Exception:
        log.debug("recording on the run's connection failed; retrying on a fresh one")
    try:
        fresh = connect()
        try:
            state.record_run(fresh, source, outcome)
        finally:
            fresh.close()
    except Exception:
        log.exception("could not record the outcome of %s in sync_status", source)

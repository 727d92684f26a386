"""Reconciliation as a run: verify a source, repair what drifted, verify again, record it.

The daily scheduled trigger (`{"mode": "verify", "fix": true, "sample": 0}`) runs this in each
source's function: it repairs what an hourly run cannot see (a delete that never moved the
cursor, a row stamped earlier than the lookback). Keys are staged in Postgres and compared
there, across as many invocations as reading them takes. Drift left after the repair is
logged at ERROR, which the unrepaired-drift metric alerts on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gong_sync import state, verify
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import DeadLetterSink
from gong_sync.declarations import Source
from gong_sync.postgres import Connection, text_array
from gong_sync.postgres_writer import TargetWriter
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

SAMPLE = 500  # parents whose values are compared, per table (as `gong-sync verify`)


def _verify(
    source: Source,
    settings: Settings,
    reader: BigQueryReader,
    connect: Callable[[], Connection],
    sample: int,
    out_of_time: Callable[[], bool],
) -> verify.SourceReport | None:
    conn = connect()
    try:
        return verify.verify_within(source, settings, reader, conn, sample, out_of_time)
    finally:
        conn.close()


def reconcile(
    source: Source,
    settings: Settings,
    reader: BigQueryReader,
    connect: Callable[[], Connection],
    sink_for: Callable[[Connection], DeadLetterSink],
    fix: bool,
    sample: int = SAMPLE,
    out_of_time: Callable[[], bool] = lambda: False,
) -> dict[str, Any] | None:
    """Verify (and with fix, repair and check again); record and log the outcome.

    None when the time ran out while keys were being compared: call again to go on.
    """
    found = _verify(source, settings, reader, connect, sample, out_of_time)
    if found is None:
        log.info("verify %s: keys staged so far are kept; continuing", source.name)
        return None
    left = found
    if fix and not found.clean:
        verify.fix(source, found, settings, reader, connect, sink_for)  # verify.Busy if locked
        conn = connect()
        try:
            left = recheck(source, found, settings, reader, conn)
        finally:
            conn.close()
    outcome = {"found": found.drift_counts(), "fixed": fix and not found.clean,
               "remaining": left.drift_counts()}  # fmt: skip
    _record(source.name, outcome, connect)
    return outcome


def _record(name: str, outcome: dict[str, Any], connect: Callable[[], Connection]) -> None:
    """Keep the outcome in sync_status and log its one line."""
    conn = connect()
    try:
        state.record_verify(conn, name, outcome)
    finally:
        conn.close()
    fields = {"fields": {"verify": outcome}}
    if outcome["remaining"]:
        log.error("verify %s: drift remains: %s", name, outcome["remaining"], extra=fields)
    elif not outcome["found"]:
        log.info("verify %s: clean", name, extra=fields)
    else:
        log.info("verify %s: repaired %s", name, outcome["found"], extra=fields)


def recheck(
    source: Source,
    found: verify.SourceReport,
    settings: Settings,
    reader: BigQueryReader,
    conn: Connection,
) -> verify.SourceReport:
    """After a fix, what it was asked to repair, checked again (not every key again).

    A missing key still absent, unless the re-sync dead-lettered it; an extra or orphaned
    row still stored; a changed parent whose rows still differ.
    """
    verifier = verify.Verifier(source, settings, reader, conn)
    out = verify.SourceReport(source.name)
    for t in found.targets:
        target = verifier.source.target(t.target)
        again = verify.TargetReport(t.target, t.parent_at, t.bigquery_rows, t.postgres_rows)
        stored = TargetWriter(conn, target, []).stored([*t.missing, *t.extra, *t.orphans])
        letters = _dead_letters(conn, source.name, target.table, list(t.records.values()))
        gone = [k for k in t.missing if k not in stored]
        again.missing = [k for k in gone if t.records.get(k) not in letters]
        again.rejected = t.rejected + len(gone) - len(again.missing)
        again.extra = [k for k in t.extra if k in stored]
        again.orphans = [k for k in t.orphans if k in stored]
        again.unlisted = dict(t.unlisted)  # not repaired: the next verify lists them
        parents = sorted({k[t.parent_at] for k in t.changed})
        again.changed, again.values_checked = verifier.values_of(target, parents)
        out.targets.append(again)
    conn.rollback()
    return out


def _dead_letters(conn: Connection, source: str, target: str, records: list[str]) -> set[str]:
    """Those of these record keys that are dead letters of the target."""
    if not records:
        return set()
    cur = conn.cursor()
    cur.execute(
        "SELECT record_key FROM dead_letters WHERE source = %s AND target = %s"
        " AND record_key = ANY(CAST(%s AS text[]))",
        (source, target, text_array(records)),
    )
    return {r[0] for r in cur.fetchall()}

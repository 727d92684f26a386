"""Reconciliation as a run: verify a source, repair what drifted, verify again, record it.

The daily scheduled trigger (`{"mode": "verify", "fix": true}`) runs this in each source's
function: it repairs what an hourly run cannot see (a delete that never moved the cursor, a
row stamped earlier than the lookback). Drift left after the repair is logged at ERROR, which
the errors metric alerts on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gong_sync import state, verify
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import DeadLetterSink
from gong_sync.declarations import Source
from gong_sync.postgres import Connection
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

SAMPLE = 500  # parents whose values are compared, per table (as `gong-sync verify`)


def _verify(
    source: Source,
    settings: Settings,
    reader: BigQueryReader,
    connect: Callable[[], Connection],
    sample: int,
) -> verify.SourceReport:
    conn = connect()
    try:
        return verify.verify_source(source, settings, reader, conn, sample)
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
) -> dict[str, Any]:
    """Verify (and with fix, repair and verify again); record and log the outcome."""
    found = _verify(source, settings, reader, connect, sample)
    left = found
    if fix and not found.clean:
        verify.fix(source, found, settings, reader, connect, sink_for)  # verify.Busy if locked
        left = _verify(source, settings, reader, connect, sample)
    outcome = {"found": found.drift_counts(), "fixed": fix and not found.clean,
               "remaining": left.drift_counts()}  # fmt: skip
    conn = connect()
    try:
        state.record_verify(conn, source.name, outcome)
    finally:
        conn.close()
    fields = {"fields": {"verify": outcome}}
    if not left.clean:
        log.error("verify %s: drift remains: %s", source.name, outcome["remaining"], extra=fields)
    elif found.clean:
        log.info("verify %s: clean", source.name, extra=fields)
    else:
        log.info("verify %s: repaired %s", source.name, outcome["found"], extra=fields)
    return outcome

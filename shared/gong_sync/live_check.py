"""`gong-sync check --live`: after a deploy, every source runs and agrees with BigQuery.

It publishes a trigger for each source to the deployed trigger topic, waits for a run of
each to end after that moment (in `sync_runs`, so a continuation chain counts once it ends),
then verifies a sample of each source against BigQuery. The exit status is the verdict on
the deploy: a run that failed or never ended is an error; drift is a warning, since the
hourly sync leaves deletes its cursor cannot see to reconciliation (`verify --fix`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from gong_sync import sources, trigger, verify
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.check import Finding
from gong_sync.errors import sqlstate
from gong_sync.postgres import Connection, connect
from gong_sync.settings import Settings

POLL_SECONDS = 5.0
ENDED = ("success", "degraded", "failed")  # "partial" and "skipped" are still on the way


def run(
    settings: Settings,
    reader: BigQueryReader,
    timeout: float,
    sample: int,
    publish: Callable[[str, bytes, dict[str, str]], Any] | None = None,
) -> list[Finding]:
    """Trigger every source, wait for each run to end, verify each; one finding per step."""
    publish = publish or _publisher()
    topic = settings.cloud.topic_path(settings.cloud.trigger_topic)
    conn = connect(settings.postgres)
    try:
        since = _now(conn)
        for name in sources.SOURCES:
            body = trigger.Trigger(sources=(name,)).to_json()
            publish(topic, json.dumps(body).encode(), trigger.attributes_for((name,)))
        ended = _wait(conn, since, time.monotonic() + timeout)
        findings = [_ran(name, ended.get(name), timeout) for name in sources.SOURCES]
        for name in sources.SOURCES:
            if ended.get(name, {}).get("status") in ("success", "degraded"):
                findings.append(_verified(name, settings, reader, conn, sample))
        return findings
    finally:
        conn.close()


def _publisher() -> Callable[[str, bytes, dict[str, str]], Any]:
    from google.cloud.pubsub_v1 import PublisherClient

    client = PublisherClient()

    def publish(topic: str, data: bytes, attributes: dict[str, str]) -> Any:
        return client.publish(topic, data, **attributes).result(timeout=60)

    return publish


def _now(conn: Connection) -> Any:
    """The database's clock: runs are stamped by it, not by this machine's."""
    cur = conn.cursor()
    cur.execute("SELECT now()")
    (now,) = cur.fetchone() or (None,)
    return now


def _wait(conn: Connection, since: Any, deadline: float) -> dict[str, dict[str, Any]]:
    """Each source's first run that ended after `since`, as far as one did by the deadline."""
    ended: dict[str, dict[str, Any]] = {}
    while True:
        for source, status, rows_read, finished_at in _ended_since(conn, since):
            ended[source] = {"status": status, "rows_read": rows_read, "at": finished_at}
        if set(sources.SOURCES) <= ended.keys() or time.monotonic() > deadline:
            return ended
        time.sleep(POLL_SECONDS)


def _ended_since(conn: Connection, since: Any) -> list[tuple[Any, ...]]:
    """Each source's first run that ended after `since`; none before the first migration.

    A fresh deploy's database has no tables until the first function cold-starts and
    migrates it: the triggers published above are what starts them.
    """
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT DISTINCT ON (source) source, status, rows_read, finished_at FROM sync_runs"
            " WHERE finished_at > %s AND status IN ('success', 'degraded', 'failed')"
            " ORDER BY source, finished_at",
            (since,),
        )
        return [tuple(row) for row in cur.fetchall()]
    except Exception as exc:
        if sqlstate(exc) != "42P01":  # undefined_table: not migrated yet
            raise
        return []
    finally:
        conn.rollback()  # a fresh snapshot on the next look


def _ran(name: str, run: dict[str, Any] | None, timeout: float) -> Finding:
    check = f"live {name}: run"
    if run is None:
        return Finding(check, "error", f"no run ended within {timeout:.0f} s of its trigger")
    if run["status"] == "failed":
        return Finding(check, "error", "the run failed: see `gong-sync status` and its logs")
    level = "warning" if run["status"] == "degraded" else "ok"
    return Finding(check, level, f"{run['status']}, {run['rows_read']:,} rows read", run)


def _verified(
    name: str, settings: Settings, reader: BigQueryReader, conn: Connection, sample: int
) -> Finding:
    check = f"live {name}: verify"
    report = verify.verify_source(sources.get(name), settings, reader, conn, sample)
    if report.clean:
        return Finding(check, "ok", f"agrees with BigQuery (a sample of {sample} parents)")
    drifted = [t.summary() for t in report.targets if not t.clean]
    counts = report.drift_counts()
    # A warning, not a failed deploy: the hourly sync leaves deletes its cursor cannot see
    # (and rows landing while this runs) to reconciliation, which repairs them.
    return Finding(
        check, "warning",
        f"differs from BigQuery: {counts}; `gong-sync verify --fix` repairs it",
        {"targets": drifted},
    )  # fmt: skip

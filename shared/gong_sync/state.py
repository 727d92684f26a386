"""Run state in Postgres: the per-source lock, watermarks, and sync_status."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gong_sync import cost
from gong_sync.postgres import Connection, text_array

log = logging.getLogger(__name__)

_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('gong-sync:' || %s))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('gong-sync:' || %s))"
# Held, besides the lock, by a run that reads no stream up to now (ids, a window).
_PARTIAL_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('gong-sync-partial:' || %s))"
_PARTIAL_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('gong-sync-partial:' || %s))"
_PARTIAL_PROBE_SQL = "SELECT pg_try_advisory_lock_shared(hashtext('gong-sync-partial:' || %s))"
_PARTIAL_UNPROBE_SQL = "SELECT pg_advisory_unlock_shared(hashtext('gong-sync-partial:' || %s))"


def _ask(cur: Any, sql: str, source: str) -> bool:
    """The boolean one lock function answers for a source."""
    cur.execute(sql, (source,))
    row = cur.fetchone()
    return bool(row and row[0])


def try_lock(conn: Connection, source: str, *, covers: bool = True) -> bool:
    """Take the session-level lock of a source; False if another run holds it.

    A run that does not cover an hourly trigger (covers=False) first takes a second lock, so
    a trigger that finds the source busy can tell (see `covered`).
    """
    cur = conn.cursor()
    if not covers and not _ask(cur, _PARTIAL_LOCK_SQL, source):
        conn.commit()
        return False
    taken = _ask(cur, _LOCK_SQL, source)
    if not taken and not covers:
        cur.execute(_PARTIAL_UNLOCK_SQL, (source,))
    conn.commit()
    return taken


def covered(conn: Connection, source: str) -> bool:
    """Whether the run holding a source's lock reads every stream up to now.

    Such a run (or its continuation) does the work of an hourly trigger that finds the source
    busy; an ids or window run does not, so that trigger must come back later.
    """
    cur = conn.cursor()
    free = _ask(cur, _PARTIAL_PROBE_SQL, source)
    if free:
        cur.execute(_PARTIAL_UNPROBE_SQL, (source,))
    conn.commit()
    return free


# A verify's own lock: two verifies of a source would share (and clear) its staged keys.
_VERIFY_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('gong-sync-verify:' || %s))"
_VERIFY_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('gong-sync-verify:' || %s))"


def try_lock_verify(conn: Connection, source: str) -> bool:
    """Take a source's verify lock for this session; False if another verify holds it."""
    taken = _ask(conn.cursor(), _VERIFY_LOCK_SQL, source)
    conn.commit()
    return taken


def unlock_verify(conn: Connection, source: str) -> None:
    """Release the verify lock (it also goes away with the connection)."""
    conn.rollback()  # a failed statement would refuse the unlock too
    conn.cursor().execute(_VERIFY_UNLOCK_SQL, (source,))
    conn.commit()


def unlock(conn: Connection, source: str) -> None:
    """Release the lock (it also goes away with the connection)."""
    cur = conn.cursor()
    cur.execute(_UNLOCK_SQL, (source,))
    conn.commit()


def bury(conn: Connection, source: str, target: str, parents: Iterable[str]) -> None:
    """Remember parents deleted with their children, so that their return restores those."""
    keys = sorted(set(parents))
    if keys:
        conn.cursor().execute(
            "INSERT INTO deleted_parents (source, target, parent)"
            " SELECT %s, %s, unnest(CAST(%s AS text[])) ON CONFLICT DO NOTHING",
            (source, target, text_array(keys)),
        )


def exhume(conn: Connection, source: str, target: str, parents: Iterable[str]) -> set[str]:
    """Those of these live parents that were deleted with their children; forgets them."""
    keys = sorted(set(parents))
    if not keys:
        return set()
    cur = conn.cursor()
    cur.execute(
        "DELETE FROM deleted_parents WHERE source = %s AND target = %s"
        " AND parent = ANY(CAST(%s AS text[])) RETURNING parent",
        (source, target, text_array(keys)),
    )
    return {row[0] for row in cur.fetchall()}


def watermarks(conn: Connection, source: str) -> dict[str, Any]:
    """Stream -> watermark for a source (as stored: 'infinity' comes back as text)."""
    cur = conn.cursor()
    cur.execute(
        "SELECT stream, watermark FROM sync_watermarks WHERE source = %s AND watermark IS NOT NULL",
        (source,),
    )
    return {stream: mark for stream, mark in cur.fetchall()}


_FORGET_STREAM = "DELETE FROM sync_watermarks WHERE source = %s AND stream = %s"


def reset_watermarks(conn: Connection, source: str) -> None:
    """Forget a source's watermarks (a full refresh), and commit."""
    conn.cursor().execute("DELETE FROM sync_watermarks WHERE source = %s", (source,))
    conn.commit()


def streams_read(conn: Connection, source: str) -> set[str]:
    """The streams a source has read: by a watermark, or noted by a run (a full refresh
    forgets the watermarks, not these)."""
    cur = conn.cursor()
    cur.execute(
        "SELECT stream FROM sync_streams_read WHERE source = %s UNION"
        " SELECT stream FROM sync_watermarks WHERE source = %s AND watermark IS NOT NULL",
        (source, source),
    )
    return {row[0] for row in cur.fetchall()}


def note_streams_read(conn: Connection, source: str, streams: Iterable[str]) -> None:
    """Note the streams of the declaration a run resolved, and commit."""
    conn.cursor().execute(
        "INSERT INTO sync_streams_read (source, stream)"
        " SELECT %s, unnest(CAST(%s AS text[])) ON CONFLICT DO NOTHING",
        (source, text_array(streams)),
    )
    conn.commit()


def take_rereads(conn: Connection, source: str) -> list[str]:
    """Forget the watermark and position of each stream asked to be read again; commit."""
    cur = conn.cursor()
    cur.execute(
        "DELETE FROM sync_reread_requests WHERE source = %s RETURNING stream, reason", (source,)
    )
    asked: list[tuple[str, str]] = sorted((row[0], row[1]) for row in cur.fetchall())
    for stream, reason in asked:
        cur.execute(_FORGET_STREAM, (source, stream))
        log.info("reading %s of %s again from its start: %s", stream, source, reason)
    conn.commit()
    return [stream for stream, _ in asked]


def resume_positions(conn: Connection, source: str) -> dict[str, dict[str, Any]]:
    """Stream -> {"cursor": ISO time, "key": [...]} where an unfinished run stopped."""
    cur = conn.cursor()
    cur.execute(
        "SELECT stream, resume_after FROM sync_watermarks"
        " WHERE source = %s AND resume_after IS NOT NULL",
        (source,),
    )
    # pg8000 parses jsonb itself: parsing again broke on a stored JSON string.
    return {stream: pos for stream, pos in cur.fetchall()}


def reset_watermark(conn: Connection, source: str, stream: str) -> None:
    """Forget one stream's watermark and position, and commit."""
    conn.cursor().execute(_FORGET_STREAM, (source, stream))
    conn.commit()


def advance_watermark(
    conn: Connection,
    source: str,
    stream: str,
    mark: datetime,
    resume_after: Mapping[str, Any] | None = None,
    *,
    advance: bool = True,
) -> None:
    """Note the keyset position reached and, unless told not to, move the watermark forward."""
    conn.cursor().execute(
        "INSERT INTO sync_watermarks (source, stream, watermark, resume_after)"
        " VALUES (%s, %s, CASE WHEN %s THEN CAST(%s AS timestamptz) END, CAST(%s AS jsonb))"
        " ON CONFLICT (source, stream) DO UPDATE"
        " SET watermark = CASE WHEN %s"
        "   THEN GREATEST(sync_watermarks.watermark, EXCLUDED.watermark)"
        "   ELSE sync_watermarks.watermark END,"
        " resume_after = EXCLUDED.resume_after, updated_at = now()",
        (
            source, stream, advance, mark,
            json.dumps(resume_after) if resume_after else None, advance,
        ),
    )  # fmt: skip


def finish_stream(conn: Connection, source: str, stream: str, done: Mapping[str, Any]) -> None:
    """A stream was read to its end: a continuation of this run skips it (positions.py)."""
    conn.cursor().execute(
        "UPDATE sync_watermarks SET resume_after = CAST(%s AS jsonb)"
        " WHERE source = %s AND stream = %s",
        (json.dumps(dict(done)), source, stream),
    )
    conn.commit()


def clear_done(conn: Connection, source: str) -> None:
    """A new run (not a continuation) reads every stream again; keep real positions."""
    conn.cursor().execute(
        "UPDATE sync_watermarks SET resume_after = NULL"
        " WHERE source = %s AND resume_after ? 'done'",
        (source,),
    )
    conn.commit()


def finish_run(conn: Connection, source: str) -> None:
    """Every stream was read to its end: the next run starts from the watermarks again."""
    conn.cursor().execute(
        "UPDATE sync_watermarks SET resume_after = NULL"
        " WHERE source = %s AND resume_after IS NOT NULL",
        (source,),
    )
    conn.commit()


def _details(outcome: Mapping[str, Any]) -> str | None:
    """error_details: why a run failed, or what a successful one could not do."""
    details = {**(outcome.get("error") or {})}
    if outcome.get("ids_not_found"):
        details["ids_not_found"] = outcome["ids_not_found"]
    return json.dumps(details) if details else None


# Run history kept for the cost figures of `gong-sync status` (a month and some).
KEEP_RUNS_DAYS = 35


def record_run(conn: Connection, source: str, outcome: Mapping[str, Any]) -> None:
    """Write the outcome of a run into sync_status and its run history, and commit."""
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO sync_status (source, watermark, last_run_at, last_status, rows_read,"
        " rows_upserted, rows_unchanged, rows_deleted, rows_failed, bytes_processed,"
        " bytes_billed, duration_seconds, error_details)"
        " VALUES (%s, (SELECT min(watermark) FROM sync_watermarks WHERE source = %s), now(),"
        " %s, %s, %s, %s, %s, %s, %s, %s, %s, CAST(%s AS jsonb))"
        " ON CONFLICT (source) DO UPDATE SET watermark = EXCLUDED.watermark,"
        " last_run_at = EXCLUDED.last_run_at, last_status = EXCLUDED.last_status,"
        " rows_read = EXCLUDED.rows_read, rows_upserted = EXCLUDED.rows_upserted,"
        " rows_unchanged = EXCLUDED.rows_unchanged, rows_deleted = EXCLUDED.rows_deleted,"
        " rows_failed = EXCLUDED.rows_failed, bytes_processed = EXCLUDED.bytes_processed,"
        " bytes_billed = EXCLUDED.bytes_billed,"
        " duration_seconds = EXCLUDED.duration_seconds, error_details = EXCLUDED.error_details",
        (
            source,
            source,
            outcome["status"],
            outcome["rows_read"],
            outcome["rows_upserted"],
            outcome["rows_unchanged"],
            outcome["rows_deleted"],
            outcome["rows_failed"],
            outcome["bytes_processed"],
            outcome["bytes_billed"],
            outcome["duration_seconds"],
            _details(outcome),
        ),
    )
    _append_run(cur, source, outcome)
    conn.commit()


def _append_run(cur: Any, source: str, outcome: Mapping[str, Any]) -> None:
    """Add the run to the history, and drop what is older than the history keeps."""
    cur.execute(
        "INSERT INTO sync_runs (run_id, source, status, rows_read, bytes_processed,"
        " bytes_billed, bytes_billed_by_stream) VALUES (%s, %s, %s, %s, %s, %s,"
        " CAST(%s AS jsonb)) ON CONFLICT (run_id) DO NOTHING",
        (
            outcome["run_id"],
            source,
            outcome["status"],
            outcome["rows_read"],
            outcome["bytes_processed"],
            outcome["bytes_billed"],
            json.dumps(outcome.get("bytes_billed_by_stream") or {}),
        ),
    )
    cur.execute(
        "DELETE FROM sync_runs"
        " WHERE source = %s AND finished_at < now() - make_interval(days => %s)",
        (source, KEEP_RUNS_DAYS),
    )


def record_verify(conn: Connection, source: str, outcome: Mapping[str, Any]) -> None:
    """Record a reconciliation of a source: when, and the drift found, fixed and left."""
    conn.cursor().execute(
        "INSERT INTO sync_status (source, last_verified_at, last_verify)"
        " VALUES (%s, now(), CAST(%s AS jsonb)) ON CONFLICT (source) DO UPDATE SET"
        " last_verified_at = EXCLUDED.last_verified_at, last_verify = EXCLUDED.last_verify",
        (source, json.dumps(outcome)),
    )
    conn.commit()


def status(conn: Connection) -> list[dict[str, Any]]:
    """Every source's last run, with its per-stream watermarks."""
    cur = conn.cursor()
    cur.execute(
        "SELECT s.source, s.watermark, s.last_run_at, s.last_status, s.rows_read,"
        " s.rows_upserted, s.rows_unchanged, s.rows_deleted, s.rows_failed, s.bytes_processed,"
        " s.bytes_billed, s.duration_seconds, s.error_details, s.last_verified_at,"
        " s.last_verify,"
        " (SELECT CAST(coalesce(sum(r.bytes_billed), 0) AS bigint) FROM sync_runs r"
        "  WHERE r.source = s.source AND r.finished_at > now() - interval '24 hours')"
        "  AS bytes_billed_24h,"
        # Parents a stopped run noted and its continuation (or the next run) will derive, and
        # of them those a touch derives once a day (a user's calls) not due yet.
        " (SELECT count(*) FROM pending_derivations p WHERE p.source = s.source)"
        "  AS waiting_derivations,"
        " (SELECT count(*) FROM pending_derivations p WHERE p.source = s.source"
        "  AND p.due > now()) AS deferred_derivations,"
        # Streams a migration (or an operator) asked to be read again by the next run.
        " ARRAY(SELECT q.stream FROM sync_reread_requests q WHERE q.source = s.source"
        "  ORDER BY q.stream) AS rereads_requested,"
        " (SELECT json_object_agg(w.stream, w.watermark ORDER BY w.stream)"
        "  FROM sync_watermarks w WHERE w.source = s.source)"
        " FROM sync_status s ORDER BY s.source"
    )
    names = [d[0] for d in cur.description]
    names[-1] = "watermarks"
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        if isinstance(item["watermarks"], str):
            item["watermarks"] = json.loads(item["watermarks"])
        item["projected_month_usd"] = round(cost.monthly_usd(item["bytes_billed_24h"]), 2)
        out.append(item)
    return out

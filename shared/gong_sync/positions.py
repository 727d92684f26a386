"""Where a run starts reading each stream: the watermarks and the typed resume positions.

A position is where an unfinished run stopped in one stream, stored as JSON in
`sync_watermarks.resume_after` after every committed page; a continuation resumes right
after it. A stream read to its end inside a continued run is stored as `done`, so the chain
does not read it a second time. This module is the only reader and writer of that JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gong_sync import state
from gong_sync.postgres import Connection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """A query job's result read up to `offset` rows: a continuation pages on from there.

    BigQuery keeps a query's result for about 24 hours and reading it is not billed again,
    so a continuation that finds it does not query (and pay for) the stream a second time.
    """

    job_id: str
    location: str | None
    offset: int  # rows of the result committed, the position's row the last of them
    limit: int  # the query's LIMIT: a result shorter than it was the stream's end


@dataclass(frozen=True)
class Position:
    """After which (cursor, key) a stream resumes, or that it is done for this chain."""

    cursor: datetime | None = None
    key: tuple[Any, ...] = ()
    # Set by a window run that must not move the watermark: only a continuation of the
    # same window may resume here, since any other run would skip the rows before it.
    window: datetime | None = None
    done: bool = False
    result: Result | None = None  # the query this position was read from, when known

    def to_json(self) -> dict[str, Any]:
        """The stored form; the key as JSON text, since jsonb cannot hold a NUL or a lone
        surrogate and a JSON string escaping them can."""
        out: dict[str, Any] = {"done": True} if self.done else {
            "cursor": self.cursor.isoformat() if self.cursor else None,
            "key_json": json.dumps(list(self.key)),
        }  # fmt: skip
        if self.window is not None:
            out["window"] = self.window.isoformat()
        if self.result is not None and not self.done:
            out["result"] = dataclasses.asdict(self.result)
        return out

    def belongs_to(self, since: datetime | None) -> bool:
        """Whether a run reading from `since` (None: its watermark) may resume here."""
        return self.window is None or self.window == since


def lookback_from(mark: datetime, lookback: timedelta) -> datetime:
    """The watermark less the lookback; a year-1 watermark cannot go lower than datetime does."""
    try:
        return mark - lookback
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def after(
    cursor: datetime, key: tuple[Any, ...], window: datetime | None, result: Result | None = None
) -> Position:
    """The position after a committed page's last row (read from `result`, if given)."""
    return Position(cursor=cursor, key=key, window=window, result=result)


def finished(window: datetime | None = None) -> Position:
    """A stream read to its end within this chain."""
    return Position(window=window, done=True)


def parse(stored: Any) -> Position:
    """A stored position; ValueError when it is not one this engine wrote."""
    if not isinstance(stored, Mapping):
        raise ValueError("not an object")
    try:
        window = datetime.fromisoformat(stored["window"]) if "window" in stored else None
        if stored.get("done") is True:
            return finished(window)
        cursor = datetime.fromisoformat(stored["cursor"])
        # Older runs stored the key as a list under `key`.
        key = json.loads(stored["key_json"]) if "key_json" in stored else stored["key"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable: {exc}") from None
    if not isinstance(key, list):
        raise ValueError("its key is not a list")
    return after(cursor, tuple(key), window, _result(stored.get("result")))


def _result(stored: Any) -> Result | None:
    """A stored result reference; an unreadable one is dropped (the keyset still resumes)."""
    if not isinstance(stored, Mapping):
        return None
    job_id, location = stored.get("job_id"), stored.get("location")
    offset, limit = stored.get("offset"), stored.get("limit")
    if not isinstance(job_id, str) or not isinstance(offset, int) or not isinstance(limit, int):
        return None
    if not 1 <= offset <= limit:
        return None
    return Result(job_id, location if isinstance(location, str) else None, offset, limit)


@dataclass(frozen=True)
class Start:
    """Where each stream of a run starts: its watermark, and a position to resume after."""

    watermarks: dict[str, datetime]
    positions: dict[str, Position]


def load(conn: Connection, source: str, *, resume: bool, since: datetime | None) -> Start:
    """The run's starting points, with corrupt state reported and dropped (read from scratch).

    A new run (not a continuation) forgets which streams were done; a fresh window re-reads
    from `since` on purpose, so it resumes nowhere.
    """
    if not resume:
        state.clear_done(conn, source)
    return Start(_sane_watermarks(conn, source), _positions(conn, source, resume, since))


def _sane_watermarks(conn: Connection, source: str) -> dict[str, datetime]:
    marks: dict[str, datetime] = {}
    now = datetime.now(UTC)  # not the run's `until`: a window may end in the past on purpose
    for table, stored in state.watermarks(conn, source).items():
        # 'infinity' and '-infinity' come back as text. And no row can be stamped after now:
        # trusting a future mark would silently read nothing; reading from scratch is safe.
        if isinstance(stored, datetime) and stored <= now:
            marks[table] = stored
            continue
        log.error(
            "watermark of %s.%s is %s (%r); reading it from scratch",
            source, table,
            "in the future" if isinstance(stored, datetime) else "not a time", stored,
        )  # fmt: skip
        state.reset_watermark(conn, source, table)
    return marks


def _positions(
    conn: Connection, source: str, resume: bool, since: datetime | None
) -> dict[str, Position]:
    if since is not None and not resume:
        return {}
    out: dict[str, Position] = {}
    for table, stored in state.resume_positions(conn, source).items():
        try:
            position = parse(stored)
        except ValueError as exc:
            log.error(
                "resume position of %s.%s is garbage (%r: %s); reading from its watermark",
                source, table, stored, exc,
            )  # fmt: skip
            continue
        if position.belongs_to(since):  # another window's position is not ours
            out[table] = position
    return out

"""A verify's keys, staged in Postgres: a snapshot of each side, compared in SQL.

At 50M transcript rows the keys fit neither in a function's memory nor in one invocation's
reading time. Postgres keys of every target are copied first (side 'p'), then every target's
BigQuery key query runs, and its result is paged into side 'b' across as many invocations as
it takes (BigQuery keeps a result about 24 hours). The comparison is then a few anti-joins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from gong_sync import copy_text
from gong_sync.dead_letters import record_key
from gong_sync.declarations import Target
from gong_sync.postgres import Connection, text_array
from gong_sync.postgres_writer import ident
from gong_sync.row_mapping import holdable

KEY_COLUMNS = ("k1", "k2", "k3", "k4")
# A verify older than this starts over: its BigQuery results would expire mid-way.
MAX_AGE = timedelta(hours=20)

Key = tuple[str, ...]


@dataclass
class Job:
    """How far one target's BigQuery keys are staged."""

    job_id: str | None = None
    location: str | None = None
    offset: int = 0  # rows of the result staged so far
    total: int | None = None  # rows of the whole result
    last: str | None = None  # the last staged row's key, to recognise the result again
    unstorable: int = 0  # keys no sync can store (null, blank, NUL, lone surrogate)
    done: bool = False


def _cols(target: Target, prefix: str = "") -> list[str]:
    if len(target.key) > len(KEY_COLUMNS):
        raise ValueError(f"{target.table}: a key of more than {len(KEY_COLUMNS)} columns")
    return [prefix + c for c in KEY_COLUMNS[: len(target.key)]]


def progress(conn: Connection, source: str) -> dict[str, Job] | None:
    """The staged progress of a verify still under way and young enough to finish."""
    cur = conn.cursor()
    cur.execute(
        "SELECT jobs FROM verify_progress WHERE source = %s"
        " AND started_at > now() - make_interval(secs => %s)",
        (source, MAX_AGE.total_seconds()),
    )
    row = cur.fetchone()
    return {t: Job(**j) for t, j in row[0].items()} if row else None


def save(conn: Connection, source: str, jobs: dict[str, Job]) -> None:
    """Record the progress; the caller commits it with the rows it describes."""
    conn.cursor().execute(
        "INSERT INTO verify_progress (source, jobs) VALUES (%s, CAST(%s AS jsonb))"
        " ON CONFLICT (source) DO UPDATE SET jobs = EXCLUDED.jobs",
        (source, json.dumps({t: asdict(j) for t, j in jobs.items()})),
    )


def clear(conn: Connection, source: str) -> None:
    """Forget a source's staged keys and progress; the caller commits."""
    cur = conn.cursor()
    cur.execute("DELETE FROM verify_keys WHERE source = %s", (source,))
    cur.execute("DELETE FROM verify_progress WHERE source = %s", (source,))


def snapshot(conn: Connection, source: str, targets: Sequence[Target]) -> None:
    """Copy every target's Postgres keys, before any BigQuery key query runs."""
    cur = conn.cursor()
    for target in targets:
        keys = ", ".join(f"CAST({ident(k)} AS text)" for k in target.key)
        cur.execute(
            f"INSERT INTO verify_keys (source, target, side, {', '.join(_cols(target))})"
            f" SELECT %s, %s, 'p', {keys} FROM {ident(target.table)}",
            (source, target.table),
        )


def storable(values: Sequence[Any]) -> Key | None:
    """The key as text, or None where no sync could store it (it is a dead letter)."""
    out = []
    for v in values:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        text = str(v)
        if "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text if not c.isascii()):
            return None
        out.append(text)
    return tuple(out)


def stage(conn: Connection, source: str, target: Target, rows: Sequence[Sequence[Any]]) -> int:
    """Copy a page of BigQuery keys (raw values); returns how many could not be stored."""
    lines, unstorable = [], 0
    for values in rows:
        key = storable(values)
        if key is None:
            unstorable += 1
            continue
        fields = [source, target.table, "b", *key] + [None] * (len(KEY_COLUMNS) - len(key))
        fields.append(record_key(values))
        lines.append(copy_text.line([copy_text.field(f) for f in fields]))
    if lines:
        conn.cursor().execute(
            "COPY verify_keys (source, target, side, k1, k2, k3, k4, record_key) FROM STDIN",
            stream=copy_text.chunks(lines),
        )
    return unstorable


def _side(side: str, alias: str, target: Target) -> str:
    return (
        f"verify_keys {alias} WHERE {alias}.source = %s"
        f" AND {alias}.target = '{target.table}' AND {alias}.side = '{side}'"
    )


def _live_parent(alias: str, target: Target, parent: Target) -> str:
    """SQL: the parent of the row at `alias` is a live row of the parent in BigQuery."""
    at = KEY_COLUMNS[target.key.index(target.parent)]
    return f"EXISTS (SELECT 1 FROM {_side('b', 'lp', parent)} AND lp.k1 = {alias}.{at})"


def counts(conn: Connection, source: str, target: Target) -> tuple[int, int]:
    """Distinct live keys in BigQuery, and rows in Postgres."""
    cur = conn.cursor()
    cols = ", ".join(_cols(target, "b."))
    cur.execute(
        f"SELECT (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {_side('b', 'b', target)})"
        f" d), (SELECT count(*) FROM {_side('p', 'p', target)})",
        (source, source),
    )
    ((bigquery_rows, postgres_rows),) = cur.fetchall()
    return int(bigquery_rows), int(postgres_rows)


def _capped(query: str, cols: list[str], groups: str, limit: int) -> str:
    """The query's first `limit` rows of each group, each with its group's total.

    pg8000 reads a whole result into memory; a verify that runs while a backfill is still
    loading (or after a table was emptied) can find tens of millions of keys.
    """
    order = ", ".join(cols)
    return (
        f"SELECT * FROM (SELECT d.*, row_number() OVER (PARTITION BY {groups} ORDER BY {order})"
        f" AS n_, count(*) OVER (PARTITION BY {groups}) AS total_ FROM ({query}) d) x"
        f" WHERE n_ <= {int(limit)} ORDER BY {order}"
    )


def absent(
    conn: Connection, source: str, target: Target, parent: Target | None, limit: int
) -> tuple[list[tuple[Key, str, bool, bool]], dict[tuple[bool, bool], int]]:
    """BigQuery keys Postgres lacks: each with its record key, if a dead letter, if live.

    At most `limit` keys of each (dead letter, live) group, and each group's total.
    """
    cols = _cols(target)
    match = " AND ".join(f"p.{c} = b.{c}" for c in cols)
    live = _live_parent("b", target, parent) if parent else "TRUE"
    query = (
        f"SELECT DISTINCT {', '.join('b.' + c for c in cols)}, b.record_key,"
        " EXISTS (SELECT 1 FROM dead_letters d WHERE d.source = %s"
        f"  AND d.target = '{target.table}' AND d.record_key = b.record_key) AS rejected_,"
        f" {live} AS live_ FROM {_side('b', 'b', target)}"
        f" AND NOT EXISTS (SELECT 1 FROM {_side('p', 'p', target)} AND {match})"
    )
    cur = conn.cursor()
    cur.execute(
        _capped(query, cols, "rejected_, live_", limit),
        (source, *([source] if parent else []), source, source),
    )
    got, n = cur.fetchall(), len(cols)  # columns: the key, record_key, rejected_, live_, n_, total_
    totals = {(bool(r[n + 1]), bool(r[n + 2])): int(r[n + 4]) for r in got}
    return [(tuple(r[:n]), r[n], bool(r[n + 1]), bool(r[n + 2])) for r in got], totals


def surplus(
    conn: Connection, source: str, target: Target, parent: Target | None, limit: int
) -> tuple[list[tuple[Key, bool]], dict[bool, int]]:
    """Postgres keys BigQuery lacks (or, for a child, all): each with whether its parent lives.

    At most `limit` keys with a live parent and `limit` without, and the total of each.
    """
    cols = _cols(target)
    match = " AND ".join(f"b.{c} = p.{c}" for c in cols)
    live = _live_parent("p", target, parent) if parent else "TRUE"
    missing_in_bigquery = f"NOT EXISTS (SELECT 1 FROM {_side('b', 'b', target)} AND {match})"
    where = f"({missing_in_bigquery} OR NOT {live})" if parent else missing_in_bigquery
    live_params = [source] if parent else []
    params = [*live_params, source, source, *(live_params if parent else [])]
    query = (
        f"SELECT {', '.join('p.' + c for c in cols)}, {live} AS live_"
        f" FROM {_side('p', 'p', target)} AND {where}"
    )
    cur = conn.cursor()
    cur.execute(_capped(query, cols, "live_", limit), tuple(params))
    got, n = cur.fetchall(), len(cols)  # columns: the key, live_, n_, total_
    return [(tuple(r[:n]), bool(r[n])) for r in got], {bool(r[n]): int(r[n + 2]) for r in got}


def live_parents(conn: Connection, source: str, parent: Target, keys: Sequence[str]) -> set[str]:
    """Those of these parent keys that are live rows of the parent in BigQuery (staged here:
    a key no Postgres key can hold, drawn in BigQuery, is in none)."""
    cur = conn.cursor()
    cur.execute(
        f"SELECT DISTINCT b.k1 FROM {_side('b', 'b', parent)} AND b.k1 = ANY(CAST(%s AS text[]))",
        (source, text_array([k for k in keys if holdable(k)])),
    )
    return {r[0] for r in cur.fetchall()}

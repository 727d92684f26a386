"""What an hourly run bills at scale: the engine's own queries, priced by a stated size model.

The emulator bills nothing and no customer-sized dataset fits here, so this builds every query
of an hourly run with the engine's SQL builders (page queries, lookups, derivations) and the
daily verify's key and sampled queries, and prices them by on-demand's rules:

- each table a query names bills its referenced columns over all its rows, at least 10 MiB;
- a column counts as referenced when its name appears in the query (an upper bound);
- clustered on its cursor, a table a page query streams bills only the rows of the window it
  reads (the lookback plus the hour); a table read by key (a join, a derivation) is not pruned,
  but for a table a derivation reads from its floor on (floors.py), which for the parents of
  the window's rows is the window's start. A derivation that a lookup or a user also touches
  (old parents: a floor as old as the table) is priced unpruned.

"Before" is the engine as issue 15 found it: one whole-row derivation per touching stream
(email bodies included), none batched across streams. Run: python -m bench.cost_model
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from gong_sync import bigquery_sql as sql
from gong_sync import cost, derivations, floors, sources, sweep, verify
from gong_sync.declarations import Source, Target
from gong_sync.local import fivetran_schemas
from gong_sync.settings import Settings

RUNS_PER_MONTH = 24 * 30
WINDOW_HOURS = 2  # the lookback (1 h) plus the hour since the last run
SWEEP_ROWS = Settings.page_size * Settings.pages_per_query  # a sweep query's LIMIT, by default
SAMPLE_DAYS = Settings.verify_sample_days  # a weekly value sample's window

# Rows at the scale (1M calls, 50M transcript rows, 1M emails) and what lands a day.
ROWS = {
    "call": 1_000_000, "call_speaker": 3_000_000, "call_participant": 4_000_000,
    "users": 2_000, "transcript": 50_000_000, "call_context_integration": 1_000_000,
    "email": 1_000_000, "email_sender": 1_000_000, "email_recipient": 3_000_000,
    "opportunity": 100_000, "account": 50_000, "user": 2_000, "contact": 500_000,
}  # fmt: skip
PER_DAY = {
    "call": 1_000, "call_speaker": 3_000, "call_participant": 4_000, "users": 20,
    "transcript": 50_000, "call_context_integration": 1_000, "email": 1_000,
    "email_sender": 1_000, "email_recipient": 3_000, "opportunity": 500, "account": 200,
    "user": 20, "contact": 1_000,
}  # fmt: skip
# Average logical bytes of a value (BigQuery: STRING is 2 + its UTF-8 bytes, INT64, FLOAT64
# and TIMESTAMP 8, BOOL 1, NUMERIC 16, DATE 8, JSON its text), and the wide columns.
BY_TYPE = {"STRING": 22, "INT64": 8, "FLOAT64": 8, "TIMESTAMP": 8, "BOOL": 1, "NUMERIC": 16,
           "DATE": 8, "JSON": 200}  # fmt: skip
WIDE = {
    ("transcript", "sentence"): 800,  # a monologue's sentences, as JSON
    ("email", "body"): 10_000,  # HTML mail
    ("email", "headers"): 1_000,
    ("call", "title"): 50, ("call", "url"): 60, ("call", "meeting_url"): 60,
}  # fmt: skip


@dataclass(frozen=True)
class Query:
    """One BigQuery job of a run: what asks for it, and its SQL."""

    label: str
    text: str
    stream: str | None = None  # the table a query reads on its cursor (a page, a sample)
    hours: float = WINDOW_HOURS  # how much of that table: its rows of these last hours
    floored: tuple[str, ...] = ()  # tables read from a floor at the window's start
    share: float = 1.0  # of the hourly runs that issue it (a deferred touch's: one a day)


def _tables() -> dict[str, sql.TableRef]:
    return {
        name: sql.TableRef(name, f"project.dataset.{name}", fivetran_schemas.column_types(name))
        for name in fivetran_schemas.TABLES
    }


def _table_bytes(table: str, text: str) -> int:
    """Bytes of the columns of `table` whose names the query mentions, over all its rows."""
    types = fivetran_schemas.column_types(table)
    width = sum(
        WIDE.get((table, col), BY_TYPE[kind])
        for col, kind in types.items()
        if re.search(rf"\b{re.escape(col)}\b", text)
    )
    return width * ROWS[table]


def billed(query: Query, tables: dict[str, sql.TableRef], clustered: bool) -> int:
    """What on-demand bills for the query, per the model above."""
    total = 0
    for name, ref in tables.items():
        if sql.quote(ref.full_name) not in query.text:
            continue
        full = float(_table_bytes(name, query.text))
        if clustered and (query.stream == name or name in query.floored):
            full *= min(1.0, PER_DAY[name] * query.hours / 24 / ROWS[name])
        total += max(int(full), cost.MIN_BILLED_PER_TABLE)
    return int(total * query.share)


def _pages(source: Source, tables: dict[str, sql.TableRef]) -> Iterator[Query]:
    for stream in source.streams:
        target = source.target(stream.drives) if stream.drives else None
        text = sql.page_query(stream, target, tables, has_since=True, has_position=False)
        yield Query(stream.table, text, stream.table)
        for touch in stream.touches:
            if touch.lookup_sql:
                yield Query(f"{touch.target} lookup", sql.resolve(touch.lookup_sql, tables))


def _derivations(source: Source, tables: dict[str, sql.TableRef], before: bool) -> list[Query]:
    """Before: one whole derivation per touching stream. Now: one per target and feeds, and
    one per period for the touches derived once a period (Touch.every)."""
    if not before:
        return [
            q
            for name, t in derivations.batched(source).items()
            for q in _now(source, name, t, tables)
        ]
    return [
        Query(
            f"{t.target} derived for {s.table}", sql.derive_query(source.target(t.target), tables)
        )
        for s in source.streams
        for t in s.touches
    ]


def _now(source: Source, name: str, target: Target, tables: dict[str, sql.TableRef]) -> list[Query]:
    """A run's derivation of a target and feeds: from its floor where only floored streams
    touch it every run (their parents are the window's), in full where a lookup or a user
    does (old parents, a floor as old as the table); a deferred touch's, once per period."""
    touches = [
        t
        for s in source.streams
        for t in s.touches
        if derivations.label(t.target, derivations.feeds_key(t.feeds)) == name
    ]
    plain, named = sql.derive_query(target, tables), floors.streams(source, target.table)
    hourly = [t for t in touches if not t.every]
    out = [Query(f"{name}, deferred", plain, share=_share(t.every)) for t in touches if t.every]
    if named and all(t.column for t in hourly):
        text = sql.derive_query(target, tables, floored=named)
        return [Query(name, text, floored=tuple(s.table for s in named)), *out]
    return [Query(name, plain), *out] if hourly else out


def _share(every: timedelta | None) -> float:
    """The share of hourly runs that derive a touch's parents: one in every period."""
    return 1.0 if not every else min(1.0, timedelta(hours=1) / every)


# Lookups the engine made in BigQuery before this issue, since moved to Postgres (Touch.was).
BEFORE_LOOKUPS = {
    "calls": [
        Query(
            "call_speakers lookup",
            "SELECT call_id AS k FROM {call_speaker} WHERE user_id IN UNNEST(@ids) UNION DISTINCT"
            " SELECT call_id AS k FROM {call_participant} WHERE user_id IN UNNEST(@ids)",
        )
    ]
}


def hourly(source: Source, before: bool) -> list[Query]:
    """The jobs of an hourly run in which every stream has a change nothing else derived."""
    tables = _tables()
    moved = [
        Query(q.label, sql.resolve(q.text, tables))
        for q in (BEFORE_LOOKUPS.get(source.name, []) if before else [])
    ]
    return [*_pages(source, tables), *moved, *_derivations(source, tables, before)]


def _sample(source: Source, target: Target, tables: dict[str, sql.TableRef]) -> list[Query]:
    """A value sample: over its window of days (its draw, then its derivation) where it has one."""
    stream = verify.driving_stream(source, target)
    if stream is None:
        return [Query(f"{target.table} values", sql.derive_query(target, tables))]
    cursor, hours = sql.stream_cursor(stream), 24 * SAMPLE_DAYS
    return [
        Query(f"{target.table} draw", sql.recent_parents_query(target, tables, stream),
              stream.table, hours),
        Query(f"{target.table} values", sql.derive_query(target, tables, cursor=cursor),
              stream.table, hours),
    ]  # fmt: skip


def reconciliation(source: Source, values: bool) -> list[Query]:
    """A scheduled verify's jobs: every target's keys, and with values a sample's derivation."""
    tables = _tables()
    out = [Query(f"{t.table} keys", sql.key_query(t, tables)) for t in source.targets]
    if values:
        out += [q for t in source.targets for q in _sample(source, t, tables)]
    return out


@dataclass(frozen=True)
class Line:
    """One source's bytes per hourly run, four ways."""

    source: str
    unclustered_before: int
    unclustered_now: int
    clustered_before: int
    clustered_now: int


def line(name: str) -> Line:
    """Price a source's hourly run before and now, unclustered and clustered."""
    source, tables = sources.get(name), _tables()

    def run(before: bool, clustered: bool) -> int:
        return sum(billed(q, tables, clustered) for q in hourly(source, before))

    return Line(name, run(True, False), run(False, False), run(True, True), run(False, True))


def verify_line() -> Line:
    """Reconciliation, spread over the hourly runs: keys daily, sampled values weekly.

    Before this issue there was none (issue 16 added it). Keys prune nothing; clustered, a
    value sample reads its window of days.
    """
    tables = _tables()

    def per_run(clustered: bool) -> int:
        def day(values: bool) -> int:
            return sum(
                billed(q, tables, clustered)
                for s in sources.SOURCES.values()
                for q in reconciliation(s, values)
            )

        keys = day(values=False)
        return (7 * keys + day(values=True) - keys) // (7 * 24)

    return Line("reconciliation (per hourly run)", 0, per_run(False), 0, per_run(True))


def backfill_derivations(name: str) -> list[tuple[str, int, int, int, int]]:
    """A backfill's derivations of the swept targets: target, keyed jobs, bytes, swept ones.

    Keyed, every parent goes DERIVE_BATCH to a query; swept, one query per default LIMIT of
    rows (the set a LIMIT cuts is read again: one more query at most per LIMIT, left out).
    Either way every job bills the joined tables' named columns in full.
    """
    source, tables = sources.get(name), _tables()
    out = []
    for target in source.targets:
        if sweep.base_stream(source, target) is None:
            continue
        parents = ROWS["call"]  # every touched target here is a call's set
        keyed = -(-parents // derivations.DERIVE_BATCH)
        swept = -(-ROWS[target.base_table] // SWEEP_ROWS)
        each = billed(Query(target.table, sql.derive_query(target, tables)), tables, False)
        sweep_each = billed(Query(target.table, sql.sweep_query(target, tables)), tables, False)
        out.append((target.table, keyed, keyed * each, swept, swept * sweep_each))
    return out


def backfill_table() -> str:
    """The README's backfill table: the derivations of a first backfill of calls."""
    rows = [
        "| target | keyed: queries | keyed: billed | swept: queries | swept: billed |",
        "|---|---|---|---|---|",
    ]
    for table, keyed, keyed_bytes, swept, swept_bytes in backfill_derivations("calls"):
        rows.append(
            f"| {table} | {keyed} | {cost.human(keyed_bytes)} · ${cost.usd(keyed_bytes):,.2f}"
            f" | {swept} | {cost.human(swept_bytes)} · ${cost.usd(swept_bytes):,.2f} |"
        )
    return "\n".join(rows)


def _cell(per_run: int) -> str:
    month = per_run * RUNS_PER_MONTH
    return f"{cost.human(per_run)} · ${cost.usd(month):,.2f}"


def table() -> str:
    """The README's table: bytes a run and dollars a month (720 runs), per source and total."""
    lines = [line(name) for name in sources.SOURCES]
    lines.append(verify_line())
    total = Line("**total**", *(sum(getattr(x, f) for x in lines) for f in (
        "unclustered_before", "unclustered_now", "clustered_before", "clustered_now")))  # fmt: skip
    rows = [
        "| source | unclustered, before | unclustered, now | clustered, before | clustered, now |",
        "|---|---|---|---|---|",
    ]
    for x in [*lines, total]:
        cells = (x.unclustered_before, x.unclustered_now, x.clustered_before, x.clustered_now)
        rows.append(f"| {x.source} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    print()
    print(backfill_table())

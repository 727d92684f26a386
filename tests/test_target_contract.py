"""Per-target contracts, generated from the declarations in gong_sync.sources.SOURCES.

Every target of every registered source is a case of its own (ids like
"calls/call_speakers"), so a newly registered source is covered with no edit here:

- bad keys: a row whose key (one component of a composite key) is NULL, or blank text, in the
  target's base BigQuery table is a dead letter naming the target and the key, and the rest of
  its run lands; the BigQuery column behind each key column is read from the declaration;
- keys: after syncing the demo and those rows, a target's key columns are set, not blank, and
  unique, and the target has rows;
- no-change reruns: a full refresh, an incremental run (re-reading the lookback's hour), and
  an incremental run whose lookback covers every row, of data that did not change, write no
  tuple to any target table (pg_stat_user_tables) and count no write (RunStats).

That each target's Postgres DDL matches its declaration is tests/test_schema_contract.py's
contract, not repeated here.

Postgres reports table statistics asynchronously: a backend flushes its counts at most once a
second while it runs, and always on exit, before it leaves pg_stat_activity (the flush is a
before_shmem_exit hook, the activity entry is cleared by an on_shmem_exit one). The engine
closes its connection at the end of a run, so the counts are read once no other client backend
is connected to the test database, after pg_stat_clear_snapshot(). pg_stat_force_next_flush()
would not help: it only flushes the calling backend's own counts.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import bigquery

from gong_sync.declarations import Source, Target
from gong_sync.local import demo_data, fivetran_schemas
from gong_sync.runs import RunStats
from gong_sync.settings import PostgresSettings
from gong_sync.sources import SOURCES
from tests.conftest import Env, make_env

TARGETS = [(source, target) for source in SOURCES.values() for target in source.targets]
TARGET_IDS = [f"{source.name}/{target.table}" for source, target in TARGETS]
# Per key column: that column NULL (or, for text, blank), the others set.
KEY_CASES = [
    (source, target, key, bad)
    for source, target in TARGETS
    for key in target.key
    for bad in (None, " ") if bad is None or target.column(key).type == "text"
]  # fmt: skip
KEY_IDS = [
    f"{source.name}/{target.table}/{key}:{'null' if bad is None else 'blank'}"
    for source, target, key, bad in KEY_CASES
]
# rerun -> (full refresh?, lookback: None keeps the default hour)
RERUNS: dict[str, tuple[bool, timedelta | None]] = {
    "full_refresh": (True, None),
    "incremental": (False, None),  # re-reads the rows of the last hour
    # A lookback older than every row: each stream is read again in full, and the touching
    # streams that a full read skips as redundant derive their targets' sets again.
    "incremental_lookback_everything": (False, timedelta(days=36500)),
}

Tuples = dict[str, tuple[int, int, int]]  # table -> (n_tup_ins, n_tup_upd, n_tup_del)
_ALIASED = re.compile(r"\{(\w+)\}\s+AS\s+(\w+)", re.IGNORECASE)
_COPIED = re.compile(r"(\w+)\.`?(\w+)`?")


def base_column(target: Target, key: str) -> str:
    """The column of the target's base BigQuery table that the key column is copied from."""
    aliases = {alias: table for table, alias in _ALIASED.findall(target.from_sql)}
    found = _COPIED.fullmatch((target.column(key).sql or "").strip())
    where = f"{target.table}.{key} ({target.column(key).sql!r})"
    assert found is not None, f"{where} is not a plain column: its source cannot be derived"
    assert aliases.get(found[1]) == target.base_table, f"{where} is not of {target.base_table}"
    return found[2]


def base_streams(source: Source, target: Target) -> list[str]:
    """The cursor columns of the streams that read the target's base table."""
    cursors = [s.cursor for s in source.streams if s.table == target.base_table]
    assert cursors, f"no stream of {source.name} reads {target.base_table}"
    return cursors


def sync_all(env: Env, **options: Any) -> dict[str, RunStats]:
    """Run every registered source once; each must succeed."""
    runs: dict[str, RunStats] = {name: env.sync(name, **options) for name in SOURCES}
    failed = {name: (s.status, s.error) for name, s in runs.items() if s.status != "success"}
    assert not failed, failed
    return runs


def tuples_written(env: Env) -> Tuples:
    """Each target table's tuple counters, once every other client session has ended."""
    tables = sorted({target.table for _, target in TARGETS})
    conn = env.connect()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT current_setting('server_version_num')::int")
        (version,) = cur.fetchone() or (0,)
        assert version >= 150000, "cumulative statistics in shared memory need Postgres 15+"
        deadline = time.monotonic() + 30
        while True:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            (others,) = cur.fetchone() or (0,)
            if others == 0:
                break
            assert time.monotonic() < deadline, f"{others} session(s) still open"
            time.sleep(0.05)
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            " WHERE schemaname = 'public' AND relname = ANY(%s)",
            (tables,),
        )
        found = {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in cur.fetchall()}
    finally:
        conn.close()
    assert sorted(found) == tables
    return found


def _minus(after: tuple[int, int, int], before: tuple[int, int, int]) -> tuple[int, int, int]:
    """Tuples written between two readings of the counters."""
    return (after[0] - before[0], after[1] - before[1], after[2] - before[2])


@dataclasses.dataclass
class Demo:
    """The demo data, seeded into datasets of this module's own and synced once."""

    env: Env
    rows: dict[str, list[dict[str, Any]]]
    first: Tuples  # the tuples the first sync wrote


@pytest.fixture(scope="module")
def demo(pg_server: PostgresSettings, bq_host: str) -> Demo:
    """The scale-1 demo synced by every source, in pages of 500 (few queries, quick)."""
    env = make_env(pg_server, bq_host)
    env.settings = dataclasses.replace(env.settings, page_size=500)
    rows = demo_data.generate(scale=1)
    demo_data.seed_bigquery(env.bq, env.bq.project, env.datasets, rows)
    sync_all(env)
    return Demo(env, rows, tuples_written(env))


@dataclasses.dataclass
class Rerun:
    """What one no-change rerun of every source did."""

    runs: dict[str, RunStats]
    tuples: Tuples  # written during the rerun


@pytest.fixture(scope="module")
def reruns(demo: Demo) -> dict[str, Rerun]:
    """Every kind of no-change rerun of the unchanged demo, in turn; the tuples each wrote."""
    out: dict[str, Rerun] = {}
    before = demo.first
    default = demo.env.settings
    for rerun, (full_refresh, lookback) in RERUNS.items():
        demo.env.settings = dataclasses.replace(default, lookback=lookback or default.lookback)
        try:
            runs = sync_all(demo.env, full_refresh=full_refresh)
        finally:
            demo.env.settings = default
        after = tuples_written(demo.env)
        out[rerun] = Rerun(runs, {t: _minus(after[t], before[t]) for t in after})
        before = after
    return out


@dataclasses.dataclass
class BadKeyCase:
    """One seeded row with a NULL or blank key component, and a sibling row of the same run."""

    letter_key: list[Any]  # the dead letter's record_key, as JSON values
    sibling_key: tuple[Any, ...]  # the target key of the row that must land


@dataclasses.dataclass
class BadKeys:
    """The bad-key rows of every case, synced in one run of every source."""

    env: Env
    cases: dict[tuple[str, str, str | None], BadKeyCase]  # by (table, key column, bad value)
    started: datetime  # Postgres time before the run: letters first seen later are its own


def _fresh(column_type: str, n: int, column: str) -> Any:
    """A key value no demo row has."""
    return 9_000_000 + n if column_type.startswith("INT") else f"contract-{n}-{column}"


def _template(demo: Demo, target: Target) -> dict[str, Any]:
    """A live demo row of the target's base table that landed as a target row."""
    columns = [base_column(target, k) for k in target.key]
    select = ", ".join(f'"{k}"' for k in target.key)
    landed = demo.env.query(f'SELECT {select} FROM "{target.table}"')
    stored = {tuple(str(v) for v in r) for r in landed}
    for row in demo.rows[target.base_table]:
        alive = not any(row.get(flag) is True for flag in ("_fivetran_deleted", "is_deleted"))
        if alive and tuple(str(row.get(c)) for c in columns) in stored:
            return row
    raise AssertionError(f"no demo row of {target.base_table} landed in {target.table}")


def _insert(client: bigquery.Client, datasets: dict[str, str], table: str, rows: list[Any]) -> None:
    """Land rows in one Fivetran table of the test's datasets."""
    errors = client.insert_rows_json(
        fivetran_schemas.table_id(client.project, datasets, table),
        [demo_data.to_json_row(table, r) for r in rows],
        timeout=30,
    )
    assert not errors, errors


# Depends on the reruns only to run after them: its rows would spoil their measurements.
@pytest.fixture(scope="module")
def bad_keys(demo: Demo, reruns: Mapping[str, Rerun]) -> BadKeys:
    """Per case, copies of a good demo row: one with the key column bad, one all good."""
    env = demo.env
    stamp = datetime.now(UTC) - timedelta(minutes=10)  # newer than every watermark
    cases: dict[tuple[str, str, str | None], BadKeyCase] = {}
    landing: dict[str, list[dict[str, Any]]] = {}
    for n, (source, target, key, bad_value) in enumerate(KEY_CASES):
        types = fivetran_schemas.column_types(target.base_table)
        columns = [base_column(target, k) for k in target.key]
        cursors = {*base_streams(source, target), "_fivetran_synced"} & set(types)
        template = _template(demo, target)
        bad, good = (
            {
                **template,
                **{c: _fresh(types[c], copy, c) for c in columns},
                **dict.fromkeys(cursors, stamp),
            }
            for copy in (2 * n, 2 * n + 1)
        )
        bad[base_column(target, key)] = bad_value
        cases[target.table, key, bad_value] = BadKeyCase(
            [bad[c] for c in columns], tuple(good[c] for c in columns)
        )
        landing.setdefault(target.base_table, []).extend((bad, good))
    for table, rows in landing.items():
        _insert(env.bq, env.datasets, table, rows)
    ((started,),) = env.query("SELECT clock_timestamp()")
    sync_all(env)
    return BadKeys(env, cases, started)


@pytest.mark.parametrize(("source", "target"), TARGETS, ids=TARGET_IDS)
def test_every_key_is_set_and_unique(bad_keys: BadKeys, source: Source, target: Target) -> None:
    """After the demo and the bad keys, the target has rows; no key is NULL, blank or repeated."""
    keys = ", ".join(f'"{k}"' for k in target.key)
    missing = " OR ".join(f'"{k}" IS NULL' for k in target.key)
    blank = " OR ".join(f"trim(\"{k}\"::text) = ''" for k in target.key)
    ((rows, distinct, nulls, blanks),) = bad_keys.env.query(
        f"SELECT count(*), count(DISTINCT ({keys}, 0)), count(*) FILTER (WHERE {missing}),"
        f' count(*) FILTER (WHERE {blank}) FROM "{target.table}"'
    )
    assert rows > 0, f"{target.table}: no rows landed, so nothing is checked"
    assert (distinct, nulls, blanks) == (rows, 0, 0), "(distinct keys, null keys, blank keys)"


@pytest.mark.parametrize(("source", "target", "key", "bad"), KEY_CASES, ids=KEY_IDS)
def test_a_bad_key_is_a_dead_letter_and_the_rest_lands(
    bad_keys: BadKeys, source: Source, target: Target, key: str, bad: str | None
) -> None:
    """A NULL or blank key column in the base table is a dead letter; its sibling row lands."""
    case = bad_keys.cases[target.table, key, bad]
    letters = bad_keys.env.query(
        "SELECT source, record_key, reason FROM dead_letters WHERE target = %s"
        " AND first_seen >= %s",
        target.table,
        bad_keys.started,
    )
    mine = [(s, reason) for s, k, reason in letters if json.loads(k) == case.letter_key]
    reason = f"{key}: key is {'null' if bad is None else 'empty'}"
    assert mine == [(source.name, reason)], letters
    match = " AND ".join(f'"{k}"::text = %s' for k in target.key)
    found = bad_keys.env.query(
        f'SELECT count(*) FROM "{target.table}" WHERE {match}',
        *(str(v) for v in case.sibling_key),
    )
    assert found == [(1,)], f"{target.table}: the row beside the bad key did not land"


@pytest.mark.parametrize("rerun", list(RERUNS))
@pytest.mark.parametrize(("source", "target"), TARGETS, ids=TARGET_IDS)
def test_a_no_change_rerun_writes_no_tuples(
    demo: Demo, reruns: Mapping[str, Rerun], source: Source, target: Target, rerun: str
) -> None:
    """Re-reading unchanged BigQuery rows inserts, updates and deletes no tuple of the target."""
    assert demo.first[target.table][0] > 0, "the first sync's inserts were not seen"
    assert reruns[rerun].runs[source.name].rows_read > 0, f"the {rerun} rerun re-read nothing"
    assert reruns[rerun].tuples[target.table] == (0, 0, 0), "(inserted, updated, deleted)"


@pytest.mark.parametrize("rerun", list(RERUNS))
@pytest.mark.parametrize("source", list(SOURCES))
def test_a_no_change_rerun_counts_no_writes(
    reruns: Mapping[str, Rerun], source: str, rerun: str
) -> None:
    """The rerun's RunStats agree: nothing upserted, nothing deleted."""
    stats = reruns[rerun].runs[source]
    assert stats.rows_read > 0, f"the {rerun} rerun of {source} re-read nothing"
    assert (stats.rows_upserted, stats.rows_deleted) == (0, 0)

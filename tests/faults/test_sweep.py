"""A touched target swept in parent order after a full read, instead of 10,000 parents a query.

The keyed derivation bills a scan of every joined table per DERIVE_BATCH parents; a backfill
notes every parent, so it sweeps the whole target once per `page_size * pages_per_query` rows.
The tests here (page size 7, two pages a query: 14 rows) cut sets at a query's LIMIT and at
a commit's parent count, and check every landing against the reference.
"""

from __future__ import annotations

import re

import pytest

from gong_sync import derivations, sources
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.runs import RunHooks, RunOptions, RunStats
from gong_sync.sync import run_source
from tests.conftest import Env
from tests.factories import at, call, dml, insert, speaker
from tests.faults.bigquery_billing import BigQueryBilling
from tests.faults.matrix import Scenario, model
from tests.faults.test_bigquery_cost import TABLE_BYTES, _through

Rows = list[dict[str, object]]


def _land(env: Env, calls: int, per_call: int, more: Rows | None = None) -> tuple[Rows, Rows]:
    """Land calls with per_call speakers each (and more speakers); returns both."""
    rows = [call(f"c{i:02d}", at(i)) for i in range(calls)]
    spoke = [speaker(f"s{i:02d}{k}", f"c{i:02d}", at(i), talk_time=10.0 + k)
             for i in range(calls) for k in range(per_call)]  # fmt: skip
    spoke += more or []
    insert(env.bq, env.datasets, "call", rows)
    insert(env.bq, env.datasets, "call_speaker", spoke)
    return rows, spoke


def _jobs(billing: BigQueryBilling, marker: str) -> list[str]:
    """The SQL of jobs starting FROM call_speaker that hold marker."""
    return [
        j.sql
        for j in billing.jobs
        if marker in j.sql and re.search(r"FROM `[^`]*\.call_speaker` AS", j.sql)
    ]


def test_a_backfill_sweeps_speakers_instead_of_a_query_per_batch_of_calls(
    env: Env, matrix: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 calls, 3 speakers each, 2 calls a commit: 10 sweep queries, not 20 keyed ones."""
    monkeypatch.setattr(derivations, "DERIVE_BATCH", 2)
    calls, speakers = _land(env, 40, 3)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        assert _through(env, billing).sync().status == "success"
    # 120 rows, 14 a query, the set cut at each LIMIT read again: 4 whole sets a query.
    assert len(_jobs(billing, "@sweep_limit")) == 10
    assert _jobs(billing, "IN UNNEST(@keys)") == []
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]
    matrix.exact(env, model(call=calls, call_speaker=speakers), "calls", "call_speakers")


def test_a_set_larger_than_a_query_is_derived_on_its_own(env: Env, matrix: Scenario) -> None:
    """A call with more speakers than one sweep query's LIMIT: the keyed derivation takes it."""
    crowd = [speaker(f"x{k:02d}", "c01", at(1), talk_time=1.0 + k) for k in range(20)]
    calls, speakers = _land(env, 3, 2, crowd)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        assert _through(env, billing).sync().status == "success"
    assert len(_jobs(billing, "@sweep_limit")) == 3
    assert len(_jobs(billing, "IN UNNEST(@keys)")) == 1  # c01, its 22 speakers
    assert env.query("SELECT count(*) FROM call_speakers WHERE gong_call_id = 'c01'") == [(22,)]
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]
    data = model(call=calls, call_speaker=speakers)
    matrix.exact(env, data, "calls", "call_speakers")


def test_a_full_refresh_empties_a_set_whose_rows_are_all_gone(env: Env, matrix: Scenario) -> None:
    """A call whose speakers were all deleted has no row to sweep: its stored set goes."""
    calls, speakers = _land(env, 20, 2)
    assert env.sync().status == "success"
    table = f"{env.bq.project}.{env.datasets['gong']}.call_speaker"
    dml(env.bq, f"UPDATE `{table}` SET _fivetran_deleted = TRUE WHERE call_id = 'c07'")
    assert env.sync(full_refresh=True).status == "success"
    for row in speakers:
        row["_fivetran_deleted"] = row["call_id"] == "c07"
    assert env.query("SELECT count(*) FROM call_speakers WHERE gong_call_id = 'c07'") == [(0,)]
    matrix.exact(env, model(call=calls, call_speaker=speakers), "calls", "call_speakers")


class SweepBudget(RunHooks):
    """Runs out of time after n commits of derived sets (pages of streams do not count)."""

    def __init__(self, n: int) -> None:
        """Allow n commits once the streams are read."""
        self.n = n

    def before_commit(self, source: str) -> None:
        """Count every commit."""
        self.n -= 1

    def out_of_time(self, stats: RunStats, options: RunOptions) -> bool:
        """Spent once n commits were made."""
        return self.n <= 0


def test_a_sweep_out_of_time_leaves_the_rest_to_the_continuation(
    env: Env, matrix: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sets committed before the budget ran out stay; the continuation derives the rest."""
    monkeypatch.setattr(derivations, "DERIVE_BATCH", 2)
    calls, speakers = _land(env, 30, 2)
    # Pages: 5 of calls, 9 of speakers; then 2 commits of derived sets.
    reader = BigQueryReader(env.bq, env.settings.bigquery)
    stats = run_source(
        sources.get("calls"), env.settings, reader, env.connect, PostgresDeadLetterSink,
        RunOptions(), SweepBudget(16),
    )  # fmt: skip
    assert stats.status == "partial"
    assert stats.continuation_needed
    assert env.query("SELECT count(DISTINCT gong_call_id) FROM call_speakers") == [(4,)]
    assert env.query("SELECT count(*) FROM pending_derivations") == [(26,)]
    assert env.sync(resume=True).status == "success"
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]
    matrix.exact(env, model(call=calls, call_speaker=speakers), "calls", "call_speakers")

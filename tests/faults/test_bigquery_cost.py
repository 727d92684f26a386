"""What BigQuery bills: measured per run and stream, and capped per query before it is billed.

The emulator bills nothing, so these tests read BigQuery through `BigQueryBilling`, a
stand-in that bills and refuses as on-demand pricing does (see its docstring for the rules).
"""

from __future__ import annotations

import dataclasses

import pytest

from gong_sync import sources, state
from gong_sync.bigquery_reader import BigQueryReader, BytesLimitExceeded, make_client
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.errors import is_transient
from gong_sync.runs import RunHooks, RunOptions, RunStats
from gong_sync.sync import run_source
from tests.conftest import Env
from tests.factories import at, call, insert, transcript
from tests.faults.bigquery_billing import BigQueryBilling
from tests.faults.matrix import Scenario, model

GB = 10**9
# Sizes as at 1M calls / 50M transcript rows; the other tables of calls bill 10 MB each.
TABLE_BYTES = {"call": 2 * GB, "transcript": 40 * GB}


def _through(env: Env, billing: BigQueryBilling, **bigquery: object) -> Env:
    bq = dataclasses.replace(env.settings.bigquery, emulator_host=billing.host, **bigquery)
    return Env(dataclasses.replace(env.settings, bigquery=bq), make_client(bq))


def _seed(env: Env) -> dict[str, list[dict[str, object]]]:
    calls = [call(f"c{i}", at(i)) for i in range(3)]
    transcripts = [transcript(f"c{i}", 0, at(i)) for i in range(3)]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", transcripts)
    return {"call": calls, "transcript": transcripts}


def test_bytes_billed_are_recorded_per_run_and_stream(env: Env, matrix: Scenario) -> None:
    """Every job's bytes billed add up in the run, its streams, sync_status and status."""
    rows = _seed(env)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        stats = _through(env, billing).sync()
    assert stats.status == "success"
    billed = sum(j.billed for j in billing.jobs)
    assert billed >= TABLE_BYTES["call"] + TABLE_BYTES["transcript"]
    assert stats.bytes_billed == billed
    assert sum(stats.bytes_billed_by_stream.values()) == billed
    assert stats.bytes_billed_by_stream["transcript"] >= TABLE_BYTES["transcript"]
    conn = env.connect()
    try:
        (item,) = [i for i in state.status(conn) if i["source"] == "calls"]
    finally:
        conn.close()
    assert item["bytes_billed"] == billed
    assert item["bytes_billed_24h"] == billed
    # 30 days of this day at $6.25 per TiB.
    assert item["projected_month_usd"] == pytest.approx(billed * 30 / 2**40 * 6.25, abs=0.01)
    matrix.exact(env, model(**rows), "calls", "transcripts")


def test_a_query_that_finds_nothing_is_counted_too(env: Env, matrix: Scenario) -> None:
    """BigQuery bills the scan of a query whose result is empty: an hourly run's streams with
    no row at all (every table here but call and transcript) count their bytes too."""
    rows = _seed(env)
    env.sync()
    empty = ["call_speaker", "call_participant", "users", "opportunity"]
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, {**TABLE_BYTES, **dict.fromkeys(empty, GB)}) as billing:
        stats = _through(env, billing).sync()
    assert stats.status == "success"
    assert all(billing.jobs_reading(table) for table in empty)
    assert stats.bytes_billed == sum(j.billed for j in billing.jobs)
    assert {t: stats.bytes_billed_by_stream.get(t) for t in empty} == dict.fromkeys(empty, GB)
    matrix.exact(env, model(**rows), "calls", "transcripts")


def test_a_query_over_its_cap_fails_unbilled_and_names_the_table(
    env: Env, matrix: Scenario
) -> None:
    """The cap stops the transcript scan before it is billed; once raised, nothing was lost."""
    rows = _seed(env)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        capped = _through(env, billing, max_bytes_billed=10 * GB)
        with pytest.raises(BytesLimitExceeded) as failed:
            capped.sync()
        refused = [j for j in billing.jobs if j.refused]
        assert [j.billed for j in refused] == [0]
        assert "transcript" in str(failed.value)
        assert "10,000,000,000 bytes" in str(failed.value)
        assert "GONG_SYNC_MAX_BYTES_BILLED" in str(failed.value)
        # Permanent: a retry (here or by Pub/Sub) would be refused the same way.
        assert not is_transient(failed.value)
        status = env.query("SELECT last_status, error_details FROM sync_status")
        assert status[0][0] == "failed"
        assert "transcript" in status[0][1]["message"]
        # Per source: calls may bill 50 GB a query, every other source keeps the default.
        raised = _through(
            env, billing, max_bytes_billed=10 * GB, max_bytes_billed_by_source={"calls": 50 * GB}
        )
        assert raised.sync().status == "success"
    matrix.exact(env, model(**rows), "calls", "transcripts")


def test_an_hourly_run_with_no_change_queries_each_stream_once(env: Env, matrix: Scenario) -> None:
    """Nothing new since the last run: one page query per stream, and no derivation."""
    rows = _seed(env)
    env.sync()
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        assert _through(env, billing).sync().status == "success"
    streams = [s.table for s in sources.get("calls").streams]
    assert len(billing.jobs) == len(streams), [j.sql[:80] for j in billing.jobs]
    for table in streams:  # each job reads its stream's table
        assert billing.jobs_reading(table), table
    matrix.exact(env, model(**rows), "calls", "transcripts")


class PageBudget(RunHooks):
    """A time budget counted in pages, so the chain is the same on a slow machine."""

    def __init__(self, pages: int) -> None:
        """Stop each invocation after this many pages."""
        self.pages = pages

    def out_of_time(self, stats: RunStats, options: RunOptions) -> bool:
        """Spent once the invocation committed its pages."""
        return stats.pages >= self.pages


def _chain(env: Env, billing: BigQueryBilling, expire: bool = False) -> int:
    """A backfill of calls through continuations of 3 pages each; returns the invocations."""
    bq = dataclasses.replace(env.settings.bigquery, emulator_host=billing.host)
    settings = dataclasses.replace(env.settings, bigquery=bq, pages_per_query=100)
    reader = BigQueryReader(make_client(bq), bq)
    options, invocations = RunOptions(), 0
    while True:
        invocations += 1
        assert invocations < 50, "the chain never finished"
        stats = run_source(
            sources.get("calls"), settings, reader, env.connect, PostgresDeadLetterSink,
            options, PageBudget(3),
        )  # fmt: skip
        assert stats.status in ("partial", "success"), stats.error
        if not stats.continuation_needed:
            return invocations
        if expire:  # BigQuery dropped every result before the continuation ran
            billing.expired |= {j.job_id for j in billing.jobs}
        options = RunOptions(resume=True)


def _backfill(env: Env) -> dict[str, list[dict[str, object]]]:
    calls = [call(f"c{i:02d}", at(i // 3)) for i in range(40)]
    transcripts = [transcript(f"c{i:02d}", 0, at(i // 3)) for i in range(40)]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", transcripts)
    return {"call": calls, "transcript": transcripts}


def test_a_backfill_through_continuations_queries_each_stream_once(
    env: Env, matrix: Scenario
) -> None:
    """Each continuation pages on through its chain's stored result instead of querying."""
    rows = _backfill(env)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        invocations = _chain(env, billing)
    assert invocations >= 4  # 80 rows in pages of 7, three pages an invocation
    pages = billing.page_queries()
    assert len(pages) <= len(sources.get("calls").streams)
    # No continuation went back to BigQuery with a keyset query: each reused its result.
    assert not [j for j in pages if "@after_cursor" in j.sql]
    matrix.exact(env, model(**rows), "calls", "transcripts")


def test_a_continuation_whose_result_expired_queries_again_and_loses_nothing(
    env: Env, matrix: Scenario
) -> None:
    """After 24 h the stored result is gone: the keyset position resumes, exactly."""
    rows = _backfill(env)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        _chain(env, billing, expire=True)
    assert [j for j in billing.page_queries() if "@after_cursor" in j.sql]
    matrix.exact(env, model(**rows), "calls", "transcripts")

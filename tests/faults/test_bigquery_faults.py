"""BigQuery faults in the middle of pagination: retried with backoff, or a clean failure."""

from __future__ import annotations

import dataclasses
import time

import pytest

from gong_sync.bigquery_reader import make_client
from tests.conftest import Env
from tests.factories import at, call, insert
from tests.faults.bigquery_fault_proxy import Fault, FaultProxy
from tests.faults.matrix import Scenario, model

# Short enough to keep the test quick, long enough for an emulator request on a busy machine.
REQUEST_TIMEOUT = 3.0


def _through(env: Env, proxy: FaultProxy, retry_seconds: float) -> Env:
    """The env read through the proxy, over REST: the path whose requests it faults."""
    bq = dataclasses.replace(
        env.settings.bigquery,
        emulator_host=proxy.host,
        read_api="rest",
        retry_seconds=retry_seconds,
        request_timeout_seconds=REQUEST_TIMEOUT,
    )
    settings = dataclasses.replace(env.settings, bigquery=bq)
    return Env(settings, make_client(bq))


def _seed(env: Env) -> list[dict[str, object]]:
    rows = [call(f"c{i:02d}", at(i // 4)) for i in range(60)]  # pages of 7 cut through ties
    insert(env.bq, env.datasets, "call", rows)
    return rows


# Each request kind the client makes while paging: getQueryResults pages through a query's
# rows; jobs.insert starts each query (with pages_per_query=2, every other page).
RESULTS, INSERT = "/queries", "/jobs?"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("request_kind", "plan", "injected"),
    [
        (RESULTS, [None, None, 429, 500, "drop", None, 503], 4),
        # Held responses: the emulator runs the query (a job now exists) but the answer never
        # arrives; the client times out, retries, and must neither lose nor repeat a row.
        (INSERT, [None, "hang", None, "hang"], 2),
    ],
    ids=["429-500-drop", "timeouts"],
)
def test_transient_faults_mid_pagination_are_retried(
    env: Env, matrix: Scenario, request_kind: str, plan: list[Fault | None], injected: int
) -> None:
    rows = _seed(env)
    hangs = plan.count("hang")  # the proxy consumes its plan
    upstream = env.settings.bigquery.emulator_host or ""
    with FaultProxy(upstream, match=request_kind) as proxy:
        proxy.plan = plan
        stats = _through(env, proxy, retry_seconds=60).sync()
    assert stats.status == "success"
    assert proxy.injected == injected
    assert proxy.abandoned == hangs, "held responses were waited out, not timed out"
    matrix.exact(env, model(call=rows), "calls")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("request_kind", "fault"),
    [(RESULTS, 503), (INSERT, 503), (INSERT, "hang")],
    ids=["results-503", "insert-503", "insert-timeouts"],
)
def test_persistent_faults_give_up_cleanly_and_lose_nothing(
    env: Env, matrix: Scenario, request_kind: str, fault: Fault
) -> None:
    rows = _seed(env)
    upstream = env.settings.bigquery.emulator_host or ""
    with FaultProxy(upstream, match=request_kind) as proxy:
        proxy.plan = [None, None]  # two requests, then BigQuery stays down or silent
        proxy.always = fault
        started = time.monotonic()
        with pytest.raises(Exception, match=r"(?i)503|unavailable|retry|deadline|timed? ?out"):
            _through(env, proxy, retry_seconds=4).sync()
        waited = time.monotonic() - started
    # Retries of 4 s and requests of 3 s: under the proxy's 20 s hold, far under the client's
    # own 10-minute insert retry that once kept a run going after ours had given up.
    assert waited < 20, f"the run took {waited:.0f} s to give up"
    committed = len(env.query("SELECT 1 FROM calls"))
    assert 0 < committed < 60  # the pages before the outage stayed committed
    assert env.query("SELECT last_status FROM sync_status") == [("failed",)]
    assert env.sync().status == "success"  # BigQuery is back: the rerun completes
    matrix.exact(env, model(call=rows), "calls")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("request_kind", [RESULTS, INSERT], ids=["slow-page", "slow-query"])
def test_a_slow_bigquery_cannot_hold_a_run_past_its_hard_deadline(
    env: Env, matrix: Scenario, request_kind: str
) -> None:
    """A request that hangs is cut at the run's hard deadline, not at its own timeouts.

    Uncut, a call could last its request timeout (here 30 s) plus its retry budget (60 s)
    after the run's last look at the clock: on the platform, past the function's 540 s.
    """
    rows = _seed(env)
    upstream = env.settings.bigquery.emulator_host or ""
    with FaultProxy(upstream, match=request_kind) as proxy:
        proxy.plan = [None, None]  # two answers, then BigQuery hangs
        proxy.always = "hang"
        slow = _through(env, proxy, retry_seconds=60)
        slow.settings = dataclasses.replace(
            slow.settings,
            bigquery=dataclasses.replace(slow.settings.bigquery, request_timeout_seconds=30),
        )
        started = time.monotonic()
        stats = slow.sync(deadline=started + 60, hard_deadline=started + 5)
        took = time.monotonic() - started
    assert took < 7, f"the run ended {took:.1f} s after it started; its hard deadline was 5 s"
    assert (stats.status, stats.continuation_needed) == ("partial", True)
    committed = len(env.query("SELECT 1 FROM calls"))
    assert 0 < committed < 60  # what was committed before stays; the position resumes there
    assert env.sync(resume=True).status == "success"  # the continuation completes the read
    matrix.exact(env, model(call=rows), "calls")

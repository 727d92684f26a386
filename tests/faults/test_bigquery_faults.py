"""BigQuery faults in the middle of pagination: retried with backoff, or a clean failure."""

from __future__ import annotations

import dataclasses

import pytest

from gong_sync.bigquery_reader import make_client
from tests.conftest import Env
from tests.factories import at, call, insert
from tests.faults.bigquery_fault_proxy import FaultProxy


def _through(env: Env, proxy: FaultProxy, retry_seconds: float) -> Env:
    bq = dataclasses.replace(
        env.settings.bigquery, emulator_host=proxy.host, retry_seconds=retry_seconds
    )
    settings = dataclasses.replace(env.settings, bigquery=bq)
    return Env(settings, make_client(bq))


def test_429_500_and_dropped_connections_mid_pagination_are_retried(env: Env) -> None:
    insert(env.bq, env.datasets, "call", [call(f"c{i:02d}", at(i // 4)) for i in range(30)])
    upstream = env.settings.bigquery.emulator_host or ""
    with FaultProxy(upstream, match="/queries") as proxy:
        # Let the first pages through, then fail the next query calls three different ways.
        proxy.plan = [None, None, 429, 500, "drop", None, 503]
        stats = _through(env, proxy, retry_seconds=60).sync()
    assert stats.status == "success"
    assert proxy.injected == 4
    assert [r[0] for r in env.query("SELECT gong_call_id FROM calls ORDER BY 1")] == [
        f"c{i:02d}" for i in range(30)
    ]
    assert env.query("SELECT count(*), count(DISTINCT gong_call_id) FROM calls") == [(30, 30)]


def test_persistent_faults_give_up_cleanly_and_lose_nothing(env: Env) -> None:
    insert(env.bq, env.datasets, "call", [call(f"c{i:02d}", at(i // 4)) for i in range(30)])
    upstream = env.settings.bigquery.emulator_host or ""
    with FaultProxy(upstream, match="/queries") as proxy:
        proxy.plan = [None, None]  # two pages, then BigQuery stays down
        proxy.always = 503
        with pytest.raises(Exception, match=r"(?i)503|unavailable|retry|deadline|timeout"):
            _through(env, proxy, retry_seconds=3).sync()
    committed = len(env.query("SELECT 1 FROM calls"))
    assert 0 < committed < 30  # the pages before the outage stayed committed
    assert env.query("SELECT last_status FROM sync_status") == [("failed",)]
    assert env.sync().status == "success"  # BigQuery is back: the rerun completes
    assert env.query("SELECT count(*), count(DISTINCT gong_call_id) FROM calls") == [(30, 30)]

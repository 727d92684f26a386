"""A BigQuery call whose retries were cut to the run's hard deadline ends the run as partial."""

from __future__ import annotations

import time

import pytest
from google.api_core.exceptions import RetryError

from gong_sync.bigquery_reader import BigQueryReader, OutOfTime, Query
from tests.conftest import Env
from tests.faults.bigquery_fault_proxy import FaultProxy
from tests.faults.test_bigquery_faults import _through


def _hanging_reader(env: Env, proxy: FaultProxy, retry_seconds: float) -> BigQueryReader:
    through = _through(env, proxy, retry_seconds)
    return BigQueryReader(through.bq, through.settings.bigquery)


@pytest.mark.timeout(60)
def test_retries_cut_to_the_deadline_and_spent_are_out_of_time(env: Env) -> None:
    """Not a failure: the run stops as partial and a continuation resumes.

    The page wait says OutOfTime when it times out first; the client's own RetryError, a
    millisecond earlier, once made the same moment a failed run.
    """
    upstream = env.settings.bigquery.emulator_host or ""
    with FaultProxy(upstream, match="/jobs?") as proxy:
        proxy.always = "hang"
        reader = _hanging_reader(env, proxy, retry_seconds=60)  # cut to the 3 s left
        started = time.monotonic()
        with pytest.raises(OutOfTime, match="hard deadline") as raised:
            reader.query(Query("SELECT 1 AS x", [], "probe"), deadline=started + 3)
        assert time.monotonic() - started < 6
        assert isinstance(raised.value.__cause__, RetryError)

        # Retries given up within their own budget, far from any deadline: a failure.
        reader = _hanging_reader(env, proxy, retry_seconds=1)
        with pytest.raises(RetryError):
            reader.query(Query("SELECT 1 AS x", [], "probe"), deadline=time.monotonic() + 60)

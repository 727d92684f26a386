"""Reading over the Storage Read API in a run: exact, and REST when the API refuses the caller."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pytest

from gong_sync import sources
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.runs import RunOptions
from gong_sync.sync import run_source
from tests.conftest import Env
from tests.factories import at, call, insert
from tests.faults.matrix import Scenario, model
from tests.storage_standins import Propagating, Refusing, serving


def _reader(env: Env, **changes: Any) -> BigQueryReader:
    return BigQueryReader(env.bq, dataclasses.replace(env.settings.bigquery, **changes))


def test_a_sync_reads_its_pages_over_the_storage_read_api(env: Env, matrix: Scenario) -> None:
    rows = [call(f"c{i:02d}", at(i // 4)) for i in range(60)]
    insert(env.bq, env.datasets, "call", rows)
    reader = _reader(env)
    stats = run_source(sources.get("calls"), env.settings, reader, env.connect,
                       PostgresDeadLetterSink, RunOptions())  # fmt: skip
    assert stats.status == "success"
    assert reader.sessions >= 4  # LIMIT 14 per query, pages of 7: every query's result
    assert stats.storage_reads == reader.sessions  # in the run's summary line
    matrix.exact(env, model(call=rows), "calls")


def test_without_the_read_session_permission_a_run_reads_over_rest(
    env: Env, matrix: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    """The Storage Read API refusing this caller is not an outage: REST reads the same result."""
    rows = [call(f"c{i:02d}", at(i // 4)) for i in range(60)]
    insert(env.bq, env.datasets, "call", rows)
    with (
        serving(Refusing()) as refusing,
        caplog.at_level(logging.WARNING, logger="gong_sync.bigquery_reader"),
    ):
        reader = _reader(env, storage_emulator_host=refusing)
        stats = run_source(sources.get("calls"), env.settings, reader, env.connect,
                           PostgresDeadLetterSink, RunOptions())  # fmt: skip
    assert stats.status == "success"
    assert reader.storage is None
    assert reader.sessions == 0
    assert "the Storage Read API is not available" in caplog.text
    assert "readsessions.create denied" in caplog.text
    matrix.exact(env, model(call=rows), "calls")


def test_a_refused_read_session_is_tried_again_once_a_grant_can_have_propagated(
    env: Env, matrix: Scenario
) -> None:
    """IAM grants take minutes to propagate: a fresh deploy's first refusal is not for good.

    The reader lives as long as the instance; given up for good, it read over REST until the
    instance was recycled.
    """
    first = [call(f"c{i:02d}", at(i // 4)) for i in range(30)]
    insert(env.bq, env.datasets, "call", first)
    grant = Propagating(env.settings.bigquery.storage_emulator_host or "")
    with serving(grant) as endpoint:
        reader = _reader(env, storage_emulator_host=endpoint)
        reader.storage_retry_seconds = 1.0

        def sync() -> str:
            return run_source(sources.get("calls"), env.settings, reader, env.connect,
                              PostgresDeadLetterSink, RunOptions()).status  # fmt: skip

        assert sync() == "success"
        assert reader.sessions == 0  # refused: read over REST
        grant.granted = True
        time.sleep(1.1)
        later = [call(f"d{i:02d}", at(100 + i // 4)) for i in range(30)]
        insert(env.bq, env.datasets, "call", later)
        assert sync() == "success"
    assert reader.sessions >= 1  # the same reader reads over Storage Read again
    matrix.exact(env, model(call=first + later), "calls")

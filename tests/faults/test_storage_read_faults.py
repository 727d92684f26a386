"""Reading over the Storage Read API in a run: exact, and REST when the API refuses the caller."""

from __future__ import annotations

import dataclasses
import logging
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
from tests.storage_standins import Refusing, serving


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

"""Reading over the Storage Read API in a run: exact, and REST when the API refuses the caller."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from gong_sync import sources
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.runs import RunOptions
from gong_sync.sync import run_source
from tests.conftest import Env
from tests.factories import at, call, insert
from tests.faults.matrix import Scenario, model


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


class _Refusing(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A Storage Read endpoint that refuses every call, as BigQuery does without the role."""

    def service(self, details: Any) -> Any:
        def deny(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "Permission bigquery.readsessions.create denied",
            )
            return b""

        return grpc.unary_unary_rpc_method_handler(deny)


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((_Refusing(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_without_the_read_session_permission_a_run_reads_over_rest(
    env: Env, matrix: Scenario, refusing_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The Storage Read API refusing this caller is not an outage: REST reads the same result."""
    rows = [call(f"c{i:02d}", at(i // 4)) for i in range(60)]
    insert(env.bq, env.datasets, "call", rows)
    reader = _reader(env, storage_emulator_host=refusing_endpoint)
    with caplog.at_level(logging.WARNING, logger="gong_sync.bigquery_reader"):
        stats = run_source(sources.get("calls"), env.settings, reader, env.connect,
                           PostgresDeadLetterSink, RunOptions())  # fmt: skip
    assert stats.status == "success"
    assert reader.storage is None
    assert reader.sessions == 0
    assert "the Storage Read API is not available" in caplog.text
    assert "readsessions.create denied" in caplog.text
    matrix.exact(env, model(call=rows), "calls")

"""Postgres faults mid-page: a backend terminated, the server stopped, the server restarted.

The page in flight rolls back whole; committed pages stay; the function's retry, or the next
run, resumes from the watermark and neither loses nor repeats a row. These tests stop their
server, so they get one of their own rather than the session's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from gong_sync import cloud_function, sources
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import DeadLetter, PostgresDeadLetterSink
from gong_sync.local import postgres_server
from gong_sync.local.postgres_server import LocalPostgres
from gong_sync.pubsub_sink import PubSubDeadLetterSink
from gong_sync.settings import PostgresSettings
from gong_sync.sync import run_source
from tests.conftest import Cloud, Env, make_env, start_postgres
from tests.factories import at, call, insert, transcript
from tests.faults.matrix import Scenario, model
from tests.test_functions import post, pubsub_event

FAULT_ON_PAGE = 3  # the third page of the calls stream: two pages committed before it


@pytest.fixture(scope="module")
def own_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalPostgres, PostgresSettings]]:
    """A server this module may stop and start."""
    server, settings = start_postgres(tmp_path_factory, "pg-faults")
    yield server, settings
    server.stop()


@pytest.fixture
def env(own_server: tuple[LocalPostgres, PostgresSettings], bq_host: str) -> Env:
    """A test's own database, on this module's server (the `cloud` fixture uses it too)."""
    return make_env(own_server[1], bq_host)


def _start_again(server: LocalPostgres, port: int) -> None:
    """Start the stopped server on its old port, as a restarted Cloud SQL keeps its address."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(postgres_server, "free_port", lambda: port)
        server.start()


def _seed(env: Env) -> Any:
    calls = [call(f"c{i:02d}", at(i // 3)) for i in range(30)]  # pages of 7 cut through ties
    monologues = [transcript(f"c{i:02d}", 0, at(i // 3)) for i in range(30)]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", monologues)
    return model(call=calls, transcript=monologues)


def _on_page(n: int, fault: Callable[[Any], None], base: type[Sink]) -> type[Sink]:
    """A dead-letter sink that calls fault(connection) in page n, after its writes, pre-commit."""

    class FaultySink(base):  # type: ignore[misc,valid-type]
        pages = 0

        def publish(self, letters: Sequence[DeadLetter]) -> None:
            FaultySink.pages += 1
            if FaultySink.pages == n:
                fault(getattr(self, "ledger", self).conn)  # the Pub/Sub sink's ledger shares it
            super().publish(letters)

    return FaultySink


def _pid(conn: Any) -> int:
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    (pid,) = cur.fetchone()
    return int(pid)


Fault = Callable[[Env, LocalPostgres, int], Callable[[Any], None]]
Sink = PostgresDeadLetterSink | PubSubDeadLetterSink


def _terminate(env: Env, server: LocalPostgres, port: int) -> Callable[[Any], None]:
    """pg_terminate_backend on the run's own connection: a dropped connection."""

    def terminate(conn: Any) -> None:
        env.query("SELECT pg_terminate_backend(%s)", _pid(conn))

    return terminate


def _stop(env: Env, server: LocalPostgres, port: int) -> Callable[[Any], None]:
    """A fast shutdown of the whole server; it comes back only after the run has failed."""

    def stop(conn: Any) -> None:
        server.stop()

    return stop


def _restart(env: Env, server: LocalPostgres, port: int) -> Callable[[Any], None]:
    """A fast shutdown and a start on the same port, as a restarted Cloud SQL keeps its address."""

    def restart(conn: Any) -> None:
        server.stop()
        _start_again(server, port)

    return restart


@pytest.mark.parametrize("fault", [_terminate, _stop], ids=["terminated", "stopped"])
def test_a_postgres_fault_mid_page_fails_the_run_cleanly_and_the_rerun_completes(
    env: Env, own_server: tuple[LocalPostgres, PostgresSettings], matrix: Scenario, fault: Fault
) -> None:
    server, settings = own_server
    data = _seed(env)
    sink = _on_page(FAULT_ON_PAGE, fault(env, server, settings.port), PostgresDeadLetterSink)
    try:
        with pytest.raises(Exception, match=r"(?i)terminat|shut|connection|network|closed"):
            run_source(
                sources.get("calls"),
                env.settings,
                BigQueryReader(env.bq, env.settings.bigquery),
                env.connect,
                sink,
            )
    finally:
        if not server.owned:  # stopped by the fault
            _start_again(server, settings.port)
    # The two pages before the fault stayed, exactly; the page in flight left no trace.
    first = sorted(data["call"], key=lambda c: (c["_fivetran_synced"], c["id"]))[:14]
    matrix.exact(env, model(call=first), "calls")
    # A stopped server leaves nowhere to record the failure: the raised error (and Pub/Sub's
    # redelivery) is the record. A terminated connection is replaced to record it.
    status = [] if fault is _stop else [("failed",)]
    assert env.query("SELECT last_status FROM sync_status") == status
    assert env.sync().status == "success"
    matrix.exact(env, data, "calls", "transcripts")


@pytest.mark.parametrize("fault", [_terminate, _restart], ids=["terminated", "restarted"])
def test_a_postgres_fault_mid_page_is_retried_within_the_function(
    cloud: Cloud,
    own_server: tuple[LocalPostgres, PostgresSettings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    matrix: Scenario,
    fault: Fault,
) -> None:
    server, settings = own_server
    data = _seed(cloud.env)
    injected: list[bool] = []
    inject = fault(cloud.env, server, settings.port)

    def once(conn: Any) -> None:
        injected.append(True)
        inject(conn)

    sink = _on_page(FAULT_ON_PAGE, once, PubSubDeadLetterSink)
    monkeypatch.setattr(cloud_function, "PubSubDeadLetterSink", sink)
    monkeypatch.setattr(cloud_function, "BACKOFF_SECONDS", 0.05)
    with caplog.at_level(logging.WARNING):
        response = post("sync_calls", pubsub_event({"sources": ["calls"]}))
    assert response.status_code == 200, response.data
    assert injected == [True]
    assert any("transient failure, retrying" in r.getMessage() for r in caplog.records)
    matrix.exact(cloud.env, data, "calls", "transcripts")
    assert cloud.env.query("SELECT last_status FROM sync_status") == [("success",)]

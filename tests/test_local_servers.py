"""Local servers start on ports other processes race them for, or say why not.

A port found free can be taken before the server binds it (a CI run lost its BigQuery
emulator this way): each server is started again on fresh ports.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from gong_sync.local import bigquery_emulator, ports, postgres_server, pubsub_emulator
from gong_sync.local.bigquery_emulator import LocalBigQuery
from gong_sync.local.ports import ExitedDuringStartup, retry_port_races
from gong_sync.local.postgres_server import LocalPostgres
from gong_sync.local.pubsub_emulator import PubSubEmulator
from tests.conftest import reachable_tmp, require


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as if it took it after we found it free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _first_one_taken(monkeypatch: pytest.MonkeyPatch, module: ModuleType, taken: int) -> list[int]:
    """Make the module's free_port hand out the taken port first; returns what it handed."""
    handed: list[int] = []

    def free_port() -> int:
        handed.append(taken if not handed else ports.free_port())
        return handed[-1]

    monkeypatch.setattr(module, "free_port", free_port)
    return handed


def test_a_start_that_exits_is_tried_again_and_then_given_up() -> None:
    """Only an exit during start-up is retried, at most `attempts` times."""
    calls: list[int] = []

    def exits_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ExitedDuringStartup("port taken")
        return "up"

    assert retry_port_races("x", exits_twice) == "up"
    calls.clear()
    with pytest.raises(ExitedDuringStartup):
        retry_port_races("x", exits_twice, attempts=2)
    assert len(calls) == 2

    def times_out() -> str:
        calls.append(1)
        raise TimeoutError("silent")

    calls.clear()
    with pytest.raises(TimeoutError):
        retry_port_races("x", times_out)
    assert len(calls) == 1  # alive but silent: another port would not help


def test_the_bigquery_emulator_starts_again_on_fresh_ports(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its REST port was taken: it exits, and starts on two other ports."""
    handed = _first_one_taken(monkeypatch, bigquery_emulator, taken_port)
    emulator = LocalBigQuery(tmp_path)
    try:
        host = emulator.start()
    finally:
        emulator.stop()
    assert host != f"127.0.0.1:{taken_port}"
    assert len(handed) == 4  # two ports, twice


def test_a_bigquery_emulator_that_cannot_start_says_why(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attempt fails: the error carries the end of the emulator's own log."""
    monkeypatch.setattr(bigquery_emulator, "free_port", lambda: taken_port)
    with pytest.raises(RuntimeError, match="did not start") as failed:
        LocalBigQuery(tmp_path).start(attempts=2)
    assert "the end of" in str(failed.value)
    assert "SystemExit" in str(failed.value) or "address" in str(failed.value).lower()


def test_postgres_starts_again_on_a_fresh_port(
    tmp_path_factory: pytest.TempPathFactory, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_ctl fails with "Address already in use": a second port, and the server is up."""
    handed = _first_one_taken(monkeypatch, postgres_server, taken_port)
    server = LocalPostgres(reachable_tmp(tmp_path_factory, "pg_race") / "data")
    try:
        settings = server.start()
    finally:
        server.stop()
    assert handed[0] == taken_port
    assert settings.port == handed[-1] != taken_port


def test_the_pubsub_emulator_starts_again_on_a_fresh_port(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a taken port the emulator logs a BindException and lives on: stopped, and moved."""
    require(pubsub_emulator.emulator_binary() is not None, "the Pub/Sub emulator is not installed")
    handed = _first_one_taken(monkeypatch, pubsub_emulator, taken_port)
    emulator = PubSubEmulator(tmp_path)
    try:
        host = emulator.start()
    finally:
        emulator.stop()
    assert handed[0] == taken_port
    assert host == f"127.0.0.1:{handed[-1]}"

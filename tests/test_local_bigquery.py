"""The local BigQuery emulator starts on ports other processes race it for, or says why not."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gong_sync.local import bigquery_emulator
from gong_sync.local.bigquery_emulator import LocalBigQuery


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as if it took it after we found it free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_an_emulator_whose_port_was_taken_starts_again_on_fresh_ports(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first port handed out is taken by the time the emulator binds it (a CI flake)."""
    handed: list[int] = []
    free = bigquery_emulator.free_port

    def first_one_taken() -> int:
        handed.append(taken_port if not handed else free())
        return handed[-1]

    monkeypatch.setattr(bigquery_emulator, "free_port", first_one_taken)
    emulator = LocalBigQuery(tmp_path)
    try:
        host = emulator.start()
    finally:
        emulator.stop()
    assert host != f"127.0.0.1:{taken_port}"
    assert len(handed) == 4  # two ports, twice


def test_an_emulator_that_cannot_start_says_why(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attempt fails: the error carries the end of the emulator's own log."""
    monkeypatch.setattr(bigquery_emulator, "free_port", lambda: taken_port)
    with pytest.raises(RuntimeError, match="did not start") as failed:
        LocalBigQuery(tmp_path).start(attempts=2)
    assert "the end of" in str(failed.value)
    assert "SystemExit" in str(failed.value) or "address" in str(failed.value).lower()

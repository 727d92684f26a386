"""Free loopback ports for local servers."""

from __future__ import annotations

import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class ExitedDuringStartup(RuntimeError):
    """A server exited, or said it could not bind, before it answered: its port was taken."""


def retry_port_races(name: str, start: Callable[[], T], attempts: int = 3) -> T:
    """Call start() (which picks fresh ports) again while its server exits during start-up.

    A port found free can be taken by another process before the server binds it, and the
    server then exits (a CI run lost its BigQuery emulator this way). Another port is the fix.
    """
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except ExitedDuringStartup:
            if attempt == attempts:
                raise
            log.warning("%s exited during start-up; starting it again on fresh ports", name)
    raise AssertionError("unreachable")


def logged_since(path: Path, offset: int, text: str) -> bool:
    """Whether a server's log says `text` after byte `offset` (its size when this start began)."""
    with path.open("rb") as log_file:
        log_file.seek(offset)
        return text.encode() in log_file.read()


def log_size(path: Path) -> int:
    """Where a start's own lines will begin in a log that earlier starts appended to."""
    return path.stat().st_size if path.exists() else 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float, alive: object = None) -> None:
    """Poll url until it answers any HTTP status, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise ExitedDuringStartup(f"server for {url} exited during start-up")
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")

"""A function process killed with SIGKILL mid-run, then the trigger redelivered: nothing lost,
nothing duplicated."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cloudevents.conversion import to_structured

from gong_sync.local.ports import free_port
from tests.conftest import Cloud
from tests.factories import at, call, insert, transcript
from tests.test_functions import pubsub_event

ROOT = Path(__file__).resolve().parents[2]


def _serve(cloud: Cloud, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **cloud.environ, "GONG_SYNC_PAGE_SIZE": "5"}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "functions-framework"), "--target", "sync_calls",
         "--source", str(ROOT / "functions" / "main.py"), "--signature-type", "cloudevent",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def _post(port: int, body: dict[str, object], timeout: float) -> int:
    headers, data = to_structured(pubsub_event(body))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data, dict(headers))
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return int(response.status)


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _post(port, {"sources": ["emails"]}, timeout=5)  # ignored by sync_calls: cheap
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("functions-framework did not start")


def test_sigkill_mid_run_then_redelivery_loses_and_duplicates_nothing(cloud: Cloud) -> None:
    insert(cloud.env.bq, cloud.env.datasets, "call", [call(f"c{i:03d}", at(i)) for i in range(60)])
    insert(cloud.env.bq, cloud.env.datasets, "transcript",
           [transcript(f"c{i:03d}", 0, at(i)) for i in range(60)])  # fmt: skip
    port = free_port()
    first = _serve(cloud, port)
    try:
        _wait_ready(port)
        import threading

        def trigger() -> None:
            with contextlib.suppress(OSError):  # the process dies under this request
                _post(port, {"sources": ["calls"]}, timeout=120)

        threading.Thread(target=trigger, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (n,) = cloud.env.query("SELECT count(*) FROM calls")[0]
            if n >= 10:
                break
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # mid-run, between or inside pages
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    (partial,) = cloud.env.query("SELECT count(*) FROM calls")[0]
    assert 10 <= partial < 60, partial

    second = _serve(cloud, port)  # Pub/Sub redelivers the same trigger to a new instance
    try:
        _wait_ready(port)
        assert _post(port, {"sources": ["calls"]}, timeout=120) == 200
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(10)
    assert cloud.env.query("SELECT count(*), count(DISTINCT gong_call_id) FROM calls") == [(60, 60)]
    assert cloud.env.query(
        "SELECT count(*), count(DISTINCT (gong_call_id, sequence_number)) FROM transcripts"
    ) == [(60, 60)]
    assert cloud.env.query("SELECT last_status FROM sync_status") == [("success",)]

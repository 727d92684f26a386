"""A function process killed with SIGKILL mid-run, then the trigger redelivered: nothing lost,
nothing duplicated.

The process is killed at the worst moment for atomicity, and always the same one: in the
third page, once its rows are written and before they commit with their watermark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from cloudevents.conversion import to_structured

from gong_sync.local.ports import free_port
from tests.conftest import Cloud
from tests.factories import at, call, insert, transcript
from tests.faults.matrix import Scenario, model
from tests.test_functions import pubsub_event

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "functions" / "main.py"
PAGE_SIZE = 5
KILL_ON_PAGE = 3  # two pages (10 calls) committed before it

# sync_calls as deployed, except that it parks in page N after its writes, before its commit
# (where the page's dead letters are published), and says so in a file: the test kills it there.
PARKED = """
import importlib.util
import pathlib
import time

from gong_sync import cloud_function

_spec = importlib.util.spec_from_file_location("deployed_main", {main!r})
_main = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_main)
sync_calls = _main.sync_calls
_publish = cloud_function.PubSubDeadLetterSink.publish
_pages = []


def _park(self, letters):
    _pages.append(1)
    if len(_pages) == {page}:
        pathlib.Path({marker!r}).touch()
        time.sleep(600)
    _publish(self, letters)


cloud_function.PubSubDeadLetterSink.publish = _park
"""


def _serve(cloud: Cloud, port: int, source: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **cloud.environ, "GONG_SYNC_PAGE_SIZE": str(PAGE_SIZE)}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "functions-framework"), "--target", "sync_calls",
         "--source", str(source), "--signature-type", "cloudevent",
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


def test_sigkill_mid_run_then_redelivery_loses_and_duplicates_nothing(
    cloud: Cloud, matrix: Scenario, tmp_path: Path
) -> None:
    calls = [call(f"c{i:03d}", at(i)) for i in range(60)]
    monologues = [transcript(f"c{i:03d}", 0, at(i)) for i in range(60)]
    insert(cloud.env.bq, cloud.env.datasets, "call", calls)
    insert(cloud.env.bq, cloud.env.datasets, "transcript", monologues)
    marker = tmp_path / "parked"
    parked = tmp_path / "parked_main.py"
    parked.write_text(PARKED.format(main=str(MAIN), page=KILL_ON_PAGE, marker=str(marker)))
    port = free_port()
    first = _serve(cloud, port, parked)
    try:
        _wait_ready(port)

        def trigger() -> None:
            with contextlib.suppress(OSError):  # the process dies under this request
                _post(port, {"sources": ["calls"]}, timeout=120)

        threading.Thread(target=trigger, daemon=True).start()
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, "the function never reached the page to kill in"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # mid-page: rows written, not committed
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    (partial,) = cloud.env.query("SELECT count(*) FROM calls")[0]
    assert partial == PAGE_SIZE * (KILL_ON_PAGE - 1), partial  # the killed page rolled back

    second = _serve(cloud, port, MAIN)  # Pub/Sub redelivers the same trigger to a new instance
    try:
        _wait_ready(port)
        assert _post(port, {"sources": ["calls"]}, timeout=120) == 200
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(10)
    matrix.exact(cloud.env, model(call=calls, transcript=monologues), "calls", "transcripts")
    assert cloud.env.query("SELECT last_status FROM sync_status") == [("success",)]

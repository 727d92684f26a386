"""The deployed topology on this machine (`make cloud-local`): the program's functions on
Python 3.12 from its own archive, behind Cloud Run's instance limit, fed by the program's
push subscriptions, with the scheduler's payload and the real gcloud publishing to it."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1

from gong_sync import sources, trigger
from gong_sync.local import demo_data
from gong_sync.local.pubsub_emulator import emulator_binary
from gong_sync.settings import BigQuerySettings, ConfigError, Settings
from gong_sync_infra import platform
from gong_sync_infra.cloud_local import log_entries, workspace
from gong_sync_infra.cloud_local.cloud_run import CloudRunService, Code
from gong_sync_infra.cloud_local.harness import CloudLocal, HarnessOptions
from gong_sync_infra.cloud_local.program import Function
from tests import test_demo_content as content
from tests.conftest import Env, reachable_tmp, require, run_cli
from tests.factories import call, dml, insert

pytestmark = pytest.mark.services  # it starts its own: the harness
ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".local" / "cloud-local" / "venvs"  # what `make cloud-local` installs, shared
SOURCES = tuple(sources.SOURCES)
# Our own knobs, not the platform's: small pages and a 1 s budget make each source's full
# refresh a chain of continuations on the demo data. Only calls has pages enough never to
# finish inside 1 s; the others stop after each first commit (a budget spent at once).
OVERRIDES = {"GONG_SYNC_PAGE_SIZE": "25", "GONG_SYNC_PAGES_PER_QUERY": "2",
             "GONG_SYNC_TIME_BUDGET_SECONDS": "1"}  # fmt: skip
ONE_COMMIT_A_RUN = {"GONG_SYNC_TIME_BUDGET_SECONDS": "0.001"}
BY_FUNCTION = {f"gong-sync-sync-{s}": ONE_COMMIT_A_RUN for s in SOURCES if s != "calls"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudLocal]:
    require(emulator_binary() is not None, "the Pub/Sub emulator (gcloud + Java) is not installed")
    try:
        workspace.find_python("3.12")
    except ConfigError as exc:
        require(False, str(exc))
    root = reachable_tmp(tmp_path_factory, "cloud-local")  # Postgres runs unprivileged
    options = HarnessOptions(
        root=root, venvs=VENVS, overrides=OVERRIDES, function_overrides=BY_FUNCTION
    )
    with CloudLocal(options) as harness:
        yield harness


def _env(cloud: CloudLocal) -> Env:
    """The harness's target database and BigQuery, for the reference checks."""
    bigquery = BigQuerySettings(
        project=cloud.bigquery.project, gong_dataset=cloud.datasets["gong"],
        salesforce_dataset=cloud.datasets["salesforce"], storage_emulator_host=cloud.storage_host,
    )  # fmt: skip
    return Env(Settings(postgres=cloud.postgres, bigquery=bigquery), cloud.bigquery)


def _runs(cloud: CloudLocal) -> list[dict[str, Any]]:
    """Every run summary the functions logged, with its entry's labels."""
    return [
        {**e["jsonPayload"]["run"], "labels": e["labels"], "time": e["jsonPayload"]["time"]}
        for e in cloud.entries()
        if "run" in e["jsonPayload"]
    ]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def _finished(cloud: CloudLocal, source: str) -> bool:
    runs = [r for r in _runs(cloud) if r["source"] == source and r["status"] != "skipped"]
    return bool(runs) and runs[-1]["status"] == "success" and not runs[-1]["continuation_needed"]


def _pull(cloud: CloudLocal, subscription: str) -> list[Any]:
    path = f"projects/{cloud.topology.project}/subscriptions/{subscription}"
    with pubsub_v1.SubscriberClient() as subscriber:
        got = subscriber.pull(request={"subscription": path, "max_messages": 1000}, timeout=30)
    return [m.message for m in got.received_messages]


def test_a_full_refresh_through_continuations_with_ticks_and_a_resync_is_exact(
    cloud: CloudLocal,
) -> None:
    """Everything the platform does to our messages, and nothing lost or run twice."""
    demo = demo_data.generate(1)
    resync = _refresh_with_ticks_and_a_resync(cloud, demo)
    # A request for a busy source is redelivered with the policy's backoff (10 s doubling):
    # wait for its answer, then for every other redelivery.
    _wait(lambda: any(s.message_id == resync and s.status == 200 for s in cloud.served),
          900, "the resync to be delivered")  # fmt: skip
    _wait(lambda: cloud.idle(25), 900, "every redelivery to be answered")

    runs = _runs(cloud)
    # The resync ran, once, after answers of "busy" while the chain held the source.
    answered = [s.status for s in cloud.served if s.message_id == resync]
    assert answered[-1] == 200, answered
    assert answered.count(200) == 1, answered
    assert [r["status"] for r in runs if r["labels"]["event_id"] == resync] == ["success"]
    # Continuations happened, and no two runs of a source overlapped.
    for source in SOURCES:
        mine = [r for r in runs if r["source"] == source and r["status"] != "skipped"]
        assert sum(r["continuation_needed"] for r in mine) >= 1, source
        # From its lock taken to its summary line, logged before the lock goes with its session.
        spans = sorted((_time(r["started_at"]), _time(r["time"])) for r in mine)
        for (_, before), (after, _) in itertools.pairwise(spans):
            assert after >= before, f"two {source} runs at once"
    # The functions read their long results over the Storage Read API, as deployed.
    assert sum(r["storage_reads"] for r in runs if r["source"] == "calls") >= 1
    _assert_everything_kept(cloud, demo)


def _refresh_with_ticks_and_a_resync(cloud: CloudLocal, demo: dict[str, Any]) -> str:
    """A full refresh of every source, ticks while its chains run, and an ids resync mid-way.

    Once the first calls run has read the oldest call, that call changes where no cursor
    moves: only the explicit ids resync (its message id is returned) brings it over.
    """
    full = trigger.Trigger(mode="full_refresh")
    cloud.publish("sync-trigger", json.dumps(full.to_json()).encode(),
                  **trigger.attributes_for(full.sources))  # fmt: skip
    stop_ticks = threading.Event()

    def ticks() -> None:  # the scheduler, firing often while the chains run
        while not stop_ticks.wait(4):
            cloud.tick()

    ticker = threading.Thread(target=ticks, daemon=True)
    ticker.start()
    try:
        _wait(lambda: any(r["source"] == "calls" and r["continuation_needed"]
                          for r in _runs(cloud)), 300, "the first calls continuation")  # fmt: skip
        oldest = min(demo["call"], key=lambda c: (c["_fivetran_synced"], c["id"]))
        project, gong = cloud.bigquery.project, cloud.datasets["gong"]
        dml(cloud.bigquery, f"UPDATE `{project}.{gong}.call` SET title = 'resynced' "
            "WHERE id = @id", id=oldest["id"])  # fmt: skip
        oldest["title"] = "resynced"
        ids = trigger.Trigger(sources=("calls",), ids=(oldest["id"],))
        resync = cloud.publish("sync-trigger", json.dumps(ids.to_json()).encode(),
                               **trigger.attributes_for(ids.sources))  # fmt: skip
        _wait(lambda: all(_finished(cloud, s) for s in SOURCES), 600, "every chain to end")
    finally:
        stop_ticks.set()
        ticker.join()
    return resync


def _assert_everything_kept(cloud: CloudLocal, demo: dict[str, Any]) -> None:
    """No 429, nothing dead-lettered but bad records, content exact, alerts one per page."""
    assert [s for s in cloud.served if s.status == 429] == []
    letters = _pull(cloud, "sync-dead-letter-archive")
    assert [dict(m.attributes) for m in letters
            if m.attributes.get("kind") != "bad_record"] == []  # fmt: skip
    # Content: exactly what the same checks expect of an in-process sync of the demo.
    env = _env(cloud)
    for check in content.REFERENCE_CHECKS.values():  # every registered target
        check(env, demo)
    stored = env.query("SELECT count(*) FROM dead_letters")[0][0]
    assert len(letters) == stored  # each bad record reached the topic once
    # Alerts: one post per page of bad records, none about a trigger.
    posts = [m["text"] for m in cloud.slack.messages]
    assert posts
    assert not [p for p in posts if "undeliverable" in p or "rejected trigger" in p]


def _time(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_every_log_line_is_an_entry_the_metrics_read(cloud: CloudLocal) -> None:
    """The program's log-based metrics over the lines the instances really wrote."""
    entries = list(cloud.entries())
    assert entries
    # One entry per record: functions-framework's own gen2 handler printed each a second
    # time without a severity until log.configure removed it behind its LocalProxy.
    assert [e for e in entries if e["severity"] == "DEFAULT"] == []
    metrics = cloud.topology.metrics

    def seen(name: str) -> list[dict[str, Any]]:
        return [e for e in entries if log_entries.matches(metrics[name]["filter"], e)]

    summaries = [e for e in entries if "run" in e["jsonPayload"]]
    ran = [e for e in summaries if e["jsonPayload"]["run"]["status"] != "skipped"]
    assert seen("gong_sync/rows_synced") == ran
    successes = [e for e in ran if e["jsonPayload"]["run"]["status"] == "success"]
    assert seen("gong_sync/successful_runs") == successes
    for name in ("gong_sync/rows_synced", "gong_sync/successful_runs", "gong_sync/errors"):
        (label,) = metrics[name]["labelExtractors"].values()
        for e in seen(name):
            service = e["resource"]["labels"]["service_name"]
            assert service == f"gong-sync-sync-{log_entries.extract(label, e)}", name


def _readme_gcloud_command() -> list[str]:
    """The README's command for gcloud against the emulator, as words."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"^CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=.*\\\n.*gcloud pubsub.*$",
                      readme, re.MULTILINE)  # fmt: skip
    assert found, "the README's gcloud-against-the-emulator command is gone"
    return shlex.split(found[0].replace("\\\n", " "))


def test_the_readmes_gcloud_resync_results_in_the_run(cloud: CloudLocal, tmp_path: Path) -> None:
    words = _readme_gcloud_command()
    settings = dict(w.split("=", 1) for w in words if w.startswith("CLOUDSDK_"))
    settings["CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB"] = f"http://{cloud.pubsub_host}/"
    command = [w for w in words if not w.startswith("CLOUDSDK_")]
    assert cloud.topology.project == command[command.index("--project") + 1]
    done = subprocess.run(  # the real gcloud, in a configuration of this test's own
        command, env={**os.environ, **settings, "CLOUDSDK_CONFIG": str(tmp_path)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (message_id,) = re.findall(r"- '(\d+)'", done.stdout)

    def ran() -> list[str]:
        return [r["status"] for r in _runs(cloud) if r["labels"]["event_id"] == message_id]

    _wait(lambda: bool(ran()), 120, f"a run of message {message_id}: {cloud.served[-5:]}")
    assert ran()[0] in ("success", "partial")  # partial: it goes on in a continuation


def test_the_instance_limit_queues_then_answers_429(cloud: CloudLocal, tmp_path: Path) -> None:
    """The stand-in itself: one instance, a slow request, a second one waits, then 429."""
    code = tmp_path / "workspace"
    code.mkdir()
    (code / "main.py").write_text(
        "import time\n\ndef slow(request):\n    time.sleep(float(request.args.get('s', 0)))\n"
        "    return 'ok'\n"
    )
    function = Function(name="slow", entry_point="slow", runtime="python312", env={},
                        max_instances=1, concurrency=1, timeout_seconds=30,
                        signature_type="http", uri="")  # fmt: skip
    venv = next(VENVS.glob("python312-*"))
    service = CloudRunService(
        function, {"PATH": "/usr/bin:/bin"}, Code(code, venv, tmp_path / "logs"),
        pending_seconds=1,
    )  # fmt: skip
    try:
        assert service.handle("/?s=0", b"", {})[0] == 200  # a cold start, then served
        results: list[int] = []
        slow = threading.Thread(target=lambda: results.append(service.handle("/?s=4", b"", {})[0]))
        slow.start()
        time.sleep(0.5)
        began = time.monotonic()
        assert service.handle("/?s=0", b"", {})[0] == 429
        assert 1 <= time.monotonic() - began < 3  # it waited for a free instance first
        slow.join()
        assert results == [200]
        assert [s.status for s in service.served] == [200, 429, 200]
    finally:
        service.stop()


def test_the_harness_runs_the_programs_functions_with_gen2s_environment(
    cloud: CloudLocal,
) -> None:
    """Nothing restated: the services are the program's, and its variables reach them."""
    functions = cloud.topology.functions
    assert set(cloud.services) == set(functions)
    # The build sets no signature type: functions-framework serves http unless main.py's
    # decorators say otherwise, which every request through the harness relies on.
    assert {f.signature_type for f in functions.values()} == {None}
    for name, service in cloud.services.items():
        program_env = dict(functions[name].env)
        program_env.pop("INSTANCE_CONNECTION_NAME", None)  # the one seam: a local Postgres
        assert program_env.items() <= service.env.items(), name
        assert service.capacity == functions[name].max_instances
    assert {s.name for s in cloud.topology.subscriptions} >= {
        f"gong-sync-sync-{s}" for s in SOURCES
    }
    schedules = {s.schedule: (s.topic, json.loads(s.data)) for s in cloud.topology.schedules}
    assert schedules == {
        platform.HOURLY: ("sync-trigger", {"mode": "incremental"}),
        platform.DAILY: ("sync-trigger", platform.DAILY_MESSAGE),
        platform.WEEKLY: ("sync-trigger", platform.WEEKLY_MESSAGE),
    }


def test_check_live_passes_against_the_deployed_topology(cloud: CloudLocal) -> None:
    """The post-deploy health check, with a deployed function's own settings, as CI runs it."""
    (function, *_) = cloud.sync_functions
    env = dict(cloud.services[function.name].env)
    for local in ("PATH", "HOME", "LANG"):  # the instance's, not the operator's
        env.pop(local, None)
    done = run_cli(env, "check", "--live", "--json", "--timeout", "240", "--sample", "20")
    findings = {f["check"]: f for f in json.loads(done.stdout or "[]")}
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in SOURCES:
        assert findings[f"live {name}: run"]["level"] in ("ok", "warning"), name
        verified = findings[f"live {name}: verify"]
        # The demo holds deletes the cursor cannot see: drift reconciliation repairs.
        assert verified["level"] == "ok" or "verify --fix" in verified["message"], verified
    assert findings["pubsub sync-trigger"]["level"] == "ok"


def test_the_daily_reconciliation_repairs_what_hourly_runs_cannot_see(
    cloud: CloudLocal,
) -> None:
    """An invisible delete and a row stamped before the lookback: the daily verify fixes both."""
    cloud.tick()  # synced first (a no-op when an earlier test already did)
    _wait(lambda: all(_finished(cloud, s) for s in SOURCES), 600, "every source to be synced")
    _wait(lambda: cloud.idle(5), 120, "the functions to be idle")
    env = _env(cloud)
    project, gong = cloud.bigquery.project, cloud.datasets["gong"]
    (gone,) = env.query("SELECT gong_call_id FROM calls c WHERE EXISTS (SELECT 1 FROM"
                        " transcripts t WHERE t.gong_call_id = c.gong_call_id)"
                        " ORDER BY 1 LIMIT 1")[0]  # fmt: skip
    # Deleted in Fivetran without _fivetran_synced moving: no cursor sees it.
    dml(cloud.bigquery, f"UPDATE `{project}.{gong}.call` SET _fivetran_deleted = TRUE"
        " WHERE id = @id", id=gone)  # fmt: skip
    # Landed late, stamped a day before anything the watermarks' lookback reads.
    stamp = demo_data.BASE_INSTANT - demo_data.SYNC_WINDOW - timedelta(days=1)
    insert(cloud.bigquery, cloud.datasets, "call", [call("late-arrival", stamp)])
    cloud.tick()  # an hourly run sees neither
    _wait(lambda: cloud.idle(5), 300, "the hourly runs")
    assert env.query("SELECT count(*) FROM calls WHERE gong_call_id = %s", gone) == [(1,)]
    assert env.query("SELECT count(*) FROM calls WHERE gong_call_id = 'late-arrival'") == [(0,)]

    cloud.tick(platform.DAILY)
    _wait(lambda: len(env.query("SELECT 1 FROM sync_status WHERE last_verified_at IS NOT NULL"))
          == len(SOURCES), 600, "every source's reconciliation")  # fmt: skip
    assert env.query("SELECT count(*) FROM calls WHERE gong_call_id = %s", gone) == [(0,)]
    assert env.query("SELECT count(*) FROM transcripts WHERE gong_call_id = %s", gone) == [(0,)]
    assert env.query("SELECT count(*) FROM calls WHERE gong_call_id = 'late-arrival'") == [(1,)]
    (calls,) = env.query("SELECT last_verify FROM sync_status WHERE source = 'calls'")[0]
    assert calls["fixed"] is True
    assert calls["remaining"] == {}
    for source in SOURCES:  # nothing left: every source agrees with BigQuery
        assert env.verify(source).clean, source

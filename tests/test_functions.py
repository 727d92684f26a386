"""The Cloud Functions over HTTP: functions-framework serving real CloudEvents (DESIGN §1, §4)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from gong_sync import alerting, cloud_function, verify
from gong_sync.local.slack_standin import SlackStandIn
from tests.conftest import Cloud
from tests.factories import at, call, insert
from tests.pubsub_emulator import pull_all

MAIN = "functions/main.py"


def client(target: str) -> Any:
    """A test client of one entrypoint, as functions-framework serves it."""
    import functions_framework

    return functions_framework.create_app(target, MAIN, "cloudevent").test_client()


def pubsub_event(
    body: Any, *, raw: bytes | None = None, age: timedelta = timedelta(0), **attributes: str
) -> CloudEvent:
    """The CloudEvent Eventarc delivers for a Pub/Sub message."""
    data = raw if raw is not None else json.dumps(body).encode()
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/sync-trigger",
            "time": (datetime.now(UTC) - age).isoformat(),
        },
        {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes,
                     "messageId": "1"}, "subscription": "projects/p/subscriptions/s"},
    )  # fmt: skip


def post(target: str, event: CloudEvent, binary: bool = False) -> Any:
    headers, body = to_binary(event) if binary else to_structured(event)
    return client(target).post("/", headers=headers, data=body)


def seed_calls(cloud: Cloud) -> None:
    insert(cloud.env.bq, cloud.env.datasets, "call", [
        call("c1", at(0)), call("c2", at(0)), call("bad", at(0), title="x\x00y"),
    ])  # fmt: skip


def calls(cloud: Cloud) -> list[Any]:
    return [r[0] for r in cloud.env.query("SELECT gong_call_id FROM calls ORDER BY 1")]


def test_structured_event_runs_its_source_and_dead_letters_bad_records(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    seed_calls(cloud)
    with caplog.at_level(logging.INFO):
        response = post("sync_calls", pubsub_event({"mode": "incremental"}))
    assert response.status_code == 200, response.data
    assert calls(cloud) == ["c1", "c2"]
    (letter,) = pull_all(cloud.dead_letters, expect=1, timeout=20)
    assert letter.attributes["kind"] == "bad_record"
    # The letter names the run that rejected it, as the run's own summary line does.
    (run,) = [r.fields["run"] for r in caplog.records if "run" in getattr(r, "fields", {})]
    assert letter.attributes["run_id"] == run["run_id"]
    assert letter.attributes["source"] == "calls"
    assert letter.attributes["key"] == '["bad"]'
    assert letter.attributes["reason"].startswith("title: NUL byte")
    assert json.loads(letter.data)["title"] == "x\u2400y"


def test_binary_event_works_too_and_other_sources_are_ignored(cloud: Cloud) -> None:
    seed_calls(cloud)
    ignored = post("sync_emails", pubsub_event({"sources": ["calls"]}), binary=True)
    assert ignored.status_code == 200
    assert cloud.env.query("SELECT source FROM sync_status") == []
    response = post("sync_calls", pubsub_event({"sources": ["calls"]}), binary=True)
    assert response.status_code == 200, response.data
    assert calls(cloud) == ["c1", "c2"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "data: not valid JSON"),
        (json.dumps({"source": ["calls"]}).encode(), "source: unknown field"),
        (json.dumps({"mode": "sometimes"}).encode(), "mode: 'sometimes' is not"),
    ],
)
def test_a_malformed_trigger_is_acked_and_dead_lettered(
    cloud: Cloud, raw: bytes, reason: str
) -> None:
    response = post("sync_calls", pubsub_event(None, raw=raw))
    assert response.status_code == 200  # acked: a retry could never succeed
    (letter,) = pull_all(cloud.dead_letters, expect=1, timeout=20)
    assert letter.attributes["kind"] == "bad_trigger"
    assert letter.attributes["reason"].startswith(reason)
    assert cloud.env.query("SELECT source FROM sync_status") == []


def test_bad_base64_is_acked_and_dead_lettered(cloud: Cloud) -> None:
    event = pubsub_event({})
    event.data["message"]["data"] = "%%% not base64"
    assert post("sync_calls", event).status_code == 200
    (letter,) = pull_all(cloud.dead_letters, expect=1, timeout=20)
    assert letter.attributes["reason"] == "data: not valid base64"


def test_an_old_event_is_dropped_with_a_warning(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    seed_calls(cloud)
    with caplog.at_level(logging.WARNING):
        response = post("sync_calls", pubsub_event({}, age=timedelta(hours=2)))
    assert response.status_code == 200
    assert calls(cloud) == []
    assert any("dropping a trigger" in r.getMessage() for r in caplog.records)


def test_an_old_explicit_request_still_runs(cloud: Cloud) -> None:
    """No hourly trigger does an ids resync (or a window, or a full refresh): late, it runs."""
    seed_calls(cloud)
    response = post(
        "sync_calls", pubsub_event({"sources": ["calls"], "ids": ["c2"]}, age=timedelta(hours=2))
    )
    assert response.status_code == 200
    assert calls(cloud) == ["c2"]


def test_a_permanent_failure_returns_500_so_pubsub_redelivers(cloud: Cloud) -> None:
    cloud.env.bq.delete_table(f"{cloud.env.bq.project}.{cloud.env.datasets['gong']}.call")
    response = post("sync_calls", pubsub_event({}))
    assert response.status_code == 500
    assert cloud.env.query("SELECT last_status, error_details->>'type' FROM sync_status") == [
        ("failed", "NotFound")
    ]


def test_the_time_budget_stops_between_pages_and_publishes_a_continuation(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert(cloud.env.bq, cloud.env.datasets, "call", [call(f"c{i:02d}", at(i)) for i in range(30)])
    monkeypatch.setenv("GONG_SYNC_TIME_BUDGET_SECONDS", "0.001")
    cloud_function.runtime.cache_clear()
    assert post("sync_calls", pubsub_event({"sources": ["calls"]})).status_code == 200
    (follow,) = pull_all(cloud.triggers, expect=1, timeout=20)
    assert json.loads(follow.data) == {"mode": "incremental", "sources": ["calls"]}
    assert follow.attributes["continuation"] == "true"
    assert len(calls(cloud)) < 30
    assert cloud.env.query("SELECT last_status FROM sync_status") == [("partial",)]


def test_a_verify_longer_than_the_budget_continues_in_the_next_invocation(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys two a page and no time: each invocation stages some and publishes the same
    trigger; the last one compares, repairs and records."""
    insert(cloud.env.bq, cloud.env.datasets, "call", [call(f"c{i}", at(i)) for i in range(6)])
    assert post("sync_calls", pubsub_event({"sources": ["calls"]})).status_code == 200
    assert cloud.env.execute("DELETE FROM calls WHERE gong_call_id = 'c3'") == 1
    monkeypatch.setenv("GONG_SYNC_TIME_BUDGET_SECONDS", "0.001")
    monkeypatch.setattr(verify, "KEY_PAGE", 2)
    cloud_function.runtime.cache_clear()
    wanted = {"sources": ["calls"], "mode": "verify", "fix": True, "sample": 0}
    event, invocations = pubsub_event(wanted), 0
    while True:
        invocations += 1
        assert invocations < 20, "the verify never finished"
        assert post("sync_calls", event).status_code == 200
        follow = pull_all(cloud.triggers, expect=1, timeout=3)
        if not follow:
            break
        assert json.loads(follow[0].data) == wanted
        assert follow[0].attributes["continuation"] == "true"
        event = pubsub_event(wanted, continuation="true")
    assert invocations >= 3
    assert calls(cloud) == [f"c{i}" for i in range(6)]  # repaired
    (recorded,) = cloud.env.query("SELECT last_verify FROM sync_status")
    assert recorded[0]["found"] == {"calls": {"missing": 1}}
    assert recorded[0]["remaining"] == {}


def test_alerts_aggregate_a_page_of_bad_records_into_one_post(cloud: Cloud) -> None:
    slack = SlackStandIn()
    try:
        cloud.environ["GONG_SYNC_SLACK_WEBHOOK_URL"] = slack.url
        settings = cloud_function.Settings.from_env(cloud.environ)
        for i in range(3):
            event = pubsub_event({"title": "x"}, kind="bad_record", source="calls",
                                 reason="title: NUL byte", key=f'["k{i}"]', batch_index=str(i),
                                 batch_size="3", batch_reasons="3× title: NUL byte",
                                 run_id="abc123")  # fmt: skip
            alerting.handle_alert(event, settings)
        undeliverable = pubsub_event(
            {},
            CloudPubSubDeadLetterSourceSubscription="projects/p/subscriptions/sync-calls",
            CloudPubSubDeadLetterSourceDeliveryCount="5",
        )
        alerting.handle_alert(undeliverable, settings)
        posts = slack.wait_for(2, timeout=5)
    finally:
        slack.stop()
    assert len(posts) == 2
    assert "calls*: 3 dead letter(s) - 3× title: NUL byte" in posts[0]["text"]
    assert 'sample key: `["k0"]`' in posts[0]["text"]
    assert "labels.run_id%3D%22abc123%22" in posts[0]["text"]
    assert "trigger undeliverable after 5 attempts (sync-calls)" in posts[1]["text"]


def test_an_explicit_request_for_a_busy_source_is_redelivered_not_dropped(cloud: Cloud) -> None:
    from gong_sync import state

    seed_calls(cloud)
    holder = cloud.env.connect()
    assert state.try_lock(holder, "calls")
    try:
        busy = post("sync_calls", pubsub_event({"sources": ["calls"], "mode": "full_refresh"}))
        assert busy.status_code == 500  # Pub/Sub will redeliver it
        hourly = post("sync_calls", pubsub_event({"mode": "incremental"}))
        assert hourly.status_code == 200  # the running chain covers it
    finally:
        holder.close()
    assert (
        post("sync_calls", pubsub_event({"sources": ["calls"], "mode": "full_refresh"})).status_code
        == 200
    )
    assert calls(cloud) == ["c1", "c2"]


@pytest.fixture
def platform_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Cloud Functions gen2's LOG_EXECUTION_ID=true; the root logger is restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("LOG_EXECUTION_ID", "true")
    cloud_function.runtime.cache_clear()
    try:
        yield
    finally:
        root.handlers[:], root.level = handlers, level
        cloud_function.runtime.cache_clear()


def test_on_gen2_the_run_summary_and_errors_reach_cloud_logging_with_labels(
    cloud: Cloud, platform_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """functions-framework installs a WARNING root handler and its own execution_id label."""
    seed_calls(cloud)
    app = client("sync_calls")  # under LOG_EXECUTION_ID: the platform's logging setup
    headers, body = to_structured(pubsub_event({"sources": ["calls"]}))
    ok = app.post("/", headers={**headers, "Function-Execution-Id": "exec-1"}, data=body)
    assert ok.status_code == 200
    cloud.env.bq.delete_table(f"{cloud.env.bq.project}.{cloud.env.datasets['gong']}.call")
    failed = app.post("/", headers={**headers, "Function-Execution-Id": "exec-2"}, data=body)
    assert failed.status_code == 500
    captured = capfd.readouterr()
    lines = [json.loads(x) for x in (captured.out + captured.err).splitlines() if x[:1] == "{"]
    # One line per record: functions-framework's own root handler (behind a LocalProxy) must
    # not print it a second time, without a severity.
    assert [x for x in lines if "severity" not in x] == []
    runs = [x for x in lines if "run" in x]
    assert [x["severity"] for x in runs] == ["INFO", "ERROR"]  # the summary is not dropped
    for line, execution in zip(runs, ("exec-1", "exec-2"), strict=True):
        labels = line["logging.googleapis.com/labels"]
        assert labels["source"] == "calls"
        assert labels["run_id"] == line["run"]["run_id"]  # ours, beside the platform's
        assert labels["execution_id"] == execution
    errors = [x for x in lines if x.get("severity") == "ERROR"]
    assert errors
    assert all(x["logging.googleapis.com/labels"]["source"] == "calls" for x in errors)

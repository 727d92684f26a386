"""What an operator trips on, tried with the real parts: one letter per bad message, bodies
that real Pub/Sub sends, alert posts one can act on, ids that match nothing, and gcloud.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from gong_sync import alerting, cloud_function, sources, trigger
from gong_sync.local.slack_standin import SlackStandIn
from gong_sync.log import CloudLoggingFormatter
from gong_sync.pubsub_sink import reason_summary
from tests.conftest import Cloud, Env, run_cli
from tests.factories import at, call, insert
from tests.pubsub_emulator import create_pull_subscription, pull_all
from tests.test_functions import client, post, pubsub_event, seed_calls

ENTRYPOINTS = [f"sync_{name}" for name in sources.SOURCES]


def test_a_malformed_message_gives_one_dead_letter_whatever_reaches_it(cloud: Cloud) -> None:
    for body in ({"mode": "sometimes"}, {"sources": ["emails"], "ids": "e1"}):
        for target in ENTRYPOINTS:  # every subscription pushes it to its function
            assert post(target, pubsub_event(body)).status_code == 200
        (letter,) = pull_all(cloud.dead_letters, expect=2, timeout=10)
        assert letter.attributes["kind"] == "bad_trigger"
        assert letter.attributes["source"] == trigger.reporter(
            base64.b64encode(json.dumps(body).encode()).decode(), {}, list(sources.SOURCES)
        )


def _push_body(data: str | None, **attributes: str) -> dict[str, Any]:
    """The body a Pub/Sub push subscription POSTs (not a CloudEvent)."""
    message: dict[str, Any] = {"attributes": attributes, "messageId": "42",
                               "publishTime": "2026-12-01T10:00:00.000Z"}  # fmt: skip
    if data is not None:
        message["data"] = data
    return {"message": message, "subscription": "projects/p/subscriptions/sync-calls"}


def test_an_attribute_only_message_ends_in_one_clear_dead_letter_on_both_paths(
    cloud: Cloud,
) -> None:
    seed_calls(cloud)
    app = client("sync_calls")
    # Real Pub/Sub leaves `data` out; functions-framework rejects that body before our code
    # runs (event_conversion._is_raw_pubsub_payload needs message.data): Pub/Sub retries it
    # and dead-letters it, and the alert says what it was.
    real = app.post("/", json=_push_body(None, origin="cron"))
    assert real.status_code == 400
    # The emulator pushes "data": "" for the same message: we reject it, with the reason.
    emulated = app.post("/", json=_push_body("", origin="cron"))
    assert emulated.status_code == 200
    (letter,) = pull_all(cloud.dead_letters, expect=1, timeout=20)
    assert letter.attributes["reason"] == trigger.EMPTY
    assert cloud.env.query("SELECT source FROM sync_status") == []  # nothing ran
    undeliverable = alerting.describe(
        {"CloudPubSubDeadLetterSourceSubscription": "projects/p/subscriptions/sync-calls",
         "CloudPubSubDeadLetterSourceDeliveryCount": "5"}, None, "42")  # fmt: skip
    assert undeliverable is not None
    assert "no data: attributes only" in undeliverable["key"]


def test_alert_posts_link_to_the_message_and_name_every_reason(cloud: Cloud) -> None:
    slack = SlackStandIn()
    try:
        cloud.environ["GONG_SYNC_SLACK_WEBHOOK_URL"] = slack.url
        settings = cloud_function.Settings.from_env(cloud.environ)
        bad = pubsub_event({"data": base64.b64encode(b'{"mode": "x"}').decode()},
                           kind="bad_trigger", source="calls", reason="mode: 'x' is not ...",
                           event_id="evt-7")  # fmt: skip
        alerting.handle_alert(bad, settings)
        trigger_body = {"sources": ["calls"], "since": "2026-10-25T00:00:00Z"}
        undeliverable = pubsub_event(
            trigger_body,
            CloudPubSubDeadLetterSourceSubscription="projects/p/subscriptions/sync-calls",
            CloudPubSubDeadLetterSourceDeliveryCount="5",
            CloudPubSubDeadLetterSourceTopicPublishTime="2026-12-01T10:00:00.000Z",
        )
        alerting.handle_alert(undeliverable, settings)
        posts = [p["text"] for p in slack.wait_for(2, timeout=5)]
    finally:
        slack.stop()
    assert "labels.event_id%3D%22evt-7%22" in posts[0]
    assert 'message evt-7: {"mode": "x"}' in posts[0]
    assert "query=?" not in posts[1]  # filtered: the source's lines since the publication
    assert "labels.source%3D%22calls%22" in posts[1]
    assert "timestamp%3E%3D%222026-12-01T10%3A00%3A00.000Z%22" in posts[1]
    assert json.dumps(trigger_body) in posts[1]  # what to republish, not a publish time


def test_a_summary_of_reasons_says_how_many_it_leaves_out() -> None:
    from collections import Counter

    reasons = Counter({"a": 5, "b": 4, "c": 3, "d": 2, "e": 1})
    assert reason_summary(reasons) == "5× a; 4× b; 3× c; +2 more reason(s) (3 record(s))"
    assert reason_summary(Counter({"a": 2})) == "2× a"


def test_ids_that_match_nothing_are_named_in_the_log_and_in_sync_status(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    insert(env.bq, env.datasets, "call", [call("c1", at(0))])
    with caplog.at_level(logging.WARNING):
        stats = env.sync("calls", ids=("c1", "nope", "gone"))
    assert stats.status == "success"
    assert stats.ids_not_found == ["gone", "nope"]
    assert any("2 of 3 id(s) not found in BigQuery: gone, nope" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert env.query("SELECT error_details->'ids_not_found' FROM sync_status") == [
        (["gone", "nope"],)
    ]


class _JsonLines(logging.Handler):
    """Formats each record as Cloud Logging JSON when it is emitted (labels in force then)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(CloudLoggingFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines() -> Iterator[_JsonLines]:
    handler = _JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_a_busy_source_is_a_warning_with_its_label_and_still_a_500(
    cloud: Cloud, json_lines: _JsonLines
) -> None:
    from gong_sync import state

    holder = cloud.env.connect()
    assert state.try_lock(holder, "calls")
    try:
        busy = post("sync_calls", pubsub_event({"sources": ["calls"], "ids": ["c1"]}))
    finally:
        holder.close()
    assert busy.status_code == 500  # Pub/Sub redelivers it
    (line,) = [entry for entry in json_lines.lines if "is running" in entry["message"]]
    assert line["severity"] == "WARNING"
    assert line["logging.googleapis.com/labels"]["source"] == "calls"
    assert not [e for e in json_lines.lines if e["severity"] == "ERROR"]  # no traceback


def test_resync_on_the_emulator_needs_only_its_host_and_gcloud_does_the_same(
    env: Env, pubsub_host: str, tmp_path: Any
) -> None:
    from gong_sync.settings import EMULATOR_PROJECT
    from tests.pubsub_emulator import create_topic

    create_topic(EMULATOR_PROJECT, "sync-trigger")
    watch = create_pull_subscription(EMULATOR_PROJECT, "resync-watch", "sync-trigger")
    result = run_cli({"PUBSUB_EMULATOR_HOST": pubsub_host}, "resync", "--source", "calls",
                     "--since", "2026-10-25T00:00:00Z")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (published,) = pull_all(watch, expect=1, timeout=20)
    body = json.loads(published.data)
    assert body == {"mode": "incremental", "sources": ["calls"],
                    "since": "2026-10-25T00:00:00+00:00"}  # fmt: skip
    # The command it prints, run by the real gcloud against the emulator, publishes the same.
    (equivalent,) = [line for line in result.stdout.splitlines() if line.startswith("equivalent")]
    words = shlex.split(equivalent.removeprefix("equivalent: "))
    settings = dict(w.split("=", 1) for w in words if "=" in w and w.startswith("CLOUDSDK_"))
    command = [w for w in words if not w.startswith("CLOUDSDK_")]
    done = subprocess.run(  # in a gcloud configuration of this test's own
        command, env={**os.environ, **settings, "CLOUDSDK_CONFIG": str(tmp_path)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (again,) = pull_all(watch, expect=1, timeout=20)
    assert json.loads(again.data) == body
    # For one source: only that source's subscription lets it through (see tests/platform).
    assert dict(published.attributes) == dict(again.attributes) == {"source": "calls"}

"""End to end on the Pub/Sub emulator: push subscriptions with dead-letter policies deliver to
functions-framework serving the real functions over HTTP (DESIGN §1)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gong_sync import alerting, cloud_function, sources
from gong_sync.local.slack_standin import SlackStandIn
from tests import reference
from tests.conftest import Cloud
from tests.factories import at, call, insert, speaker, transcript
from tests.pubsub_emulator import (
    ServedFunction,
    create_push_subscription,
    create_topic,
    publish,
    pull_all,
    serve_function,
)

SOURCES = tuple(sources.SOURCES)


@dataclass
class Deployed:
    """The system of DESIGN §1, on this machine."""

    cloud: Cloud
    slack: SlackStandIn
    failing_log: Path
    fail_topic: str


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def deployed(cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    slack = SlackStandIn()
    failing_log = tmp_path / "failing.log"
    failing_log.touch()
    monkeypatch.setenv("GONG_SYNC_SLACK_WEBHOOK_URL", slack.url)
    monkeypatch.setenv("GONG_SYNC_PAGE_SIZE", "50")
    monkeypatch.setenv("FAILING_FUNCTION_LOG", str(failing_log))
    cloud_function.runtime.cache_clear()
    alerting.alert_settings.cache_clear()
    served: list[ServedFunction] = []
    project, n = cloud.project, cloud.trigger_topic.rsplit("-", 1)[-1]
    fail_topic = f"fail-trigger-{n}"
    create_topic(project, fail_topic)
    # Policies of the test's own (5 attempts, sub-second backoff), so a dead letter comes in
    # seconds: this is about what the functions do with one. The program's own policies
    # (20 attempts, 10-600 s) run in tests/platform/test_cloud_local.py.
    try:
        for source in SOURCES:
            fn = serve_function("functions/main.py", f"sync_{source}")
            served.append(fn)
            create_push_subscription(
                project, f"sync-{source}-{n}", cloud.trigger_topic, fn.url,
                dead_letter_topic=cloud.dead_letter_topic, max_delivery_attempts=5,
                ack_deadline_s=60,
            )  # fmt: skip
        failing = serve_function("tests/failing_function/failing.py", "always_fail")
        served.append(failing)
        create_push_subscription(
            project, f"sync-failing-{n}", fail_topic, failing.url,
            dead_letter_topic=cloud.dead_letter_topic, max_delivery_attempts=5,
        )  # fmt: skip
        alert = serve_function("functions/main.py", "alert")
        served.append(alert)
        create_push_subscription(project, f"alert-{n}", cloud.dead_letter_topic, alert.url)
        yield Deployed(cloud, slack, failing_log, fail_topic)
    finally:
        for fn in served:
            fn.stop()
        slack.stop()


def small_world() -> reference.Rows:
    """A little of every table; two bad calls in the first page of the call stream."""
    t = at(0)
    sf = {"_fivetran_synced": t, "_fivetran_deleted": False}
    return {
        "call": [call("c1", t), call("c2", t), call("c3", t, _fivetran_deleted=True),
                 call("nul", t, title="a\x00b"), call(None, t)],
        "call_speaker": [speaker("s1", "c1", t, talk_time=10.0),
                         speaker("s2", "c1", t, talk_time=30.0)],
        "call_participant": [],
        "users": [],
        "transcript": [transcript("c1", 0, t), transcript("c1", 1, t), transcript("c2", 0, t)],
        "call_context_integration": [
            {"call_id": "c1", "object_type": "Opportunity", "object_id": "006A", "name": "D",
             "value": "Open", **sf}],
        "email": [{"id": "e1", "subject": "Hi", "sent_at": t, "body": "<p>Hello &amp; bye</p>",
                   "thread_id": "th1", "direction": "Outbound", "headers": {"To": "x"},
                   "context": None, **sf}],
        "email_sender": [{"email_id": "e1", "email_address": "Me@Seller.example", "name": "Me",
                          **sf}],
        "email_recipient": [
            {"email_id": "e1", "email_address": "b@client.example", "name": "B", "type": "cc",
             **sf},
            {"email_id": "e1", "email_address": "A@client.example", "name": "A", "type": "to",
             **sf}],
        "opportunity": [{"id": "006A", "name": "Deal", "account_id": "001A", "owner_id": "005A",
                         "stage_name": "Open", "close_date": None, "amount": None,
                         "probability": None, "is_closed": False, "is_won": False,
                         "is_deleted": False, "last_modified_date": t, "system_modstamp": t,
                         **sf}],
        "account": [{"id": "001A", "name": "Acme", "is_deleted": False, **sf}],
        "user": [{"id": "005A", "name": "Ann", "email": "ann@seller.example", **sf}],
    }  # fmt: skip


def land(cloud: Cloud, data: reference.Rows) -> None:
    for table, rows in data.items():
        if rows:
            insert(cloud.env.bq, cloud.env.datasets, table, rows)


def content(cloud: Cloud) -> dict[str, list[Any]]:
    q = cloud.env.query
    return {
        "calls": q("SELECT gong_call_id, title FROM calls ORDER BY 1"),
        "call_speakers": q("SELECT gong_call_id, speaker_id, round(talk_time_percentage, 2)::text"
                           " FROM call_speakers ORDER BY 1, 2"),
        "transcripts": q("SELECT gong_call_id, sequence_number, text FROM transcripts"
                         " ORDER BY 1, 2"),
        "call_opportunities": q("SELECT * FROM call_opportunities ORDER BY 1, 2"),
        "emails": q("SELECT gong_email_id, sender_email, recipients, body_snippet FROM emails"),
        "opportunities": q("SELECT gong_opportunity_id, account_name, owner_email"
                           " FROM opportunities"),
    }  # fmt: skip


def expected(data: reference.Rows) -> dict[str, list[Any]]:
    calls, _ = reference.calls(data)
    speakers, _ = reference.speakers(data)
    monologues, _ = reference.transcripts(data)
    emails = reference.emails(data)
    opps = reference.opportunities(data)
    return {
        "calls": [(k, calls[k][1]) for k in sorted(calls)],
        "call_speakers": [(k[0], k[1], str(speakers[k][8])) for k in sorted(speakers)],
        "transcripts": [(k[0], k[1], monologues[k][6]) for k in sorted(monologues)],
        "call_opportunities": sorted(reference.call_opportunities(data)[0]),
        "emails": [(k, emails[k][3], emails[k][4], emails[k][5]) for k in sorted(emails)],
        "opportunities": [(k, opps[k][3], opps[k][4]) for k in sorted(opps)],
    }


def runs_done(cloud: Cloud, after: Any = None) -> bool:
    rows = cloud.env.query("SELECT source, last_status, last_run_at FROM sync_status")
    done = {s for s, status, ran in rows if status == "success" and (after is None or ran > after)}
    return done == set(SOURCES)


def target_writes(cloud: Cloud) -> Any:
    return cloud.env.query(
        "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        ["calls", "call_speakers", "transcripts", "call_opportunities", "emails",
         "opportunities"],
    )  # fmt: skip


def test_the_hourly_message_runs_everything_once_and_alerts_once(deployed: Deployed) -> None:
    cloud = deployed.cloud
    data = small_world()
    land(cloud, data)
    publish(cloud.project, cloud.trigger_topic, json.dumps({"mode": "incremental"}).encode())
    wait_until(lambda: runs_done(cloud), 60, "all three sources to sync")
    assert content(cloud) == expected(data)

    # Both bad calls were one page's rejects: one aggregated Slack message.
    (post,) = deployed.slack.wait_for(1, timeout=30)
    assert "calls*: 2 dead letter(s)" in post["text"]
    letters = pull_all(cloud.dead_letters, expect=2, timeout=20)
    assert sorted(m.attributes["key"] for m in letters) == ['["nul"]', "[null]"]

    # The same trigger again: nothing changes, nothing is re-alerted.
    (last_run,) = cloud.env.query("SELECT max(last_run_at) FROM sync_status")[0]
    writes = target_writes(cloud)
    publish(cloud.project, cloud.trigger_topic, json.dumps({"mode": "incremental"}).encode())
    wait_until(lambda: runs_done(cloud, after=last_run), 60, "the repeated runs")
    assert content(cloud) == expected(data)
    assert target_writes(cloud) == writes
    time.sleep(2)
    assert len(deployed.slack.messages) == 1


def test_a_trigger_that_always_fails_is_dead_lettered_after_5_attempts(
    deployed: Deployed,
) -> None:
    cloud = deployed.cloud
    publish(cloud.project, deployed.fail_topic, b'{"mode": "incremental"}')
    (post,) = deployed.slack.wait_for(1, timeout=60)
    assert "trigger undeliverable after 5 attempts" in post["text"]
    assert len(deployed.failing_log.read_text().splitlines()) == 5


def test_a_backfill_finishes_through_continuations(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = deployed.cloud
    monkeypatch.setenv("GONG_SYNC_TIME_BUDGET_SECONDS", "0.2")
    monkeypatch.setenv("GONG_SYNC_PAGE_SIZE", "4")
    cloud_function.runtime.cache_clear()
    data = small_world()
    data["call"] += [call(f"b{i:02d}", at(i)) for i in range(40)]
    data["transcript"] += [transcript(f"b{i:02d}", 0, at(i)) for i in range(40)]
    land(cloud, data)
    publish(cloud.project, cloud.trigger_topic, json.dumps({"sources": ["calls"]}).encode())
    wait_until(
        lambda: cloud.env.query("SELECT last_status FROM sync_status") == [("success",)],
        120, "the calls backfill to finish",
    )  # fmt: skip
    got, want = content(cloud), expected(data)
    for table in ("calls", "call_speakers", "transcripts", "call_opportunities"):
        assert got[table] == want[table]
    continuations = [
        m
        for m in pull_all(cloud.triggers, expect=3, timeout=10)
        if m.attributes.get("continuation") == "true"
    ]
    assert len(continuations) >= 2

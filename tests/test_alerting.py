"""The alerting function: what a dead letter posts to Slack, once per page, and what it logs.

Slack is a stand-in callable that records the posts (handle_alert's `post`); nothing here
speaks HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from gong_sync import alerting, sources
from gong_sync.pubsub_sink import reason_summary
from gong_sync.settings import CloudSettings, Settings

WEBHOOK = "https://hooks.slack.example/services/T0/B0/secret"
SETTINGS = Settings(cloud=CloudSettings(project="proj-1", slack_webhook_url=WEBHOOK))
SUBSCRIPTION = "projects/proj-1/subscriptions/sync-calls"


class FakeSlack:
    """A Slack webhook stand-in: keeps every post, or fails as a busy Slack would."""

    def __init__(self, error: Exception | None = None) -> None:
        """Record posts; with an error, raise it on every post instead."""
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.error = error

    def __call__(self, url: str, body: Mapping[str, Any]) -> None:
        """Take one post."""
        if self.error is not None:
            raise self.error
        self.posts.append((url, dict(body)))

    @property
    def texts(self) -> list[str]:
        """The text of each post, in order."""
        return [body["text"] for _, body in self.posts]


def b64(data: bytes | str) -> str:
    """Base64 text of bytes or of a string's UTF-8."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def event(attributes: Mapping[str, str], data: Any = None, message_id: str = "m-1") -> CloudEvent:
    """The CloudEvent Eventarc delivers for one message of the dead-letter topic."""
    message: dict[str, Any] = {"attributes": dict(attributes), "messageId": message_id}
    if data is not None:
        message["data"] = data
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "id": message_id,
         "source": "//pubsub.googleapis.com/projects/proj-1/topics/sync-dead-letter"},
        {"message": message, "subscription": "projects/proj-1/subscriptions/alerts"},
    )  # fmt: skip


def alert(attributes: Mapping[str, str], data: Any = None, message_id: str = "m-1") -> list[str]:
    """The texts one dead letter posts."""
    slack = FakeSlack()
    alerting.handle_alert(event(attributes, data, message_id), SETTINGS, slack)
    assert all(url == WEBHOOK for url, _ in slack.posts)
    return slack.texts


def page_of_letters(reasons: list[str], run_id: str = "run-9") -> list[dict[str, str]]:
    """The attributes of one page's bad_record letters, as the Pub/Sub sink publishes them."""
    summary = reason_summary(Counter(reasons))
    return [
        {"kind": "bad_record", "source": "calls", "stream": "call", "target": "calls",
         "reason": r, "key": json.dumps([f"k{i}"]), "run_id": run_id, "batch_index": str(i),
         "batch_size": str(len(reasons)), "batch_reasons": summary}
        for i, r in enumerate(reasons)
    ]  # fmt: skip


def logs_query(text: str) -> str:
    """The Cloud Logging filter a post links to, decoded."""
    link = text.rsplit("\n", 1)[-1]
    assert link.startswith("<https://console.cloud.google.com/logs/query;query=")
    assert link.endswith("|Cloud Logging>")
    url = link[1 : -len("|Cloud Logging>")]
    query, _, project = url.split(";query=", 1)[1].partition("?project=")
    assert project == "proj-1"
    return urllib.parse.unquote(query)


# ---------------------------------------------------------------------------------------------
# Bad records: one post per page.


def test_a_page_of_bad_records_is_one_post_with_its_count_reasons_key_and_logs() -> None:
    """Only the first letter of a page posts; it speaks for the page."""
    slack = FakeSlack()
    letters = page_of_letters(["title: NUL byte", "title: NUL byte", "started_at: bad"])
    for i, attributes in enumerate(letters):
        alerting.handle_alert(event(attributes, b64("{}"), f"m-{i}"), SETTINGS, slack)
    assert slack.texts == [
        ":rotating_light: gong-sync *calls*: 3 dead letter(s) - 2× title: NUL byte; "
        '1× started_at: bad\nsample key: `["k0"]`\n'
        "<https://console.cloud.google.com/logs/query;query=labels.run_id%3D%22run-9%22"
        "?project=proj-1|Cloud Logging>"
    ]
    assert logs_query(slack.texts[0]) == 'labels.run_id="run-9"'


def test_every_letter_of_a_page_is_logged_at_error_with_its_own_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The post is per page; the log line is per letter, with all its attributes."""
    letters = page_of_letters(["a: x", "b: y"])
    with caplog.at_level(logging.ERROR, logger="gong_sync.alerting"):
        for attributes in letters:
            alert(attributes)
    records = [r for r in caplog.records if r.name == "gong_sync.alerting"]
    assert [r.getMessage() for r in records] == ["dead letter: a: x", "dead letter: b: y"]
    assert [getattr(r, "fields", None) for r in records] == [
        {"dead_letter": attributes} for attributes in letters
    ]


def test_a_letter_without_batch_attributes_posts_alone_with_its_reason() -> None:
    """No batch_index means first of its page; no batch_reasons means its own reason."""
    (text,) = alert(
        {"kind": "bad_record", "source": "emails", "reason": "subject: NUL", "key": "k"}
    )
    assert text.startswith(":rotating_light: gong-sync *emails*: 1 dead letter(s) - subject: NUL\n")
    assert "\nsample key: `k`\n" in text


@pytest.mark.parametrize("size", ["", "abc", "-3", "2.5", " 4"])
def test_a_missing_or_garbled_batch_size_counts_as_one(size: str) -> None:
    """The count is a hint: a bad one never stops the alert."""
    (text,) = alert({"kind": "bad_record", "source": "calls", "batch_size": size, "reason": "r"})
    assert "*calls*: 1 dead letter(s) - r" in text


def test_a_bad_record_without_reason_key_or_run_still_posts() -> None:
    """Unknown fields show as ?; no key means no sample line; no run id means an open query."""
    (text,) = alert({"kind": "bad_record"})
    assert text.startswith(":rotating_light: gong-sync *?*: 1 dead letter(s) - ?\n<https://")
    assert "sample key" not in text
    assert logs_query(text) == ""


# ---------------------------------------------------------------------------------------------
# Triggers that were rejected or never delivered.


def _undeliverable(**extra: str) -> dict[str, str]:
    """The attributes Pub/Sub adds to a message it gave up delivering."""
    return {"CloudPubSubDeadLetterSourceSubscription": SUBSCRIPTION, **extra}


def test_an_undeliverable_trigger_names_its_source_attempts_and_message() -> None:
    """The post says what to republish and links to the source's lines since publication."""
    body = json.dumps({"sources": ["calls"], "mode": "full_refresh"})
    (text,) = alert(
        _undeliverable(CloudPubSubDeadLetterSourceDeliveryCount="5",
                       CloudPubSubDeadLetterSourceTopicPublishTime="2026-12-01T10:00:00.000Z"),
        b64(body), "m-77",
    )  # fmt: skip
    assert text.startswith(
        ":rotating_light: gong-sync *calls*: 1 dead letter(s) - trigger undeliverable after 5"
        " attempts (sync-calls)\n"
    )
    assert f"\nsample key: `message m-77: {body}`\n" in text
    assert logs_query(text) == 'labels.source="calls" AND timestamp>="2026-12-01T10:00:00.000Z"'


@pytest.mark.parametrize("name", sorted(sources.SOURCES))
def test_the_source_of_an_undeliverable_trigger_comes_from_its_subscription(name: str) -> None:
    """`…-<source>` or `<source>` names a source; any other subscription is shown as is."""
    for subscription, source in [
        (f"projects/p/subscriptions/sync-{name}", name),
        (f"projects/p/subscriptions/{name}", name),
        (f"projects/p/subscriptions/{name}-old", f"{name}-old"),
    ]:
        info = alerting.describe({"CloudPubSubDeadLetterSourceSubscription": subscription}, None)
        assert info is not None
        assert info["source"] == source
        short = subscription.rsplit("/", 1)[1]
        assert info["reason"] == f"trigger undeliverable after ? attempts ({short})"
        assert info["logs"] == f'labels.source="{source}"'


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (None, "message m-1: (no data: attributes only, which the platform rejects; publish a"
               " JSON object)"),
        (b64("   "), "message m-1: (no data: attributes only"),
        (b64("x" * 201), f"message m-1: {'x' * 200}... (201 chars)"),
        (b64("é" * 200), f"message m-1: {'é' * 200}"),
        ("%%% not base64", "message m-1: %%% not base64"),
        (b64(b"\xff\xfe"), "message m-1: //4="),  # not UTF-8: shown as the base64 it came as
    ],
)  # fmt: skip
def test_the_message_of_an_undeliverable_trigger_is_shown_short_whatever_it_holds(
    data: str | None, shown: str
) -> None:
    """Empty, long, non-base64 and non-UTF-8 messages all give a readable sample line."""
    info = alerting.describe(_undeliverable(), data, "m-1")
    assert info is not None
    assert info["key"].startswith(shown)
    assert len(info["key"]) < 300


def test_a_rejected_trigger_shows_the_message_it_rejected_and_the_reason() -> None:
    """The letter carries {"data": <original base64>}; the post shows the original text."""
    original = b64('{"mode": "x"}')
    (text,) = alert(
        {"kind": "bad_trigger", "source": "emails", "reason": "mode: 'x' is not valid",
         "event_id": "evt-7"},
        b64(json.dumps({"data": original})),
    )  # fmt: skip
    assert text.startswith(
        ":rotating_light: gong-sync *emails*: 1 dead letter(s) - rejected trigger: mode: 'x' is"
        ' not valid\nsample key: `message evt-7: {"mode": "x"}`\n'
    )
    assert logs_query(text) == 'labels.event_id="evt-7"'


@pytest.mark.parametrize(
    "data", [None, b64("not json"), b64("[1, 2]"), b64('{"data": null}'), "%%%"]
)
def test_a_rejected_trigger_with_a_garbled_letter_still_posts(data: str | None) -> None:
    """Whatever the letter's body, the alert goes out with the reason."""
    (text,) = alert({"kind": "bad_trigger", "source": "calls", "reason": "r"}, data)
    assert "*calls*: 1 dead letter(s) - rejected trigger: r\n" in text
    assert logs_query(text) == ""


# ---------------------------------------------------------------------------------------------
# Anything else, and the webhook.


@pytest.mark.parametrize(
    "attributes", [{}, {"kind": "something_new"}, {"reason": "why", "source": "calls"}]
)
def test_an_unrecognised_letter_still_posts(attributes: dict[str, str]) -> None:
    """A letter of no known kind is never dropped silently."""
    (text,) = alert(attributes, b64("{}"))
    assert text.startswith(":rotating_light: gong-sync *?*: 1 dead letter(s) - unrecognised")


@pytest.mark.parametrize("data", [None, b"raw bytes", "text", ["list"], {"no": "message"}])
def test_an_event_that_is_not_a_pubsub_push_posts_an_unrecognised_alert(data: Any) -> None:
    """No message or attributes in the event: the alert says so instead of crashing."""
    slack = FakeSlack()
    odd = CloudEvent({"type": "x", "source": "y", "id": "e-1"}, data)
    alerting.handle_alert(odd, SETTINGS, slack)
    assert len(slack.texts) == 1
    assert "unrecognised dead letter" in slack.texts[0]


def test_without_a_webhook_the_alert_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No URL configured: nothing is posted, the letter is logged, and a warning says why."""
    slack = FakeSlack()
    with caplog.at_level(logging.WARNING, logger="gong_sync.alerting"):
        alerting.handle_alert(event(page_of_letters(["r"])[0]), Settings(), slack)
    assert slack.posts == []
    messages = [r.getMessage() for r in caplog.records if r.name == "gong_sync.alerting"]
    assert messages == ["dead letter: r", "no Slack webhook configured; alert only logged"]


def test_a_failing_post_raises_so_pubsub_redelivers_the_letter() -> None:
    """A busy Slack (429/5xx from post_json) is not swallowed."""
    slack = FakeSlack(error=ConnectionError("slack is down"))
    with pytest.raises(ConnectionError, match="slack is down"):
        alerting.handle_alert(event(page_of_letters(["r"])[0]), SETTINGS, slack)


def test_the_logs_link_quotes_the_filter_and_names_the_project() -> None:
    """The filter is URL-quoted; no project gives an empty project parameter."""
    link = alerting.logs_link("p-1", 'labels.run_id="a b&c"')
    assert link == (
        "https://console.cloud.google.com/logs/query;query=labels.run_id%3D%22a%20b%26c%22"
        "?project=p-1"
    )
    assert alerting.logs_link(None, "").endswith("query=?project=")


# ---------------------------------------------------------------------------------------------
# Defects these tests found (fixed with them).


@pytest.mark.parametrize("field", ["reason", "key"])
def test_source_data_in_a_post_is_escaped_for_slack(field: str) -> None:
    """Slack reads <…> as a mention or link: data must arrive as &lt;…&gt;, & as &amp;."""
    attributes = {"kind": "bad_record", "source": "calls", "reason": "r", "key": "k"}
    attributes[field] = "<!channel> & <https://evil.example|click>"
    (text,) = alert(attributes)
    assert "<!channel>" not in text
    assert "<https://evil.example" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text


def test_a_batch_size_of_unicode_digits_counts_as_one() -> None:
    """'²' is garbled like any other bad count."""
    (text,) = alert({"kind": "bad_record", "source": "calls", "batch_size": "²", "reason": "r"})
    assert "*calls*: 1 dead letter(s) - r" in text

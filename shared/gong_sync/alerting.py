"""The alerting function: a dead letter becomes an ERROR line and a concise Slack post."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from gong_sync import log as gs_log
from gong_sync import sources, trigger
from gong_sync.secret_manager import resolve
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

Poster = Callable[[str, Mapping[str, Any]], None]


def post_json(url: str, body: Mapping[str, Any]) -> None:
    """POST a JSON body (a Slack webhook); raise on 429/5xx so Pub/Sub retries.

    Any other 4xx means the webhook itself is wrong: retrying for days would only repeat the
    failure, so it is logged at ERROR and the dead letter is acked.
    """
    request = urllib.request.Request(  # noqa: S310 - the URL comes from our own secret
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise
        log.error(
            "the Slack webhook rejected the alert (HTTP %d); fix the webhook secret", exc.code
        )


def logs_link(project: str | None, query: str) -> str:
    """A Cloud Logging link to the lines that match a filter."""
    return (
        "https://console.cloud.google.com/logs/query;query="
        f"{urllib.parse.quote(query)}?project={project or ''}"
    )


def _count(text: str | None) -> int:
    """The page's letter count from an attribute; 1 when it is missing or garbled."""
    # isdecimal()-and-ASCII, not isdigit(): "²" is a digit that int() refuses.
    return int(text) if text and text.isascii() and text.isdecimal() else 1


_SHOWN_DATA = 200  # characters of an undeliverable trigger's message quoted in a post


def _shown_message(data: Any, message_id: str) -> str:
    """What an operator needs to find or republish an undeliverable trigger."""
    try:
        text = base64.b64decode(data or "", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        text = str(data)
    if not text.strip():
        text = "(no data: attributes only, which the platform rejects; publish a JSON object)"
    elif len(text) > _SHOWN_DATA:
        text = f"{text[:_SHOWN_DATA]}... ({len(text)} chars)"
    return f"message {message_id}: {text}"


def _rejected_data(data: Any) -> Any:
    """The original data a bad_trigger letter carries as {"data": <its base64>}."""
    try:
        body = json.loads(base64.b64decode(data or "", validate=True))
    except (binascii.Error, ValueError):
        return None
    return body.get("data") if isinstance(body, Mapping) else None


def describe(
    attributes: Mapping[str, str], data: Any, message_id: str = ""
) -> dict[str, Any] | None:
    """What one dead-letter message means, or None when it adds nothing to an earlier post."""
    if "CloudPubSubDeadLetterSourceSubscription" in attributes:
        subscription = attributes["CloudPubSubDeadLetterSourceSubscription"].rsplit("/", 1)[-1]
        attempts = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "?")
        named = [n for n in sources.SOURCES if subscription.endswith(f"-{n}") or subscription == n]
        source = named[0] if named else subscription
        published = attributes.get("CloudPubSubDeadLetterSourceTopicPublishTime", "")
        return {
            "source": source,
            "reason": f"trigger undeliverable after {attempts} attempts ({subscription})",
            "count": 1,
            "key": _shown_message(data, message_id),
            # The failed deliveries: this source's lines from the message's publication on.
            "logs": f'labels.source="{source}"'
            + (f' AND timestamp>="{published}"' if published else ""),
        }
    if attributes.get("kind") == "bad_trigger":
        event_id = attributes.get("event_id", "")
        return {
            "source": attributes.get("source", "?"),
            "reason": f"rejected trigger: {attributes.get('reason', '?')}",
            "count": 1,
            "key": _shown_message(_rejected_data(data), event_id),
            "logs": f'labels.event_id="{event_id}"' if event_id else "",
        }
    if attributes.get("kind") == "bad_record":
        # One post per page of rejects: the first letter of a page speaks for all of them.
        if attributes.get("batch_index", "0") != "0":
            return None
        run_id = attributes.get("run_id", "")
        return {
            "source": attributes.get("source", "?"),
            "reason": attributes.get("batch_reasons") or attributes.get("reason", "?"),
            "count": _count(attributes.get("batch_size")),
            "key": attributes.get("key", ""),
            "logs": f'labels.run_id="{run_id}"' if run_id else "",
        }
    return {"source": "?", "reason": "unrecognised dead letter", "count": 1, "key": "",
            "logs": ""}  # fmt: skip


def _slack(text: object) -> str:
    """Source data as Slack shows it literally: its three control characters escaped.

    Slack reads <...> as a mention or link and & as an entity ("Formatting text for app
    surfaces", Escaping text): a reason quoting `<!channel>` must not page a channel.
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@functools.cache
def alert_settings() -> Settings:
    """The alerting function's settings: it needs the webhook, not the database."""
    gs_log.configure("json")
    return resolve(Settings.from_env())


def handle_alert(event: Any, settings: Settings | None = None, post: Poster = post_json) -> None:
    """Log a dead letter at ERROR and post a concise Slack message for each burst."""
    settings = settings or alert_settings()
    data, attributes = trigger.message_of(event)
    info = describe(attributes, data, str(event.get("id") or ""))
    log.error(
        "dead letter: %s",
        attributes.get("reason") or (info or {}).get("reason", "?"),
        extra={"fields": {"dead_letter": {k: v for k, v in attributes.items()}}},
    )
    if info is None:
        return
    text = (
        f":rotating_light: gong-sync *{_slack(info['source'])}*: {info['count']} dead letter(s)"
        f" - {_slack(info['reason'])}"
        + (f"\nsample key: `{_slack(info['key'])}`" if info["key"] else "")
        + f"\n<{logs_link(settings.cloud.project, info['logs'])}|Cloud Logging>"
    )
    url = settings.cloud.slack_webhook_url
    if not url:
        log.warning("no Slack webhook configured; alert only logged")
        return
    post(url, {"text": text})

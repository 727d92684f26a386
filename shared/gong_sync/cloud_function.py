"""What the Cloud Function entrypoints call: decode the event, pick the source, run the engine."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import InternalServerError

from gong_sync import engine, migrate, sources, state, trigger
from gong_sync import log as gs_log
from gong_sync.bigquery_reader import BigQueryReader, make_client
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.errors import is_transient
from gong_sync.postgres import Connection, connect
from gong_sync.pubsub_sink import PubSubDeadLetterSink
from gong_sync.secret_manager import resolve
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

RETRIES = 3  # attempts of a run within one invocation before Pub/Sub redelivers
# Kept free at the end of an invocation: recording the run and publishing its continuation
# (each a few requests) must finish before the platform stops the function.
FINISH_SECONDS = 20.0
BACKOFF_SECONDS = 2.0


@dataclass
class Runtime:
    """Clients built once per instance (cold start), reused by every invocation."""

    settings: Settings
    reader: BigQueryReader
    publisher: Any

    def connect(self) -> Connection:
        """A new Postgres connection."""
        return connect(self.settings.postgres)

    def publish(self, topic: str, body: Mapping[str, Any], **attributes: str) -> None:
        """Publish one JSON message and wait for it."""
        data = json.dumps(body, default=str).encode()

        path = self.settings.cloud.topic_path(topic)
        self.publisher.publish(path, data, **attributes).result(timeout=60)


@functools.cache
def runtime() -> Runtime:
    """Build the clients and apply migrations, once per instance."""
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.pubsub_v1.types import BatchSettings

    gs_log.configure("json")  # whatever handlers the platform installed (see log.configure)
    settings = resolve(Settings.from_env())
    conn = connect(settings.postgres)
    try:
        migrate.apply(conn)
    finally:
        conn.close()
    publisher = PublisherClient(batch_settings=BatchSettings(max_messages=500, max_latency=0.05))
    reader = BigQueryReader(make_client(settings.bigquery), settings.bigquery)
    return Runtime(settings, reader, publisher)


def _message(event: Any) -> tuple[Any, dict[str, str]]:
    data = event.data if isinstance(event.data, Mapping) else {}
    message = data.get("message") or {}
    return message.get("data"), dict(message.get("attributes") or {})


def _age_seconds(event: Any) -> float | None:
    stamp = event.get("time") if hasattr(event, "get") else None
    if not stamp:
        return None
    sent = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return (datetime.now(UTC) - sent).total_seconds()


class RunFailed(InternalServerError):
    """A run that failed for good in this invocation: HTTP 500, so Pub/Sub redelivers.

    Raised as an HTTP exception after our own ERROR line (traceback and labels included):
    a plain exception would make Flask log a second ERROR traceback outside the run's labels.
    """


class SourceBusy(InternalServerError):
    """Another run holds the source's lock; an explicit request must wait for a redelivery.

    An HTTP exception, so functions-framework still answers 500 (Pub/Sub redelivers), but
    Flask does not log it as an ERROR traceback without our labels: it is expected, and
    logged by us at WARNING.
    """

    @classmethod
    def logged(cls, message: str) -> SourceBusy:
        """The exception, once its WARNING line (with the run's labels) is written."""
        log.warning("%s (HTTP 500: Pub/Sub redelivers it)", message)
        return cls(message)


def handle_sync(source_name: str, event: Any, rt: Runtime | None = None) -> engine.RunStats | None:
    """Run one source for a trigger event; raise only for what a redelivery could fix."""
    started = time.monotonic()
    # Triggers for other sources and stale ones are answered before any client is built.
    cloud = rt.settings.cloud if rt else Settings.from_env().cloud
    with gs_log.labels(source=source_name, event_id=str(event.get("id") or "")):
        data, attributes = _message(event)
        try:
            wanted = trigger.decode(data, list(sources.SOURCES))
        except trigger.BadMessage as exc:
            reporter = trigger.reporter(data, attributes, list(sources.SOURCES))
            if reporter == source_name:
                _reject(rt or runtime(), source_name, data, str(exc), str(event.get("id") or ""))
            else:  # one dead letter per bad message, not one per subscribed source
                log.warning("rejected trigger message: %s (%s reports it)", exc, reporter)
            return None
        if not wanted.names(source_name):
            log.info("trigger names only %s; nothing to do", ", ".join(wanted.sources or ()))
            return None
        continuation = attributes.get("continuation") == "true"
        explicit = bool(wanted.mode == "full_refresh" or wanted.since or wanted.until or wanted.ids)
        age = _age_seconds(event)
        # Only an hourly trigger (or its continuation) is superseded by the next one; a late
        # explicit request is still what someone asked for, and no other trigger does it.
        if age is not None and age > cloud.max_event_age_seconds and not explicit:
            log.warning(
                "dropping a trigger %.0f s old (max %.0f s): the next hourly one supersedes it",
                age,
                cloud.max_event_age_seconds,
            )
            return None
        rt = rt or runtime()
        if wanted.mode == "full_refresh" and not continuation:
            _reset(rt, source_name)  # once, up front: retries below must not start it over
        options = engine.RunOptions(
            since=wanted.since,
            until=wanted.until,
            ids=wanted.ids,
            deadline=started + cloud.time_budget_seconds,
            hard_deadline=started + cloud.time_limit_seconds - FINISH_SECONDS,
            resume=continuation,
        )
        stats = _run_with_retries(rt, source_name, options)
        # Only a run reading every stream up to now covers an hourly trigger or a continuation;
        # an explicit request (a window's continuation too) is covered by no other run.
        if stats.status == "skipped" and (explicit or not _covered(rt, source_name)):
            raise SourceBusy.logged(f"{source_name} is running; redeliver this request later")
        if stats.continuation_needed:
            follow = trigger.Trigger(sources=(source_name,), since=wanted.since, until=wanted.until)
            rt.publish(
                cloud.trigger_topic,
                follow.to_json(),
                continuation="true",
                **trigger.attributes_for(follow.sources),
            )
            log.info("time budget reached; published a continuation for %s", source_name)
        return stats


def _covered(rt: Runtime, source_name: str) -> bool:
    """Whether the run holding the source's lock does the work of an hourly trigger."""
    conn = rt.connect()
    try:
        return state.covered(conn, source_name)
    finally:
        conn.close()


def _reset(rt: Runtime, source_name: str) -> None:
    """Forget a source's watermarks under its lock, so the next reads start from scratch."""
    conn = rt.connect()
    try:
        if not state.try_lock(conn, source_name):
            raise SourceBusy.logged(f"{source_name} is running; redeliver the full refresh later")
        state.reset_watermarks(conn, source_name)
        state.unlock(conn, source_name)
    finally:
        conn.close()
    log.info("full refresh of %s: watermarks reset", source_name)


def _why_give_up(
    exc: Exception, attempt: int, delay: float, hard_deadline: float | None
) -> str | None:
    """Why a failed attempt is the last one in this invocation; None to retry it."""
    if not is_transient(exc):
        return "permanent"
    if attempt == RETRIES:
        return "transient, retries exhausted"
    if hard_deadline is not None and time.monotonic() + delay >= hard_deadline:
        return "transient, no time left to retry"
    return None


def _run_with_retries(rt: Runtime, source_name: str, options: engine.RunOptions) -> engine.RunStats:
    """Run, retrying transient failures on a fresh connection; raise when they persist."""
    topic = rt.settings.cloud.topic_path(rt.settings.cloud.dead_letter_topic)

    def sink(conn: Connection) -> PubSubDeadLetterSink:
        return PubSubDeadLetterSink(rt.publisher, topic, PostgresDeadLetterSink(conn))

    for attempt in range(1, RETRIES + 1):
        try:
            return engine.run_source(
                sources.get(source_name), rt.settings, rt.reader, rt.connect, sink, options
            )
        except Exception as exc:
            delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
            why = _why_give_up(exc, attempt, delay, options.hard_deadline)
            if why is not None:
                log.error("%s failed (%s): %s", source_name, why, exc, exc_info=True)
                raise RunFailed(f"{source_name} failed: {exc}") from exc
            log.warning("transient failure, retrying in %.0f s: %s", delay, exc)
            time.sleep(delay)
            # Continue where the failed attempt stopped, not from the lookback again.
            options = dataclasses.replace(options, resume=True)
    raise AssertionError("unreachable")


def _reject(rt: Runtime, source_name: str, data: Any, reason: str, event_id: str) -> None:
    """Ack a trigger that can never work: dead-letter it with the reason, never retry it."""
    log.error("rejected trigger message: %s", reason)
    raw = data if isinstance(data, str) else ""
    rt.publish(
        rt.settings.cloud.dead_letter_topic,
        {"data": raw[:10_000]},
        kind="bad_trigger",
        source=source_name,
        reason=reason[:1000],
        event_id=event_id,  # the rejecting function's log lines carry it as a label
    )


# -- alerting ----------------------------------------------------------------------------------

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
    return int(text) if text and text.isdigit() else 1


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


@functools.cache
def alert_settings() -> Settings:
    """The alerting function's settings: it needs the webhook, not the database."""
    gs_log.configure("json")
    return resolve(Settings.from_env())


def handle_alert(event: Any, settings: Settings | None = None, post: Poster = post_json) -> None:
    """Log a dead letter at ERROR and post a concise Slack message for each burst."""
    settings = settings or alert_settings()
    data, attributes = _message(event)
    info = describe(attributes, data, str(event.get("id") or ""))
    log.error(
        "dead letter: %s",
        attributes.get("reason") or (info or {}).get("reason", "?"),
        extra={"fields": {"dead_letter": {k: v for k, v in attributes.items()}}},
    )
    if info is None:
        return
    text = (
        f":rotating_light: gong-sync *{info['source']}*: {info['count']} dead letter(s) - "
        f"{info['reason']}"
        + (f"\nsample key: `{info['key']}`" if info["key"] else "")
        + f"\n<{logs_link(settings.cloud.project, info['logs'])}|Cloud Logging>"
    )
    url = settings.cloud.slack_webhook_url
    if not url:
        log.warning("no Slack webhook configured; alert only logged")
        return
    post(url, {"text": text})

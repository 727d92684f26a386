"""What the Cloud Function entrypoints call: decode the event, pick the source, run the engine."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import InternalServerError

from gong_sync import log as gs_log
from gong_sync import migrate, reconcile, runs, sources, state, sync, trigger, verify
from gong_sync.bigquery_reader import BigQueryReader, make_client
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.errors import is_transient
from gong_sync.postgres import Connection, connect
from gong_sync.pubsub_sink import PubSubDeadLetterSink
from gong_sync.secret_manager import resolve
from gong_sync.settings import CloudSettings, Settings

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
    hooks: runs.RunHooks = dataclasses.field(default_factory=runs.RunHooks)

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


def _age_seconds(event: Any) -> float | None:
    stamp = event.get("time") if hasattr(event, "get") else None
    if not stamp:
        return None
    sent = datetime.fromisoformat(str(stamp))
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


def handle_sync(source_name: str, event: Any, rt: Runtime | None = None) -> runs.RunStats | None:
    """Run one source for a trigger event; raise only for what a redelivery could fix."""
    started = time.monotonic()
    # Triggers for other sources and stale ones are answered before any client is built.
    cloud = rt.settings.cloud if rt else Settings.from_env().cloud
    with gs_log.labels(source=source_name, event_id=str(event.get("id") or "")):
        data, attributes = trigger.message_of(event)
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
        explicit = _explicit(wanted)
        if _stale(event, explicit, cloud):
            return None
        rt = rt or runtime()
        if wanted.mode == "verify":
            _reconcile(rt, source_name, wanted, started + cloud.time_budget_seconds)
            return None
        options = _options(wanted, continuation, started, cloud)
        stats = _run_with_retries(rt, source_name, options)
        # Only a run reading every stream up to now covers an hourly trigger or a continuation;
        # an explicit request (a window's continuation too) is covered by no other run.
        if stats.status == "skipped" and (explicit or not _covered(rt, source_name)):
            raise SourceBusy.logged(f"{source_name} is running; redeliver this request later")
        if stats.continuation_needed:  # its source only, the same window
            _continue(rt, trigger.Trigger((source_name,), since=wanted.since, until=wanted.until))
        return stats


def _explicit(wanted: trigger.Trigger) -> bool:
    """Whether someone asked for this run: no later trigger would do its work."""
    return bool(wanted.mode != "incremental" or wanted.since or wanted.until or wanted.ids)


def _stale(event: Any, explicit: bool, cloud: CloudSettings) -> bool:
    """An hourly trigger (or its continuation) older than the next one: superseded by it.

    A late explicit request is still what someone asked for, and no other trigger does it.
    """
    age = _age_seconds(event)
    if age is None or age <= cloud.max_event_age_seconds or explicit:
        return False
    log.warning(
        "dropping a trigger %.0f s old (max %.0f s): the next hourly one supersedes it",
        age,
        cloud.max_event_age_seconds,
    )
    return True


def _reconcile(rt: Runtime, source_name: str, wanted: trigger.Trigger, deadline: float) -> None:
    """The scheduled reconciliation: verify the source, and with fix repair it.

    Comparing the keys of a large source takes many invocations: each stages what its time
    budget allows and publishes the same trigger for its source, to go on from there.
    """
    sample = reconcile.SAMPLE if wanted.sample is None else wanted.sample
    try:
        outcome = reconcile.reconcile(
            sources.get(source_name), rt.settings, rt.reader, rt.connect, _sink_for(rt),
            wanted.fix, sample, lambda: time.monotonic() > deadline,
        )  # fmt: skip
    except verify.Busy as exc:
        raise SourceBusy.logged(str(exc)) from None
    if outcome is None:
        _continue(rt, dataclasses.replace(wanted, sources=(source_name,)))


def _sink_for(rt: Runtime) -> Callable[[Connection], PubSubDeadLetterSink]:
    """Dead letters to the topic, after the ledger (Postgres) has seen them."""
    topic = rt.settings.cloud.topic_path(rt.settings.cloud.dead_letter_topic)

    def sink(conn: Connection) -> PubSubDeadLetterSink:
        return PubSubDeadLetterSink(rt.publisher, topic, PostgresDeadLetterSink(conn))

    return sink


def _options(
    wanted: trigger.Trigger, continuation: bool, started: float, cloud: CloudSettings
) -> runs.RunOptions:
    """What the trigger asks of this invocation, within the platform's time limit."""
    return runs.RunOptions(
        # The engine forgets the watermarks once, under the lock, and commits; the retries
        # and the continuations resume instead of starting it over.
        full_refresh=wanted.mode == "full_refresh" and not continuation,
        since=wanted.since,
        until=wanted.until,
        ids=wanted.ids,
        deadline=started + cloud.time_budget_seconds,
        hard_deadline=started + cloud.time_limit_seconds - FINISH_SECONDS,
        resume=continuation,
    )


def _continue(rt: Runtime, follow: trigger.Trigger) -> None:
    """Publish the continuation of a partial run (or verify): its source only."""
    rt.publish(
        rt.settings.cloud.trigger_topic,
        follow.to_json(),
        continuation="true",
        **trigger.attributes_for(follow.sources),
    )
    log.info("time budget reached; published a continuation: %s", follow.to_json())


def _covered(rt: Runtime, source_name: str) -> bool:
    """Whether the run holding the source's lock does the work of an hourly trigger."""
    conn = rt.connect()
    try:
        return state.covered(conn, source_name)
    finally:
        conn.close()


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


def _run_with_retries(rt: Runtime, source_name: str, options: runs.RunOptions) -> runs.RunStats:
    """Run, retrying transient failures on a fresh connection; raise when they persist."""
    sink = _sink_for(rt)
    for attempt in range(1, RETRIES + 1):
        try:
            return sync.run_source(
                sources.get(source_name),
                rt.settings,
                rt.reader,
                rt.connect,
                sink,
                options,
                rt.hooks,
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

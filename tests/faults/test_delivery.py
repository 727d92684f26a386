"""Delivery faults: a trigger delivered twice, two triggers at once, a continuation racing the
hourly trigger.

The test plays Pub/Sub's push contract against the real functions (functions-framework, in
process, so two deliveries really overlap): a 2xx answer acks a delivery, any other answer is
redelivered until acked, and every continuation the functions publish on the emulator's trigger
topic is pulled and delivered in turn. To make two runs overlap for sure, the first run of
`calls` about to write a page is held there, lock taken, until every other delivery was
answered.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1

from gong_sync import cloud_function
from gong_sync.runs import RunHooks, RunOptions, RunStats
from tests import reference
from tests.conftest import Cloud
from tests.factories import at, call, dml, transcript
from tests.faults.matrix import Scenario, model
from tests.test_functions import pubsub_event
from tests.test_pubsub_e2e import land

MAIN = "functions/main.py"
PAGE_SIZE = 4
HOURLY: dict[str, Any] = {"mode": "incremental"}
FULL_REFRESH: dict[str, Any] = {"sources": ["calls"], "mode": "full_refresh"}
WAIT = 60.0  # seconds any one step may take on a busy machine before the test gives up

Delivery = tuple[str, CloudEvent]  # (function, event)


class Gate:
    """Holds the first run of one source about to write a page, lock taken, until released."""

    def __init__(self, source: str = "calls") -> None:
        """Hold nothing until armed."""
        self.source = source
        self.armed = False
        self.held = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def arm(self) -> None:
        """Hold the next first page commit."""
        self.held.clear()
        self.release.clear()
        self.armed = True

    def pause(self, source: str) -> None:
        """Called before a page is written: the first caller waits, the others pass."""
        with self._lock:
            first = self.armed and source == self.source and not self.held.is_set()
            if first:
                self.held.set()
        if first and not self.release.wait(WAIT):
            raise AssertionError("the held run was never released")


@dataclass
class PubSub:
    """Pub/Sub's delivery contract, played against the function apps of this process."""

    cloud: Cloud
    gate: Gate = field(default_factory=Gate)
    pages_per_invocation: int | None = None  # the time budget, counted in pages
    peak: Counter[str] = field(default_factory=Counter)  # most runs of a source at once
    runs: list[RunOptions] = field(default_factory=list)  # every calls run that ran
    continuations: int = 0  # continuation messages delivered
    _active: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _apps: dict[str, Any] = field(default_factory=dict)

    def app(self, target: str) -> Any:
        """The functions-framework app of one entrypoint, built once."""
        if target not in self._apps:
            self._apps[target] = functions_framework.create_app(target, MAIN, "cloudevent")
        return self._apps[target]

    def deliver(self, target: str, event: CloudEvent) -> int:
        """One push delivery over HTTP; returns the status code Pub/Sub would see."""
        headers, body = to_structured(event)
        return int(self.app(target).test_client().post("/", headers=headers, data=body).status_code)

    def published(self, targets: Sequence[str]) -> list[Delivery]:
        """Continuations published on the trigger topic since the last look, one per function."""
        return [
            (target, pubsub_event(None, raw=bytes(m.data), **dict(m.attributes)))
            for m in pull_now(self.cloud.triggers)
            for target in targets
        ]

    def drain(self, *pending: Delivery, targets: Sequence[str] = ("sync_calls",)) -> None:
        """Deliver until nothing is left: a nack comes back later, a continuation is delivered."""
        todo = deque(pending)
        for attempt in itertools.count():
            assert attempt < 80, "deliveries never settled: a chain of continuations that loops?"
            todo.extend(self.published(targets))
            if not todo:
                return
            target, event = todo.popleft()
            if event.data["message"]["attributes"].get("continuation") == "true":
                self.continuations += 1
            if not 200 <= self.deliver(target, event) < 300:
                todo.append((target, event))

    def race(self, *deliveries: Delivery, first: int = 0) -> list[int]:
        """Post all deliveries from threads at once; return their answers, in order.

        The first `calls` run to commit a page is held there until every other delivery was
        answered, so the runs overlap whatever the scheduling. With first=k, the first k
        deliveries start alone and the others only once one of them is held: a fixed order.
        """
        self.gate.arm()
        answers: queue.Queue[tuple[int, int]] = queue.Queue()
        threads = [
            threading.Thread(target=lambda i=i, d=d: answers.put((i, self.deliver(*d))))
            for i, d in enumerate(deliveries)
        ]
        for thread in threads[:first]:
            thread.start()
        if first:
            assert self.gate.held.wait(WAIT), "the first delivery never committed a page"
        for thread in threads[first:]:
            thread.start()
        got: dict[int, int] = {}
        deadline = time.monotonic() + WAIT
        try:
            # The held run answers only once released: wait for everyone else (a run may be
            # held after another delivery has already been answered).
            while len(got) < len(deliveries) - self.gate.held.is_set():
                assert time.monotonic() < deadline, f"deliveries unanswered; got {got}"
                with contextlib.suppress(queue.Empty):
                    i, status = answers.get(timeout=0.1)
                    got[i] = status
        finally:
            self.gate.release.set()
            self.gate.armed = False
        for thread in threads:
            thread.join(WAIT)
        while len(got) < len(deliveries):
            i, status = answers.get(timeout=WAIT)
            got[i] = status
        return [got[i] for i in range(len(deliveries))]


class ObservedRuns(RunHooks):
    """The engine's hooks, observing and holding this test's runs."""

    def __init__(self, ps: PubSub) -> None:
        """Report to ps."""
        self.ps = ps

    @contextlib.contextmanager
    def running(self, source: str, options: RunOptions) -> Iterator[None]:
        """Count the runs of each source that hold its lock at once."""
        ps = self.ps
        with ps._lock:
            ps._active[source] += 1
            ps.peak[source] = max(ps.peak[source], ps._active[source])
            if source == "calls":
                ps.runs.append(options)
        try:
            yield
        finally:
            with ps._lock:
                ps._active[source] -= 1

    def before_commit(self, source: str) -> None:
        """Before the writes: a second run let in by a broken lock never waits on row locks."""
        self.ps.gate.pause(source)

    def out_of_time(self, stats: RunStats, options: RunOptions) -> bool:
        """The budget counts pages, not seconds, so the chains are the same on a slow machine."""
        budget = self.ps.pages_per_invocation
        return (budget is not None and stats.pages >= budget) or super().out_of_time(stats, options)


@pytest.fixture
def pubsub(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    """The functions in this process, small pages, and the hooks that observe and hold runs."""
    monkeypatch.setenv("GONG_SYNC_PAGE_SIZE", str(PAGE_SIZE))
    cloud_function.runtime.cache_clear()
    ps = PubSub(cloud)
    monkeypatch.setattr(cloud_function.runtime(), "hooks", ObservedRuns(ps))
    yield ps
    ps.gate.release.set()  # never leave a thread held behind a failed test


def pull_now(subscription: str) -> list[Any]:
    """Every message waiting on a subscription, acked; none waits for more to come.

    The functions publish before they answer, so what a delivery published is already there.
    """
    with pubsub_v1.SubscriberClient() as client, warnings.catch_warnings():
        # Deprecated because a real pull may come back empty while messages wait; the emulator
        # returns what is there, and what the test looks for was published before it looks.
        warnings.simplefilter("ignore", DeprecationWarning)
        response = client.pull(
            request={"subscription": subscription, "max_messages": 100,
                     "return_immediately": True},
            timeout=10,
        )  # fmt: skip
        if response.received_messages:
            client.acknowledge(
                request={"subscription": subscription,
                         "ack_ids": [m.ack_id for m in response.received_messages]},
                timeout=30,
            )  # fmt: skip
    return [m.message for m in response.received_messages]


def event(body: Mapping[str, Any], **attributes: str) -> CloudEvent:
    """A Pub/Sub push of one trigger message."""
    return pubsub_event(dict(body), **attributes)


def world(n: int, start: int = 0, second: float = 0) -> reference.Rows:
    """n calls with a monologue each; three share each cursor value, so pages cut ties."""
    ids = [f"c{i:03d}" for i in range(start, start + n)]
    return model(
        call=[call(cid, at(second + i // 3)) for i, cid in enumerate(ids)],
        transcript=[transcript(cid, 0, at(second + i // 3)) for i, cid in enumerate(ids)],
    )


def with_email(data: reference.Rows) -> reference.Rows:
    """The same world plus one email, so the hourly trigger has a second source to run."""
    sf = {"_fivetran_synced": at(0), "_fivetran_deleted": False}
    data["email"] = [{"id": "e1", "subject": "Hi", "sent_at": at(0), "body": "<p>Hello</p>",
                      "thread_id": "th1", "direction": "Outbound", "headers": {"To": "x"},
                      "context": None, **sf}]  # fmt: skip
    data["email_sender"] = [{"email_id": "e1", "email_address": "me@seller.example",
                             "name": "Me", **sf}]  # fmt: skip
    data["email_recipient"] = [{"email_id": "e1", "email_address": "a@client.example",
                                "name": "A", "type": "to", **sf}]  # fmt: skip
    return data


def grow(cloud: Cloud, data: reference.Rows, more: reference.Rows) -> None:
    """Land more rows in BigQuery and in the model of what it holds."""
    land(cloud, more)
    for table, rows in more.items():
        data[table] += rows


def backdate_title(cloud: Cloud, data: reference.Rows, cid: str, title: str) -> None:
    """A late commit: a call edited with a cursor older than any incremental run looks back."""
    g, p = cloud.env.datasets["gong"], cloud.env.bq.project
    stamp = at(-7200)
    dml(cloud.env.bq, f"UPDATE `{p}.{g}.call` SET title = @x, _fivetran_synced = @t"
                      " WHERE id = @id", x=title, t=stamp, id=cid)  # fmt: skip
    (row,) = [c for c in data["call"] if c["id"] == cid]
    row.update(title=title, _fivetran_synced=stamp)


def hard_delete(cloud: Cloud, data: reference.Rows, cid: str) -> None:
    """A delete the cursor cannot see: the row is gone from BigQuery."""
    g, p = cloud.env.datasets["gong"], cloud.env.bq.project
    dml(cloud.env.bq, f"DELETE FROM `{p}.{g}.call` WHERE id = @id", id=cid)
    data["call"] = [c for c in data["call"] if c["id"] != cid]


def watermarks(cloud: Cloud) -> dict[str, datetime]:
    """Stream -> watermark of the calls source."""
    rows = cloud.env.query("SELECT stream, watermark FROM sync_watermarks WHERE source = 'calls'")
    return dict(rows)


def assert_settled(cloud: Cloud, data: reference.Rows) -> None:
    """Every stream's watermark at its newest cursor, no position left, the last run a success."""
    newest = {t: max(r["_fivetran_synced"] for r in data[t]) for t in ("call", "transcript")}
    assert watermarks(cloud) == newest
    assert cloud.env.query(
        "SELECT count(*) FROM sync_watermarks WHERE source = 'calls' AND resume_after IS NOT NULL"
    ) == [(0,)]
    assert cloud.env.query("SELECT last_status FROM sync_status WHERE source = 'calls'") == [
        ("success",)
    ]


# -- the same trigger twice --------------------------------------------------------------------


# An hourly trigger, covered by a run it finds busy, and an explicit one, which must come back.
EITHER_TRIGGER = pytest.mark.parametrize(
    "body", [HOURLY, FULL_REFRESH], ids=["hourly", "full_refresh"]
)


@EITHER_TRIGGER
def test_the_same_trigger_delivered_twice_in_a_row(
    pubsub: PubSub, matrix: Scenario, body: dict[str, Any]
) -> None:
    """At-least-once delivery: the second copy writes nothing and dead-letters nothing again."""
    cloud = pubsub.cloud
    data = world(20)
    data["call"].append(call("bad", at(1), title="x\x00y"))  # a dead letter, once
    land(cloud, data)
    trigger = event(body)
    assert pubsub.deliver("sync_calls", trigger) == 200
    assert pubsub.deliver("sync_calls", trigger) == 200  # the very same event: a redelivery
    matrix.exact(cloud.env, data, "calls", "transcripts")
    matrix.letters(cloud.env, [("calls", ("bad",))])
    assert cloud.env.query("SELECT rows_upserted, rows_deleted FROM sync_status") == [(0, 0)]
    assert len(pull_now(cloud.dead_letters)) == 1, "a redelivery published a dead letter again"


@EITHER_TRIGGER
def test_the_same_trigger_delivered_twice_at_once(
    pubsub: PubSub, matrix: Scenario, body: dict[str, Any]
) -> None:
    """Two copies posted at once: one runs, the other is acked (hourly) or redelivered later."""
    cloud = pubsub.cloud
    data = world(20)
    land(cloud, data)
    trigger = event(body)
    answers = pubsub.race(("sync_calls", trigger), ("sync_calls", trigger))
    pubsub.drain(*[("sync_calls", trigger) for status in answers if status != 200])
    matrix.exact(cloud.env, data, "calls", "transcripts")
    assert pubsub.peak["calls"] == 1, "two runs of calls at once"
    # The running one covers a second hourly trigger; a busy explicit one must come back.
    assert sorted(answers) == ([200, 200] if body is HOURLY else [200, 500])
    assert len(pubsub.runs) == (1 if body is HOURLY else 2)


# -- two different triggers at once ------------------------------------------------------------

ORDERS = {
    "hourly_holds_then_ids": ("hourly", "ids"),
    "ids_holds_then_hourly": ("ids", "hourly"),
    "hourly_holds_then_full_refresh": ("hourly", "full_refresh"),
    "full_refresh_holds_then_hourly": ("full_refresh", "hourly"),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_two_different_triggers_at_once(pubsub: PubSub, matrix: Scenario, order: str) -> None:
    """The hourly all-sources trigger and an ad hoc request overlap; neither is lost.

    Before they arrive, new calls land (the hourly trigger's work), and a call is edited with
    an old cursor (and, for ids, another hard deleted): work only the ad hoc request sees.
    """
    cloud = pubsub.cloud
    targets = ("sync_calls", "sync_emails")
    data = with_email(world(12))
    land(cloud, data)
    pubsub.drain(*[(t, event(HOURLY)) for t in targets])
    grow(cloud, data, world(12, start=100, second=600))
    backdate_title(cloud, data, "c002", "edited long ago")
    holder, other = ORDERS[order]
    if "ids" in (holder, other):  # a full refresh re-reads, but only verify sees hard deletes
        hard_delete(cloud, data, "c001")
    bodies = {"hourly": HOURLY, "full_refresh": FULL_REFRESH,
              "ids": {"sources": ["calls"], "ids": ["c001", "c002"]}}  # fmt: skip
    deliveries = [(t, event(bodies[holder])) for t in targets]
    deliveries += [(t, event(bodies[other])) for t in targets]
    answers = pubsub.race(*deliveries, first=len(targets))
    pubsub.drain(*[d for d, status in zip(deliveries, answers, strict=True) if status != 200],
                 targets=targets)  # fmt: skip
    matrix.exact(cloud.env, data, "calls", "transcripts", "emails")
    assert pubsub.peak["calls"] == 1, "two runs of calls at once"
    # Only a run reading every stream up to now (a full refresh) covers the hourly trigger.
    busy = 200 if (holder, other) == ("full_refresh", "hourly") else 500
    assert answers == [200, 200, busy, 200]  # sync_emails ignores what names only calls


# -- a continuation racing the hourly trigger --------------------------------------------------

RACES = ("hourly_before_the_continuation", "hourly_while_the_continuation_runs",
         "continuation_while_the_hourly_runs")  # fmt: skip


@pytest.mark.parametrize("race", RACES)
def test_a_continuation_racing_the_hourly_trigger(
    pubsub: PubSub, matrix: Scenario, race: str
) -> None:
    """A backfill stopped by its budget continues; the hourly trigger arrives in between."""
    cloud = pubsub.cloud
    pubsub.pages_per_invocation = 2
    data = world(30)
    land(cloud, data)
    assert pubsub.deliver("sync_calls", event(HOURLY)) == 200
    stopped = pubsub.published(["sync_calls"])  # what the run stopped by its budget published
    grow(cloud, data, world(6, start=200, second=5))  # lands while the chain runs, mid-range
    hourly = ("sync_calls", event(HOURLY))
    if race == "hourly_before_the_continuation":
        assert pubsub.deliver(*hourly) == 200
        pubsub.drain(*stopped)
    else:
        assert len(stopped) == 1, "the run stopped by its budget published no continuation"
        running, arriving = stopped[0], hourly
        if race == "continuation_while_the_hourly_runs":
            running, arriving = arriving, running
        assert pubsub.race(running, arriving, first=1) == [200, 200]  # the busy one is covered
        pubsub.drain()
    matrix.exact(cloud.env, data, "calls", "transcripts")
    assert_settled(cloud, data)
    assert pubsub.peak["calls"] == 1, "two runs of calls at once"
    assert pubsub.continuations >= 3, "the backfill never needed its continuations"


def test_a_window_continuation_racing_the_hourly_trigger(pubsub: PubSub, matrix: Scenario) -> None:
    """An ad hoc window stopped by its budget, then the hourly trigger before its continuation.

    The window starts after the watermark's lookback, so it leaves the watermark alone: the
    rows between the two are still the hourly trigger's to read.
    """
    cloud = pubsub.cloud
    data = world(6)
    land(cloud, data)
    pubsub.drain(("sync_calls", event(HOURLY)))
    between = world(6, start=100, second=2 * 3600)  # after the watermark's lookback
    window = world(12, start=200, second=3 * 3600)  # what the window asks for
    grow(cloud, data, between)
    grow(cloud, data, window)
    pubsub.pages_per_invocation = 1
    since = at(3 * 3600) - timedelta(seconds=1)
    assert pubsub.deliver("sync_calls", event({"sources": ["calls"],
                                               "since": since.isoformat()})) == 200  # fmt: skip
    stopped = pubsub.published(["sync_calls"])
    pubsub.pages_per_invocation = None
    pubsub.drain(("sync_calls", event(HOURLY)), *stopped)  # the hourly trigger comes first
    matrix.exact(cloud.env, data, "calls", "transcripts")
    assert_settled(cloud, data)
    assert len(stopped) == 1, "the window stopped by its budget published no continuation"

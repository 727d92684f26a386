"""Pages written behind: one transaction in flight, its failure never hidden, its time once."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest

from gong_sync import positions, sources, state
from gong_sync.bigquery_reader import BigQueryReader, Query, QueryResult
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.runs import RunOptions
from gong_sync.sync import run_source
from gong_sync.write_behind import OverlapClock, WriteBehind
from tests.conftest import Env
from tests.factories import at, call, insert
from tests.faults.test_derivation_cost import CrashOnCommit


def test_a_write_starts_only_once_the_one_before_has_finished() -> None:
    """One transaction in flight: the connection is never shared by two writes."""
    events: list[str] = []

    def write(name: str) -> None:
        events.append(f"{name} starts")
        time.sleep(0.05)
        events.append(f"{name} ends")

    with WriteBehind() as writes:
        writes.submit(lambda: write("page 1"))
        writes.submit(lambda: write("page 2"))
        events.append("mapping page 3")  # the caller goes on while page 2 is written
    assert events.index("page 1 ends") < events.index("page 2 starts")
    assert events[-1] == "page 2 ends"  # leaving the block waited for the write in flight


def test_a_failed_write_is_raised_at_the_next_wait() -> None:
    """The caller learns of it before it counts another page as written."""
    writes = WriteBehind()

    def fail() -> None:
        raise RuntimeError("page 1 failed")

    writes.submit(fail)
    with pytest.raises(RuntimeError, match="page 1 failed"):
        writes.submit(lambda: None)
    writes.wait()  # the failure was handed over once, and nothing is in flight
    with writes:
        pass


def test_a_failed_write_wins_over_the_error_that_ended_the_pages() -> None:
    """Its page came first; the reader's error is kept as its context."""
    started = threading.Event()

    def fail() -> None:
        started.set()
        time.sleep(0.1)
        raise RuntimeError("the write failed")

    def pages() -> None:
        with WriteBehind() as writes:
            writes.submit(fail)
            started.wait()
            raise ValueError("the next page could not be read")

    with pytest.raises(RuntimeError, match="the write failed") as raised:
        pages()
    assert isinstance(raised.value.__context__, ValueError)


def test_the_clock_counts_overlapping_time_once() -> None:
    """Mapping and writing at the same time count as one span of the load phase."""
    clock = OverlapClock()
    inside, release = threading.Event(), threading.Event()

    def write() -> None:
        with clock.running():
            inside.set()
            release.wait()

    thread = threading.Thread(target=write)
    started = time.perf_counter()
    thread.start()
    inside.wait()
    with clock.running():
        time.sleep(0.05)
        release.set()
        thread.join()
    elapsed = time.perf_counter() - started
    assert 0.05 <= clock.seconds <= elapsed  # summed, the two spans would be over 0.1
    with clock.running():
        time.sleep(0.02)
    assert clock.seconds >= 0.07


class ReaderFailingAfter(BigQueryReader):
    """A reader whose query results end in an error after some pages."""

    def __init__(self, *args: object, pages: int) -> None:
        """Fail after this many pages of any result."""
        super().__init__(*args)  # type: ignore[arg-type]
        self.fail_after = pages

    def pages(
        self, query: Query, page_size: int, deadline: float | None = None
    ) -> Iterator[QueryResult]:
        """The pages, then the error."""
        for n, page in enumerate(super().pages(query, page_size, deadline)):
            if n == self.fail_after:
                raise ConnectionError("BigQuery went away")
            yield page


def test_a_page_whose_write_failed_is_not_committed_nor_hidden_by_the_reader(env: Env) -> None:
    """Page 2 fails while page 3's read fails: the run reports page 2, resumes after page 1."""
    calls = [call(f"c{i:02d}", at(i)) for i in range(21)]  # pages of 7
    insert(env.bq, env.datasets, "call", calls)
    reader = ReaderFailingAfter(env.bq, env.settings.bigquery, pages=2)
    settings = dataclasses.replace(env.settings, pages_per_query=3)  # page 3 in page 2's query
    with pytest.raises(RuntimeError, match="second page") as raised:
        run_source(
            sources.get("calls"), settings, reader, env.connect, PostgresDeadLetterSink,
            RunOptions(), CrashOnCommit(2, "the second page's transaction failed", delay=0.3),
        )  # fmt: skip
    assert isinstance(raised.value.__context__, ConnectionError)  # read while page 2 was written
    assert [r[0] for r in env.query("SELECT gong_call_id FROM calls ORDER BY 1")] == [
        f"c{i:02d}" for i in range(7)
    ]
    conn = env.connect()
    try:
        stored = positions.load(conn, "calls", resume=True, since=None).positions["call"]
        assert state.watermarks(conn, "calls")["call"] == at(6)
    finally:
        conn.close()
    assert (stored.cursor, stored.key) == (at(6), ("c06",))
    assert env.sync().status == "success"
    assert env.query("SELECT count(*), count(DISTINCT gong_call_id) FROM calls") == [(21, 21)]

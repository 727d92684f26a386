"""Fetch the next page while the caller writes this one, never waiting past a deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar, cast

from gong_sync.bigquery_reader import OutOfTime

T = TypeVar("T")


def ahead(items: Iterator[T], deadline: float | None) -> Iterator[tuple[T, float]]:
    """Each item with the seconds the caller waited for it, one item fetched in advance.

    The fetch waits on BigQuery while the caller waits on Postgres. Past the deadline
    (a time.monotonic() value) an item still being fetched is abandoned: OutOfTime.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    done = object()
    try:
        pending = pool.submit(next, items, done)
        while True:
            started = time.perf_counter()
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                item = pending.result(timeout=left)
            except FutureTimeout:
                raise OutOfTime("a BigQuery page did not arrive before the deadline") from None
            if item is done:
                return
            pending = pool.submit(next, items, done)
            yield cast(T, item), time.perf_counter() - started
    finally:
        # Not waiting for a fetch still under way: past the deadline, it is abandoned.
        pool.shutdown(wait=False, cancel_futures=True)

"""Write a page's transaction on a thread of its own while the next page is mapped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType


class WriteBehind:
    """At most one transaction in flight; the connection is the writer's until it is waited for.

    Waiting hands the connection back (the future's result orders the two threads), and
    re-raises what the transaction raised: a page is never counted as written unless it was.
    """

    def __init__(self) -> None:
        """Start the writing thread."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[[], None]) -> None:
        """Start this write once the one in flight has finished."""
        self.wait()
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        """Until the write in flight has committed; raises what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> WriteBehind:
        """The writer, for one stream's pages."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Wait for the write in flight, whatever ended the pages: the caller's next statement
        (a rollback, a recorded failure) must not share the connection with it.

        A failed write is raised even over the caller's own error: its page came first.
        """
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


class OverlapClock:
    """Seconds during which any of several overlapping activities was under way.

    Mapping and writing overlap once pages are written behind; their sum would count the
    overlap twice, so the load phase is measured as the time either was running.
    """

    def __init__(self) -> None:
        """No time counted yet."""
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self.seconds = 0.0

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count the time inside, once however many threads are inside at the same time."""
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self.seconds += time.perf_counter() - self._since

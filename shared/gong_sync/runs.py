"""What a run of one source is asked to do, what it reports, and the seams it calls."""

from __future__ import annotations

import contextlib
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from gong_sync.postgres_writer import WriteStats


@dataclass(frozen=True)
class RunOptions:
    """What a run covers: incremental by default, or a refresh, a window, or given ids."""

    full_refresh: bool = False
    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[str, ...] = ()
    deadline: float | None = None  # time.monotonic() value: stop cleanly between pages after it
    # time.monotonic() value by which every call must have returned (the platform's limit,
    # less the time to record the run): BigQuery waits and retries are cut to it.
    hard_deadline: float | None = None
    resume: bool = False  # a continuation: streams finished earlier in the chain are skipped

    @property
    def reads_to_now(self) -> bool:
        """Whether the run reads every stream up to now: it covers an hourly trigger."""
        return not self.ids and self.since is None and self.until is None


@dataclass
class RunStats:
    """The outcome of one run of one source."""

    source: str
    status: str = "running"
    rows_read: int = 0
    rows_upserted: int = 0
    rows_unchanged: int = 0
    rows_deleted: int = 0
    rows_failed: int = 0
    bytes_processed: int = 0
    bytes_billed: int = 0  # on-demand pricing bills these (the emulator reports 0)
    bytes_billed_by_stream: dict[str, int] = field(default_factory=dict)
    # When the run took its source's lock (ISO 8601, UTC): runs of a source never overlap
    # from here to their summary line, which is logged before the lock goes with the session.
    started_at: str | None = None
    duration_seconds: float = 0.0
    # Where the time went: BigQuery (queries and fetching), mapping rows, writing Postgres.
    read_seconds: float = 0.0
    transform_seconds: float = 0.0
    load_seconds: float = 0.0
    # Mapping or writing under way (pages are written while the next maps): the load phase.
    load_phase_seconds: float = 0.0
    pages: int = 0
    commits: int = 0  # transactions this invocation committed: pages and derived batches
    storage_reads: int = 0  # query results read over the Storage Read API; the rest over REST
    continuation_needed: bool = False
    error: dict[str, str] | None = None
    ids_not_found: list[str] = field(default_factory=list)  # of an ids run: none in BigQuery
    rejected_rules: dict[str, int] = field(default_factory=dict)  # dead letters by rule broken
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def add_cost(self, stream: str, processed: int, billed: int) -> None:
        """Count one BigQuery job's bytes, towards the stream whose read asked for it."""
        self.bytes_processed += processed
        self.bytes_billed += billed
        self.bytes_billed_by_stream[stream] = self.bytes_billed_by_stream.get(stream, 0) + billed

    def add_write(self, write: WriteStats) -> None:
        """Fold one write's counts into the run."""
        self.rows_upserted += write.upserted
        self.rows_unchanged += write.unchanged
        self.rows_deleted += write.deleted


class RunHooks:
    """The seams a run calls at its turning points.

    The defaults are the product's behaviour (the time budget is the clock). A caller that
    must observe or steer runs, such as a test counting concurrent runs or spending the
    budget in pages rather than seconds, subclasses this instead of patching the engine.
    """

    def running(self, source: str, options: RunOptions) -> AbstractContextManager[None]:
        """Entered once the run holds its source's lock, left when the run ends."""
        return contextlib.nullcontext()

    def out_of_time(self, stats: RunStats, options: RunOptions) -> bool:
        """Whether the run must stop between pages: its budget is spent."""
        return options.deadline is not None and time.monotonic() > options.deadline

    def before_commit(self, source: str) -> None:
        """Called before each page's writes, inside its transaction."""

"""Reading BigQuery: the client, table schemas, and queries with their cost."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any

from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import BadRequest, NotFound, RetryError
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

from gong_sync import storage_read
from gong_sync.arrow_rows import Row
from gong_sync.bigquery_sql import TableRef, check_columns, referenced_tables
from gong_sync.declarations import Source
from gong_sync.settings import BigQuerySettings

log = logging.getLogger(__name__)


def make_client(settings: BigQuerySettings) -> bigquery.Client:
    """A client for the configured project, or for the emulator when one is set."""
    if settings.emulator_host:
        host = settings.emulator_host
        endpoint = host if host.startswith("http") else f"http://{host}"
        return bigquery.Client(
            project=settings.project or "gong-sync-local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=endpoint),
            location=settings.location,
        )
    return bigquery.Client(project=settings.project, location=settings.location)


# IAM grants take effect after a delay, up to about 7 minutes (IAM "Access change
# propagation"): a read session refused on a fresh deploy is tried again after this long,
# not given up for the life of the instance.
STORAGE_RETRY_SECONDS = 600.0


class OutOfTime(RuntimeError):
    """The run's hard deadline came before a BigQuery answer: stop, a continuation resumes."""


class ResultGone(RuntimeError):
    """An earlier query's result can no longer be read: query again from the position."""


class FallbackRefused(RuntimeError):
    """A source's table is missing where its fallback must not stand in for it."""


class BytesLimitExceeded(RuntimeError):
    """BigQuery refused a query that would bill more than its maximum_bytes_billed.

    Refused before it ran, so nothing was billed. Permanent: the same query over the same
    table bills the same, so retrying cannot help; the limit or the table must change.
    """


# BigQuery's reason and message for a query over its maximum_bytes_billed ("Query exceeded
# limit for bytes billed: 1000. 10485760 or higher required."). The Python client does not
# know the reason, so it raises InternalServerError (500), which would look transient.
BYTES_LIMIT_REASON = "bytesBilledLimitExceeded"
_BYTES_LIMIT_MESSAGE = "exceeded limit for bytes billed"


def _over_bytes_limit(exc: Exception) -> bool:
    reasons = {e.get("reason") for e in getattr(exc, "errors", None) or () if isinstance(e, dict)}
    return BYTES_LIMIT_REASON in reasons or _BYTES_LIMIT_MESSAGE in str(exc).lower()


@dataclass(frozen=True)
class Query:
    """A query with its parameters, what it reads (for errors), and its bytes-billed cap."""

    sql: str
    params: list[Any]
    label: str  # the table or derivation it reads, named in errors
    max_bytes_billed: int | None = None


@dataclass
class QueryResult:
    """Rows as dicts, and what the query cost."""

    rows: Sequence[Row]
    bytes_processed: int
    bytes_billed: int = 0  # what on-demand pricing charges: at least 10 MB per table read
    job_id: str | None = None  # the query job whose result these rows are
    location: str | None = None
    total_rows: int | None = None  # of the whole result, where a page of it says


class BigQueryReader:
    """Resolves a source's logical tables and runs its queries."""

    def __init__(self, client: bigquery.Client, settings: BigQuerySettings) -> None:
        """Bind to a client and the dataset/table naming of this deployment."""
        self.client = client
        self.settings = settings
        # google-api-core's exponential backoff on 429/5xx/connection errors, for API calls
        # and for whole query jobs, bounded so a run fails (and Pub/Sub redelivers) in time.
        self.retry = DEFAULT_RETRY.with_timeout(settings.retry_seconds)
        self.job_retry = DEFAULT_JOB_RETRY.with_timeout(settings.retry_seconds)
        # Results longer than a page are read over the Storage Read API; None: REST only.
        self._read_client = storage_read.make_read_client(settings, client._credentials)
        self._refused_until = float("-inf")
        self.storage_retry_seconds = STORAGE_RETRY_SECONDS
        self.rest_rows = 1000  # a result this short is read over REST: one request holds it
        self.sessions = 0  # results read over the Storage Read API (a REST read counts none)

    @property
    def storage(self) -> Any:
        """The Storage Read client; None where REST only is read, or while it refuses us."""
        return None if time.monotonic() < self._refused_until else self._read_client

    def dataset_for(self, role: str) -> str:
        """The dataset id that holds a role's tables (gong or salesforce)."""
        return {
            "gong": self.settings.gong_dataset,
            "salesforce": self.settings.salesforce_dataset,
        }[role]

    def table(self, logical: str, role: str) -> tuple[TableRef, bigquery.Table]:
        """One table's real name, schema and metadata (a metadata call: no bytes billed)."""
        real = self.settings.table_overrides.get(logical, logical)
        full = f"{self.client.project}.{self.dataset_for(role)}.{real}"
        table = self.client.get_table(
            full, retry=self.retry, timeout=self.settings.request_timeout_seconds
        )
        return TableRef(logical, full, {f.name: f.field_type for f in table.schema}), table

    def table_ref(self, logical: str, role: str) -> TableRef:
        """Look up one table's real name and schema."""
        return self.table(logical, role)[0]

    def tables(self, source: Source, logical: Iterable[str]) -> dict[str, TableRef]:
        """Resolve every logical table a source reads."""
        return {name: self.table_ref(name, source.datasets[name]) for name in logical}

    def resolve(
        self, source: Source, synced: Iterable[str] = ()
    ) -> tuple[Source, dict[str, TableRef]]:
        """The declaration to use and its tables (`synced`: the streams it has read before).

        The fallback stands in only where a table it is declared for (`fallback_for`) does not
        exist and the source never synced from a table only its own declaration reads. One
        that has is misconfigured, or its connector is being rebuilt: the fallback would
        overwrite what those tables gave, so that is an error (FallbackRefused). Any other
        table missing (an account table beside the opportunities, say) is NotFound.
        """
        try:
            tables = self.tables(source, referenced_tables(source))
        except NotFound as exc:
            if source.fallback is None:
                raise
            before = source.read_before(synced)
            absent = [t for t in source.fallback_for if not self._exists(source, t)]
            if absent and not before:
                log.warning(
                    "%s: %s; using the fallback declaration, which reads %s",
                    source.name, exc.message, ", ".join(referenced_tables(source.fallback)),
                )  # fmt: skip
                return self.resolve(source.fallback)
            if not absent:  # a table the fallback does not stand in for: missing, as any
                raise
            named = f"source = '{source.name}' AND stream IN ({', '.join(map(repr, before))})"
            raise FallbackRefused(
                f"{source.name}: {exc.message}. Not falling back to"
                f" {', '.join(referenced_tables(source.fallback))}: it has synced from"
                f" {', '.join(before)} before, and the fallback would overwrite what they gave."
                " Restore the table or correct the dataset setting; to move this source to its"
                f" fallback for good: DELETE FROM sync_streams_read WHERE {named};"
                f" DELETE FROM sync_watermarks WHERE {named};"
            ) from exc
        check_columns(source, tables)
        return source, tables

    def _exists(self, source: Source, logical: str) -> bool:
        """Whether one of a source's tables exists (a metadata call)."""
        try:
            self.table(logical, source.datasets[logical])
        except NotFound:
            return False
        return True

    def _bounds(self, deadline: float | None) -> tuple[Any, Any, float]:
        """Retry policies and request timeout, cut to the time left before the deadline.

        Uncut, one call could take its request timeout plus the whole retry budget after
        the run's last check of its time, and the function be killed mid-write at 540 s.
        """
        if deadline is None:
            return self.retry, self.job_retry, self.settings.request_timeout_seconds
        left = deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime("no time left for a BigQuery request")
        retry_seconds = min(self.settings.retry_seconds, left)
        return (
            self.retry.with_timeout(retry_seconds),
            self.job_retry.with_timeout(retry_seconds),
            min(self.settings.request_timeout_seconds, left),
        )

    @contextmanager
    def _cut_by(self, deadline: float | None) -> Iterator[None]:
        """A retry budget cut to the deadline and spent is the deadline reached: OutOfTime.

        Not a failure: the run stops as partial and its continuation resumes. The page wait
        (prefetch) says the same when it times out first; which of the two comes first is a
        matter of milliseconds. A budget cut when the call began stays cut for every page
        fetched under it (api_core's Retry times each call from its own start).
        """
        cut = deadline is not None and deadline - time.monotonic() < self.settings.retry_seconds
        try:
            yield
        except RetryError as exc:
            if not cut:
                raise
            raise OutOfTime(
                f"BigQuery did not answer before the run's hard deadline: {exc}"
            ) from exc

    def _run(self, query: Query, page_size: int | None, deadline: float | None) -> tuple[Any, Any]:
        retry, job_retry, timeout = self._bounds(deadline)
        config = bigquery.QueryJobConfig(
            query_parameters=query.params, maximum_bytes_billed=query.max_bytes_billed
        )
        try:
            # job_retry=None here: given one, the client wraps jobs.insert in a private retry
            # of its own that ignores ours and keeps trying for 10 minutes. The insert is
            # still retried (by `retry`, bounded), and a failed job is rerun by result().
            job = self.client.query(
                query.sql, job_config=config, retry=retry, job_retry=None, timeout=timeout
            )
            result = job.result(
                page_size=page_size, retry=retry, job_retry=job_retry, timeout=timeout
            )
        except Exception as exc:
            if not _over_bytes_limit(exc):
                raise
            raise BytesLimitExceeded(
                f"the query of {query.label} would bill more than {query.max_bytes_billed:,}"
                f" bytes, its maximum_bytes_billed; BigQuery refused it unbilled ({exc})."
                " Cluster the table on _fivetran_synced (README, Cost), or raise"
                " GONG_SYNC_MAX_BYTES_BILLED"
            ) from None
        return job, result

    def query(self, query: Query, deadline: float | None = None) -> QueryResult:
        """Run a parameterised query and return all its rows (by the deadline, if given)."""
        with self._cut_by(deadline):
            job, result = self._run(query, None, deadline)
            rows = [row for page in self._rows(job, result, None, 0, deadline) for row in page]
        return QueryResult(rows, *_cost(job))

    def pages(
        self, query: Query, page_size: int, deadline: float | None = None
    ) -> Iterator[QueryResult]:
        """Run one query and yield its rows a page at a time, in order (one empty page for
        an empty result, with its cost).

        One query for many pages: BigQuery bills each query's scan, so paging through one
        result costs one scan where a query per page would cost one per page.
        """
        with self._cut_by(deadline):
            job, result = self._run(query, page_size, deadline)
            cost, pages = _cost(job), 0
            for rows in self._rows(job, result, page_size, 0, deadline):
                yield QueryResult(rows, *cost, job.job_id, job.location, result.total_rows)
                cost, pages = (0, 0), pages + 1  # counted once, with the first page
            if not pages:  # an empty result is billed too: one empty page carries its cost
                yield QueryResult([], *cost, job.job_id, job.location, result.total_rows)

    def resume(
        self,
        job_id: str,
        location: str | None,
        start_index: int,
        page_size: int,
        deadline: float | None = None,
    ) -> Iterator[QueryResult]:
        """An earlier query's result, a page at a time from row `start_index`: not billed again.

        BigQuery keeps a query's result (its anonymous destination table) for about 24 hours
        ("Using cached query results"); after that, or for a job that failed, NotFound.
        """
        retry, _, timeout = self._bounds(deadline)
        try:
            with self._cut_by(deadline):
                job = self.client.get_job(job_id, location=location, retry=retry, timeout=timeout)
                if (
                    not isinstance(job, bigquery.QueryJob)
                    or job.state != "DONE"
                    or job.error_result
                ):
                    raise ResultGone(f"query job {job_id} has no result to resume")
                result = job.result(
                    page_size=page_size, start_index=start_index, retry=retry, job_retry=None,
                    timeout=timeout,
                )  # fmt: skip
                for rows in self._rows(job, result, page_size, start_index, deadline):
                    yield QueryResult(rows, 0, 0, job_id, location, result.total_rows)
        except (NotFound, BadRequest) as exc:  # expired, or a start past its end
            raise ResultGone(f"the result of query job {job_id} is gone: {exc}") from None

    def _rows(
        self, job: Any, result: Any, page_size: int | None, skip: int, deadline: float | None
    ) -> Iterator[Sequence[Row]]:
        """A finished query's rows from row `skip` on, in pages: Storage Read, else REST.

        REST when one request holds them all (a session would be one more round trip), when
        the job names no result table, when JSON sits inside a STRUCT or ARRAY (REST parses
        it there, Arrow gives text), or when the Storage Read API refuses this caller.
        """
        left = (result.total_rows or 0) - skip
        if (
            self.storage is None
            or left <= (page_size or self.rest_rows)
            or not job.destination
            or storage_read.nested_json(result.schema)
        ):
            yield from _page_rows(result)
            return
        json_columns = frozenset(f.name for f in result.schema if f.field_type == "JSON")
        read = storage_read.batches(
            self.storage, job.destination, self.client.project, deadline,
            self.settings.request_timeout_seconds,
        )  # fmt: skip
        try:
            first = next(read, None)  # the session: whether this caller may read at all
        except storage_read.UNAVAILABLE as exc:
            log.warning(
                "the Storage Read API is not available (%s); reading over REST for %.0f s",
                exc, self.storage_retry_seconds,
            )  # fmt: skip
            self._refused_until = time.monotonic() + self.storage_retry_seconds
            yield from _page_rows(result)
            return
        self.sessions += 1
        batches = storage_read.skip_rows(read if first is None else chain([first], read), skip)
        # Converted a page at a time: rows as dicts take many times the room Arrow does.
        for page in storage_read.repage(batches, page_size or left):
            yield storage_read.rows(page, json_columns)


def _page_rows(result: Any) -> Iterator[Sequence[Row]]:
    """Each non-empty page of a result, its rows as dicts."""
    names = [f.name for f in result.schema]
    for page in result.pages:
        # Not row.values(): it deep-copies every row, a sixth of the client's CPU in a backfill.
        rows = [dict(zip(names, row, strict=False)) for row in page]
        if rows:
            yield rows


def _cost(job: Any) -> tuple[int, int]:
    """Bytes processed and bytes billed of a finished query job (the emulator reports 0)."""
    return int(job.total_bytes_processed or 0), int(job.total_bytes_billed or 0)

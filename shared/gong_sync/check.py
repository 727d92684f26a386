"""`gong-sync check`: the preflight before a first deploy, and in CI.

It reaches BigQuery, Postgres and Pub/Sub; reads a result over the Storage Read API; finds
every table and column the declarations read; says how big each source table is and whether
BigQuery can prune it on its cursor; and dry-runs the queries of an hourly run to project
what the schedule costs a month.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pg8000.exceptions
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from gong_sync import bigquery_sql as sql
from gong_sync import cost, derivations, sources, state
from gong_sync import storage_read as storage_read_api
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.declarations import Source, Stream
from gong_sync.errors import sqlstate
from gong_sync.postgres import connect
from gong_sync.settings import Settings

log = logging.getLogger(__name__)

RUNS_PER_MONTH = 24 * cost.DAYS_PER_MONTH  # the hourly schedule


@dataclass
class Finding:
    """One line of the preflight: what was checked, and whether it passed."""

    check: str
    level: str  # "ok", "warning" (works, but costs or risks more) or "error"
    message: str
    details: dict[str, Any] | None = None


def _guard(check: str, fn: Callable[[], Finding]) -> Finding:
    """Run one check; an exception is its failure, stated as one line."""
    try:
        return fn()
    except Exception as exc:  # every failure is a finding, never a traceback
        return Finding(check, "error", f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def postgres(settings: Settings) -> Finding:
    """Postgres answers, as the functions would connect to it."""
    conn = connect(settings.postgres)
    try:
        cur = conn.cursor()
        cur.execute("SHOW server_version")
        (version,) = cur.fetchone() or ("?",)
    finally:
        conn.close()
    return Finding("postgres", "ok", f"reachable, server {version}")


def pubsub(settings: Settings) -> Iterator[Finding]:
    """The trigger and dead-letter topics exist and this identity may publish to them."""
    cloud = settings.cloud
    if not cloud.project:
        yield Finding("pubsub", "ok", "no project or emulator configured: nothing to check")
        return
    from google.cloud import pubsub_v1

    try:
        publisher = pubsub_v1.PublisherClient()
    except Exception as exc:  # no credentials: nothing below can work
        yield Finding("pubsub", "error", f"{type(exc).__name__}: {_first_line(exc)}")
        return
    for topic in (cloud.trigger_topic, cloud.dead_letter_topic):
        path = cloud.topic_path(topic)
        yield _guard(f"pubsub {topic}", functools.partial(_topic, publisher, path))


def _topic(publisher: Any, path: str) -> Finding:
    name = f"pubsub {path.rsplit('/', 1)[-1]}"
    try:
        publisher.get_topic(request={"topic": path}, timeout=30)
    except NotFound:  # before the first deploy: `pulumi up` creates it
        return Finding(name, "warning", f"{path} does not exist yet (pulumi up creates it)")
    try:
        granted = publisher.test_iam_permissions(
            request={"resource": path, "permissions": ["pubsub.topics.publish"]}, timeout=30
        ).permissions
    except Exception as exc:  # the emulator offers no IAM
        return Finding(name, "ok", f"{path} exists; IAM not testable here ({_first_line(exc)})")
    if "pubsub.topics.publish" not in granted:
        return Finding(name, "error", f"{path} exists, but this identity may not publish to it")
    return Finding(name, "ok", f"{path} exists, publish allowed")


class SourceCheck:
    """Tables, columns, size and pruning, and the dry-run cost of one source's hourly run."""

    def __init__(
        self,
        source: Source,
        settings: Settings,
        reader: BigQueryReader,
        read: Iterable[str] = (),
    ) -> None:
        """Bind to one source's declaration, the BigQuery it reads, and the streams it has
        read before (state.streams_read: whether a missing table means its fallback)."""
        self.source = source
        self.settings = settings
        self.reader = reader
        self.read = set(read)
        self.tables: dict[str, sql.TableRef] = {}

    def run(self) -> Iterator[Finding]:
        """Every finding for this source; tables first, since the rest needs them."""
        logical = sql.referenced_tables(self.source)
        found = [self._guarded_table(t) for t in logical]
        fallback = self.source.fallback
        missing = {t for t, f in zip(logical, found, strict=True) if f.level == "error"}
        before = self.source.read_before(self.read)
        if fallback is not None and missing & set(self.source.fallback_for) and before:
            yield Finding(
                f"{self.source.name}: declaration",
                "error",
                f"a table of the primary declaration is missing, and the source has read"
                f" {', '.join(before)} before: runs refuse the fallback (README, Fallback)",
            )
        elif fallback is not None and missing & set(self.source.fallback_for):
            # The engine reads the fallback when a table it stands in for is missing
            # and it never read the tables the fallback would replace (BigQueryReader.resolve).
            yield Finding(
                f"{self.source.name}: declaration",
                "warning",
                "a table of the primary declaration is missing ("
                + "; ".join(f.message for f in found if f.level == "error")
                + "); runs will use the fallback declaration",
            )
            self.source, self.tables = fallback, {}
            found = [self._guarded_table(t) for t in sql.referenced_tables(fallback)]
        yield from found
        if any(f.level == "error" for f in found):
            return
        columns = _guard(f"{self.source.name}: columns", self._columns)
        yield columns
        if columns.level != "error":  # the queries name the missing column: no dry run
            yield _guard(f"{self.source.name}: hourly run", self._hourly_cost)

    def _guarded_table(self, logical: str) -> Finding:
        return _guard(f"{self.source.name}: table {logical}", lambda: self._table(logical))

    def _table(self, logical: str) -> Finding:
        role = self.source.datasets[logical]
        ref, table = self.reader.table(logical, role)
        self.tables[logical] = ref
        check = f"{self.source.name}: table {logical}"
        cursors = {s.cursor for s in self.source.streams if s.table == logical}
        details = {
            "table": ref.full_name,
            "rows": table.num_rows,
            "bytes": table.num_bytes,
            "clustering_fields": table.clustering_fields,
            "partitioned_on": table.time_partitioning.field if table.time_partitioning else None,
        }
        size = f"{table.num_rows or 0:,} rows, {cost.human(table.num_bytes or 0)}"
        if not cursors:
            return Finding(check, "ok", f"{ref.full_name}: {size} (joined, not streamed)", details)
        # Clustering prunes on its first column only; partitioning on its column.
        pruned = [*(table.clustering_fields or [])[:1], details["partitioned_on"]]
        if any(c in pruned for c in cursors):
            how = "clustered or partitioned on its cursor: hourly reads are pruned"
            return Finding(check, "ok", f"{ref.full_name}: {size}, {how}", details)
        how = f"not clustered on {', '.join(sorted(cursors))}: every read bills the whole table"
        return Finding(check, "warning", f"{ref.full_name}: {size}; {how} (README, Cost)", details)

    def _columns(self) -> Finding:
        sql.check_columns(self.source, self.tables)
        return Finding(f"{self.source.name}: columns", "ok", "every declared column exists")

    def _hourly_cost(self) -> Finding:
        """Dry-run an hourly run's queries: each stream's page, each target's derivations."""
        now = datetime.now(UTC)
        since = now - self.settings.lookback - timedelta(hours=1)
        per_query: dict[str, int] = {}
        for stream in self.source.streams:
            per_query.update(self._stream_queries(stream, since, now))
        per_query.update(self._derivations())
        total = sum(per_query.values())
        month = total * RUNS_PER_MONTH
        message = (
            f"{len(per_query)} queries, {cost.human(total)} a run; hourly, "
            f"{cost.human(month)} and ${cost.usd(month):.2f} a month (an upper bound where "
            "tables are clustered: a dry run cannot see the pruning)"
        )
        details = {"bytes_per_run": total, "bytes_per_month": month, "queries": per_query,
                   "usd_per_month": round(cost.usd(month), 2)}  # fmt: skip
        return Finding(f"{self.source.name}: hourly run", "ok", message, details)

    def _stream_queries(self, stream: Stream, since: datetime, until: datetime) -> dict[str, int]:
        target = self.source.target(stream.drives) if stream.drives else None
        text = sql.page_query(stream, target, self.tables, has_since=True, has_position=False)
        limit = self.settings.page_size * self.settings.pages_per_query
        params = sql.page_params(stream, self.tables[stream.table], until, limit, since, None)
        out = {stream.table: self._dry_run(text, params)}
        for touch in stream.touches:
            if touch.lookup_sql:
                ids = [bigquery.ArrayQueryParameter("ids", "STRING", [])]
                lookup = sql.resolve(touch.lookup_sql, self.tables)
                out[f"{touch.target} (lookup for {stream.table})"] = self._dry_run(lookup, ids)
        return out

    def _derivations(self) -> dict[str, int]:
        """One derivation per target and set of fed columns: a run batches the rest into it."""
        keys = [bigquery.ArrayQueryParameter("keys", "STRING", [])]
        return {
            name: self._dry_run(sql.derive_query(target, self.tables), keys)
            for name, target in derivations.batched(self.source).items()
        }

    def _dry_run(self, text: str, params: list[Any]) -> int:
        """What on-demand would bill: the dry run's bytes, at least 10 MB per table named."""
        config = bigquery.QueryJobConfig(
            query_parameters=params, dry_run=True, use_query_cache=False
        )
        job = self.reader.client.query(text, job_config=config)
        named = sum(1 for ref in self.tables.values() if sql.quote(ref.full_name) in text)
        return max(int(job.total_bytes_processed or 0), cost.MIN_BILLED_PER_TABLE * named)


def datasets(reader: BigQueryReader) -> Iterator[Finding]:
    """BigQuery answers, and the configured datasets exist."""
    for role in ("gong", "salesforce"):
        name = reader.dataset_for(role)
        yield _guard(f"bigquery {role} dataset", functools.partial(_dataset, reader, name))


def _dataset(reader: BigQueryReader, name: str) -> Finding:
    dataset = reader.client.get_dataset(f"{reader.client.project}.{name}")
    where = f" in {dataset.location}" if dataset.location else ""
    return Finding(f"bigquery dataset {name}", "ok", f"{dataset.full_dataset_id}{where}")


STORAGE_READ = "bigquery storage read"


def storage_read(reader: BigQueryReader) -> Finding:
    """This identity may read a query's result over the Storage Read API, as runs do.

    Refused, runs still work over REST, several times slower: a warning, not an error. The
    query names no table, so it bills nothing.
    """
    if reader.storage is None:
        how = "as configured" if reader.settings.read_api == "rest" else "no endpoint here"
        return Finding(STORAGE_READ, "ok", f"results are read over REST only ({how})")
    job = reader.client.query("SELECT 1 AS x UNION ALL SELECT 2 AS x")
    job.result(max_results=0, timeout=60)
    try:
        read = storage_read_api.batches(
            reader.storage, job.destination, reader.client.project, None, 60
        )
        rows = sum(batch.num_rows for batch in read)
    except storage_read_api.UNAVAILABLE as exc:
        return Finding(
            STORAGE_READ, "warning",
            f"refused ({type(exc).__name__}: {_first_line(exc)}): runs will read over REST,"
            " several times slower. Grant roles/bigquery.readSessionUser on the project and"
            " enable bigquerystorage.googleapis.com (pulumi up does both)",
        )  # fmt: skip
    return Finding(STORAGE_READ, "ok", f"read sessions allowed ({rows} rows read back)")


def run_checks(settings: Settings, reader: BigQueryReader) -> list[Finding]:
    """Every finding: Postgres, Pub/Sub, BigQuery, then each source's tables and cost."""
    findings = [_guard("postgres", lambda: postgres(settings))]
    findings += pubsub(settings)
    findings += datasets(reader)
    findings.append(_guard(STORAGE_READ, lambda: storage_read(reader)))
    read = _streams_read(settings) if findings[0].level == "ok" else {}
    for source in sources.SOURCES.values():
        findings += SourceCheck(source, settings, reader, read.get(source.name, ())).run()
    return findings


def _streams_read(settings: Settings) -> dict[str, set[str]]:
    """Per source, the streams it has read before; none before the first run migrates."""
    conn = connect(settings.postgres)
    try:
        return {name: state.streams_read(conn, name) for name in sources.SOURCES}
    except pg8000.exceptions.DatabaseError as exc:
        if sqlstate(exc) != "42P01":  # undefined_table: no run has migrated, none read
            raise
        return {}
    finally:
        conn.close()


def as_json(findings: list[Finding]) -> list[dict[str, Any]]:
    """The findings as plain data, for `--json`."""
    return [asdict(f) for f in findings]


def failed(findings: list[Finding]) -> bool:
    """Whether any finding is an error: the preflight's exit status."""
    return any(f.level == "error" for f in findings)

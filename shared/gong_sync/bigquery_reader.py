"""Reading BigQuery: the client, table schemas, and queries with their cost."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

from gong_sync.bigquery_sql import TableRef
from gong_sync.declarations import Source
from gong_sync.settings import BigQuerySettings

log = logging.getLogger(__name__)

Row = dict[str, Any]


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


@dataclass
class QueryResult:
    """Rows as dicts, and what the query cost."""

    rows: list[Row]
    bytes_processed: int


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

    def dataset_for(self, role: str) -> str:
        """The dataset id that holds a role's tables (gong or salesforce)."""
        return {
            "gong": self.settings.gong_dataset,
            "salesforce": self.settings.salesforce_dataset,
        }[role]

    def table_ref(self, logical: str, role: str) -> TableRef:
        """Look up one table's real name and schema (a metadata call: no bytes billed)."""
        real = self.settings.table_overrides.get(logical, logical)
        full = f"{self.client.project}.{self.dataset_for(role)}.{real}"
        table = self.client.get_table(full, retry=self.retry)
        return TableRef(logical, full, {f.name: f.field_type for f in table.schema})

    def tables(self, source: Source, logical: Iterable[str]) -> dict[str, TableRef]:
        """Resolve every logical table a source reads."""
        return {name: self.table_ref(name, source.datasets[name]) for name in logical}

    def query(self, sql: str, params: list[Any], page_size: int | None = None) -> QueryResult:
        """Run a parameterised query and return all its rows."""
        job = self.client.query(
            sql,
            job_config=bigquery.QueryJobConfig(query_parameters=params),
            retry=self.retry,
            job_retry=self.job_retry,
        )
        result = job.result(page_size=page_size, retry=self.retry, job_retry=self.job_retry)
        names = [f.name for f in result.schema]
        rows = [dict(zip(names, row.values(), strict=True)) for row in result]
        return QueryResult(rows, int(job.total_bytes_processed or 0))

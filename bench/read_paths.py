"""Reading one query result two ways, as the engine reads it: REST pages and Storage Read."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from google.cloud import bigquery

from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.settings import BigQuerySettings

PAGE_ROWS = 5000


def _read(reader: BigQueryReader, job: bigquery.QueryJob, page: int) -> tuple[int, float]:
    """Rows of a finished job's result, and the seconds reading them took (dicts included)."""
    started = time.perf_counter()
    # list(): a page read as Arrow converts its rows only when they are read; read them all.
    rows = sum(len(list(p.rows)) for p in reader.resume(job.job_id, job.location, 0, page))
    return rows, time.perf_counter() - started


def measure(client: bigquery.Client, settings: BigQuerySettings, table_id: str) -> dict[str, Any]:
    """Rows/s of each read path over the same finished result: the query's own time is not in it."""
    job = client.query(f"SELECT * FROM `{table_id}`")
    total = job.result(max_results=0).total_rows or 0
    rest_reader = BigQueryReader(client, dataclasses.replace(settings, read_api="rest"))
    rest, rest_s = _read(rest_reader, job, PAGE_ROWS)
    storage_reader = BigQueryReader(client, dataclasses.replace(settings, read_api="storage"))
    # A result that fits one page is read over REST; a smaller page only slices Arrow here.
    storage, storage_s = _read(storage_reader, job, min(PAGE_ROWS, max(1, total // 2)))
    if rest != storage or storage_reader.sessions != 1:
        raise RuntimeError(f"{table_id}: REST read {rest} rows, Storage Read {storage}")
    return {
        "table": table_id.rsplit(".", 1)[-1],
        "rows": rest,
        "rest_seconds": round(rest_s, 2),
        "storage_seconds": round(storage_s, 2),
        "rest_rows_per_s": round(rest / rest_s),
        "storage_rows_per_s": round(storage / storage_s),
        "storage_speedup": round(rest_s / storage_s, 2),
    }

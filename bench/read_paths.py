"""Reading one table two ways: the REST pages the engine uses, and the Storage Read API."""

from __future__ import annotations

import time
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
    BigQueryReadGrpcTransport,
)

PAGE_ROWS = 5000


def storage_client(grpc_host: str) -> bigquery_storage_v1.BigQueryReadClient:
    """A Storage Read client for the emulator's gRPC port."""
    # The emulator sends a whole stream slice as one message, beyond gRPC's 4 MiB default.
    channel = grpc.insecure_channel(grpc_host, options=[("grpc.max_receive_message_length", -1)])
    return bigquery_storage_v1.BigQueryReadClient(  # type: ignore[no-untyped-call]
        transport=BigQueryReadGrpcTransport(channel=channel)
    )


def measure(client: bigquery.Client, grpc_host: str, table_id: str) -> dict[str, Any]:
    """Rows/s of each path, both ending in Python dicts as the engine needs them."""
    started = time.perf_counter()
    rows = client.list_rows(table_id, page_size=PAGE_ROWS)
    rest = 0
    for page in rows.pages:
        names = [f.name for f in rows.schema]
        rest += len([dict(zip(names, row, strict=False)) for row in page])
    rest_s = time.perf_counter() - started

    started = time.perf_counter()
    storage = 0
    batches = client.list_rows(table_id).to_arrow_iterable(
        bqstorage_client=storage_client(grpc_host)
    )
    for batch in batches:
        storage += len(batch.to_pylist())
    storage_s = time.perf_counter() - started
    if rest != storage:
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

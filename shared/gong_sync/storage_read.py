"""Reading a query's result with the BigQuery Storage Read API: Arrow, in the result's order.

A query writes its result to a table (an anonymous one unless told otherwise: the job's
`destination`), and the Storage Read API streams any table as Arrow record batches, several
times faster than REST's JSON pages. One stream per session keeps the rows in the order the
query's ORDER BY gave them: google-cloud-bigquery reads ordered results the same way
(`_pandas_helpers.determine_requested_streams`: preserve_order "limits the number of
streams to one"), and keyset paging depends on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc  # type: ignore[import-untyped]
import pyarrow as pa
from google.api_core import exceptions, gapic_v1
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1 import types
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
    BigQueryReadGrpcTransport,
)

from gong_sync.arrow_rows import ArrowRows
from gong_sync.settings import BigQuerySettings

# What a read session answers when the Storage Read API cannot serve this caller at all (the
# API disabled, bigquery.readSessionUser missing, an emulator without it): REST instead.
UNAVAILABLE = (
    exceptions.PermissionDenied,
    exceptions.Forbidden,
    exceptions.Unauthenticated,
    exceptions.MethodNotImplemented,
    exceptions.FailedPrecondition,
)


def make_read_client(
    settings: BigQuerySettings, credentials: Any = None
) -> bigquery_storage_v1.BigQueryReadClient | None:
    """A Storage Read client with the BigQuery client's credentials; None where only REST can be.

    Anonymous credentials mean an emulator: without its gRPC host there is nothing to read.
    """
    if settings.read_api == "rest":
        return None
    if settings.storage_emulator_host:
        # An emulator sends a stream's slice as one message, beyond gRPC's 4 MiB default.
        channel = grpc.insecure_channel(
            settings.storage_emulator_host, options=[("grpc.max_receive_message_length", -1)]
        )
        transport = BigQueryReadGrpcTransport(channel=channel)
        return bigquery_storage_v1.BigQueryReadClient(transport=transport)  # type: ignore[no-untyped-call]
    if settings.emulator_host or isinstance(credentials, AnonymousCredentials):
        return None  # an emulator with no Storage Read endpoint configured
    return bigquery_storage_v1.BigQueryReadClient(credentials=credentials)  # type: ignore[no-untyped-call]


def _table_path(table: bigquery.TableReference) -> str:
    return f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}"


def batches(
    client: bigquery_storage_v1.BigQueryReadClient,
    table: bigquery.TableReference,
    billing_project: str,
    deadline: float | None,
    default_timeout: float,
) -> Iterator[pa.RecordBatch]:
    """Every record batch of a table, in its order, through one read stream.

    A session on an empty table has no stream. The client library reconnects a broken stream
    at the row it had reached (ReadRowsRequest.offset). The stream stays open while the
    caller writes each page, so its timeout is the run's deadline, not one request's: cut
    at a request timeout, a long result failed with DeadlineExceeded, which is not resumed.
    """
    timeout = default_timeout if deadline is None else _left(deadline)
    session = client.create_read_session(
        parent=f"projects/{billing_project}",
        read_session=types.ReadSession(
            table=_table_path(table), data_format=types.DataFormat.ARROW
        ),
        max_stream_count=1,
        timeout=timeout,
    )
    if not session.streams:
        return
    stream = client.read_rows(  # type: ignore[no-untyped-call]
        session.streams[0].name,
        timeout=gapic_v1.method.DEFAULT if deadline is None else _left(deadline),
    )
    schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
    for message in stream:  # ReadRowsResponse: one Arrow IPC record batch each
        data = message.arrow_record_batch.serialized_record_batch
        del message  # its copy of the batch is not kept while the caller works through it
        if data:
            yield pa.ipc.read_record_batch(pa.py_buffer(data), schema)


def _left(deadline: float) -> float:
    """Seconds until the deadline (a sliver once past it, so the call fails at once)."""
    return max(deadline - time.monotonic(), 0.001)


def skip_rows(batches: Iterator[pa.RecordBatch], skip: int) -> Iterator[pa.RecordBatch]:
    """The batches from row `skip` on: a resumed result skips what it had read, unconverted."""
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


def repage(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Record batches of any length as tables of `size` rows (the last one shorter), unconverted."""
    parts: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(size - held, batch.num_rows - offset)
            parts.append(batch.slice(offset, take))  # a view: no rows are copied
            held += take
            offset += take
            if held == size:
                yield pa.Table.from_batches(parts)
                parts, held = [], 0
    if held:
        yield pa.Table.from_batches(parts)


def nested_json(fields: Sequence[bigquery.SchemaField]) -> bool:
    """Whether a JSON value sits in a STRUCT or an ARRAY, where only a top-level one is parsed.

    The REST client parses JSON at any depth; `rows` parses top-level JSON columns only, so a
    result with JSON deeper down is read over REST rather than typed differently.
    """
    for field in fields:
        if field.field_type == "JSON" and field.mode == "REPEATED":
            return True
        if field.field_type in ("RECORD", "STRUCT") and _any_json(field.fields):
            return True
    return False


def _any_json(fields: Sequence[bigquery.SchemaField]) -> bool:
    return any(
        f.field_type == "JSON" or (f.field_type in ("RECORD", "STRUCT") and _any_json(f.fields))
        for f in fields
    )


def rows(batch: pa.Table | pa.RecordBatch, json_columns: frozenset[str]) -> ArrowRows:
    """A page as rows (column name -> value), typed as the REST path types them when read.

    Converted only where something reads them: the mapping encodes what it can from Arrow.
    """
    return ArrowRows(batch, json_columns)

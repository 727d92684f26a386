"""Merge rows into Postgres with dlt: the benchmark's peer measurement.

Each manifest table is either a jsonl file of already-mapped rows, or a BigQuery query that dlt
reads itself (a resource over google-cloud-bigquery yielding Arrow from the Storage Read API:
dlt has no BigQuery source of its own, and this is the fastest read the client offers).
Runs under the private dlt virtualenv (bench/dlt_env.py), never the project's, so it imports
nothing from gong_sync. Usage: python dlt_peer.py MANIFEST.json; prints one JSON line last.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Our column types → dlt data types. text[] has no dlt equivalent; jsonb keeps the list intact.
DATA_TYPES: dict[str, str] = {
    "text": "text",
    "timestamp": "timestamp",
    "json": "json",
    "jsonb": "json",
    "text[]": "json",
    "bigint": "bigint",
    "double": "double",
    "bool": "bool",
    "numeric": "decimal",
    "date": "date",
}
# dlt's own idiom is to yield pages: one list per batch costs far less per row in extract than
# yielding row by row, and still streams the file.
BATCH_ROWS = 5_000
PIPELINE_NAME = "gong_sync_dlt_peer"


def _configure_environment(work_dir: Path) -> None:
    """Settings dlt reads from the environment; set before dlt is imported."""
    # No usage telemetry, and nothing in $HOME: dlt keeps its global dir and data there otherwise.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ.setdefault("DLT_DATA_DIR", str(work_dir / "dlt-data"))
    # dlt also reads .dlt/config.toml and secrets.toml from the project dir (the cwd by default);
    # an empty one keeps stray settings from changing what we measure.
    os.environ.setdefault("DLT_PROJECT_DIR", str(work_dir))
    # Normalize defaults to a process pool with cpu_count workers; pin it to the 2 cores we
    # have so a bigger CI box would not change the figure. Files are split across workers,
    # one file per table here, so both tables normalize in parallel.
    os.environ.setdefault("NORMALIZE__WORKERS", str(min(2, os.cpu_count() or 1)))
    # The loader's default of 20 threads (each a Postgres connection) oversubscribes 2 cores;
    # with one load file per table there are at most a couple of jobs at a time anyway.
    os.environ.setdefault("LOAD__WORKERS", "2")


def _rows(path: Path, counts: dict[str, int], table: str) -> Iterator[list[dict[str, Any]]]:
    """Stream a jsonl file as pages of row dicts, counting rows as they go."""
    import orjson  # a dlt dependency; parses much faster than json, as dlt itself does

    page: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            page.append(orjson.loads(line))
            if len(page) >= BATCH_ROWS:
                counts[table] += len(page)
                yield page
                page = []
    if page:
        counts[table] += len(page)
        yield page


def _bigquery_batches(
    query: str, bigquery: dict[str, str], counts: dict[str, int], table: str
) -> Iterator[Any]:
    """A query's result as Arrow record batches, read over the Storage Read API."""
    import grpc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery as bq
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    client = bq.Client(
        project=bigquery["project"],
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=f"http://{bigquery['rest_host']}"),
    )
    channel = grpc.insecure_channel(
        bigquery["grpc_host"], options=[("grpc.max_receive_message_length", -1)]
    )
    read = bigquery_storage_v1.BigQueryReadClient(  # type: ignore[no-untyped-call]
        transport=BigQueryReadGrpcTransport(channel=channel)
    )
    for batch in client.query(query).result().to_arrow_iterable(bqstorage_client=read):
        counts[table] += batch.num_rows
        yield _flat(batch)


def _flat(batch: Any) -> Any:
    """Nested columns as JSON text: dlt writes Arrow to Postgres as CSV, which has no lists."""
    import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

    table = pa.Table.from_batches([batch])
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [None if v is None else json.dumps(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def _resource(table: dict[str, Any], counts: dict[str, int], bigquery: Any = None) -> Any:
    """One merge resource for a manifest table, with its key and column hints."""
    # Only the dlt venv has dlt; the project's mypy checks this file without it.
    import dlt  # type: ignore[import-not-found,unused-ignore]

    name: str = table["name"]
    counts[name] = 0
    columns: dict[str, dict[str, Any]]
    if "query" in table:  # dlt reads BigQuery and takes the Arrow schema's types
        data = _bigquery_batches(table["query"], bigquery, counts, name)
        columns = {key: {"nullable": False} for key in table["primary_key"]}
    else:
        data = _rows(Path(table["file"]), counts, name)
        columns = {
            column: {"data_type": DATA_TYPES[kind], "nullable": column not in table["primary_key"]}
            for column, kind in table["columns"].items()
        }
    return dlt.resource(
        data,
        name=name,
        table_name=name,
        write_disposition="merge",
        primary_key=table["primary_key"],
        columns=columns,
        # Every nested value must land in its json column, as in the project, never in a child
        # table; the hints already say so, this also covers columns missing from them.
        max_table_nesting=0,
    )


def _step_seconds(pipeline: Any) -> dict[str, float | None]:
    """Seconds spent in extract, normalize and load, from the trace of the last run."""
    seconds: dict[str, float | None] = {"extract": None, "normalize": None, "load": None}
    trace = pipeline.last_trace
    for step in trace.steps if trace else []:
        if step.step in seconds and step.started_at and step.finished_at:
            seconds[step.step] = (step.finished_at - step.started_at).total_seconds()
    return seconds


def main(manifest_path: Path) -> dict[str, Any]:
    """Run one dlt pipeline over every table in the manifest and return the timings."""
    manifest = json.loads(manifest_path.read_text())
    work_dir = Path(manifest["work_dir"])
    work_dir.mkdir(parents=True, exist_ok=True)
    _configure_environment(work_dir)

    import dlt  # type: ignore[import-not-found,unused-ignore]

    dsn = manifest["dsn"]
    destination = dlt.destinations.postgres(
        credentials={
            "host": dsn["host"],
            "port": int(dsn["port"]),
            "username": dsn["user"],
            # dlt insists on a password even where the server trusts local connections.
            "password": dsn.get("password") or "",
            "database": dsn["database"],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(work_dir / "pipelines"),
        destination=destination,
        dataset_name=manifest.get("dataset", "dlt_peer"),
    )
    counts: dict[str, int] = {}
    resources = [_resource(t, counts, manifest.get("bigquery")) for t in manifest["tables"]]
    # Optional: "csv" makes dlt load with COPY; the default (insert_values) is dlt's postgres
    # default, multi-row INSERT statements.
    file_format = manifest.get("loader_file_format")

    started = time.perf_counter()
    info = pipeline.run(resources, loader_file_format=file_format)
    seconds = time.perf_counter() - started
    # dlt 1.x already raises on a failed job by default (load.raise_on_failed_jobs); this keeps
    # a config change from turning a failed load into a fast-looking figure.
    info.raise_on_failed_jobs()

    steps = _step_seconds(pipeline)
    return {
        "seconds": round(seconds, 3),
        "extract_seconds": steps["extract"],
        "normalize_seconds": steps["normalize"],
        "load_seconds": steps["load"],
        "rows": counts,
        "loader_file_format": file_format
        or destination.capabilities().preferred_loader_file_format,
        "dlt_version": dlt.__version__,
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: dlt_peer.py MANIFEST.json")
    print(json.dumps(main(Path(sys.argv[1]))), flush=True)

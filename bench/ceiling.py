"""The bare-COPY ceiling, and the mapped rows handed to the peer, taken from synced tables."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path

from gong_sync import bigquery_sql as sql
from gong_sync import sources
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.declarations import Target
from gong_sync.postgres import Connection
from gong_sync.postgres_writer import ident

SCHEMA = "bench_ceiling"

# Our column types in the peer manifest's words (bench/dlt_peer.py maps them to dlt's).
PEER_TYPES = {
    "text": "text",
    "timestamptz": "timestamp",
    "date": "date",
    "bigint": "bigint",
    "integer": "bigint",
    "numeric": "numeric",
    "double": "double",
    "boolean": "bool",
    "jsonb": "json",
    "text[]": "text[]",
}


def _columns(target: Target) -> list[str]:
    return [*target.column_names]


def copy_out(conn: Connection, target: Target) -> bytes:
    """The target's rows exactly as COPY text, which is also what the sync streams in."""
    out = io.BytesIO()
    cols = ", ".join(ident(c) for c in _columns(target))
    conn.cursor().execute(f"COPY {ident(target.table)} ({cols}) TO STDOUT", stream=out)
    return out.getvalue()


def bare_copy(conn: Connection, target: Target, data: bytes) -> float:
    """Seconds to COPY data into an empty twin of the target with the same indexes."""
    cur = conn.cursor()
    twin = f"{ident(SCHEMA)}.{ident(target.table)}"
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(SCHEMA)}")
    cur.execute(f"DROP TABLE IF EXISTS {twin}")
    cur.execute(f"CREATE TABLE {twin} (LIKE {ident(target.table)} INCLUDING ALL)")
    conn.commit()
    cols = ", ".join(ident(c) for c in _columns(target))
    started = time.perf_counter()
    cur.execute(f"COPY {twin} ({cols}) FROM STDIN", stream=io.BytesIO(data))
    conn.commit()
    seconds = time.perf_counter() - started
    cur.execute(f"DROP TABLE {twin}")
    conn.commit()
    return seconds


def dump_jsonl(conn: Connection, target: Target, path: Path) -> int:
    """Write the target's rows as JSON lines for the peer; returns the row count."""
    cols = ", ".join(ident(c) for c in _columns(target))
    # CSV with separator and quote bytes that JSON never contains raw: each line is verbatim.
    query = (
        f"COPY (SELECT row_to_json(r) FROM (SELECT {cols} FROM {ident(target.table)}) AS r)"
        " TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"
    )
    with path.open("wb") as out:
        conn.cursor().execute(query, stream=out)
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def dlt_table(target: Target, path: Path) -> dict[str, object]:
    """The peer's manifest entry for one target."""
    types = {c.name: PEER_TYPES[c.type] for c in target.columns}
    if target.metadata_alias:
        types["metadata"] = "json"
    return {
        "name": target.table,
        "file": str(path),
        "primary_key": list(target.key),
        "columns": types,
    }


def target_queries(reader: BigQueryReader) -> list[tuple[Target, str]]:
    """Each target with the BigQuery query of all its live rows, as the engine's SQL builds them."""
    out: list[tuple[Target, str]] = []
    for declared in sources.SOURCES.values():
        source, tables = reader.resolve(declared)
        for target in source.targets:
            out.append((target, sql.all_rows_query(target, tables)))
    return out


def row_counts(conn: Connection, targets: Sequence[Target]) -> dict[str, int]:
    """Rows per target table."""
    cur = conn.cursor()
    counts: dict[str, int] = {}
    for target in targets:
        cur.execute(f"SELECT count(*) FROM {ident(target.table)}")
        counts[target.table] = int(cur.fetchall()[0][0])
    return counts

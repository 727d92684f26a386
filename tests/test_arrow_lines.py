"""Fields encoded from Arrow land exactly what the per-row mapper lands, and rejects the same."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from gong_sync import bigquery_sql, sources, storage_read
from gong_sync.arrow_lines import page_fields
from gong_sync.arrow_rows import ArrowRows
from gong_sync.batches import Batch, fill
from gong_sync.bigquery_reader import BigQueryReader, Query
from gong_sync.declarations import Column, Target
from gong_sync.local import demo_data
from gong_sync.postgres import Connection
from gong_sync.postgres_writer import ident
from gong_sync.row_mapping import RowMapper
from tests.conftest import Env

EDGES = Target(
    table="edges",
    key=("id",),
    parent="id",
    columns=(
        Column("id", "text", "id"),
        Column("note", "text", "note"),
        Column("at", "timestamptz", "at"),
        Column("day", "date", "day"),
        Column("small", "integer", "small"),
        Column("big", "bigint", "big"),
        Column("ratio", "double", "ratio"),
        Column("amount", "numeric", "amount"),
        Column("share", "numeric", "share"),  # ROUND of a FLOAT64 is a FLOAT64
        Column("flag", "boolean", "flag"),
        Column("tags", "text[]", "tags"),  # the mapper's, per row
    ),
    from_sql="{edges}",
    deleted_sql="FALSE",
)
PG_TYPES = {"double": "double precision"}
_T = pa.timestamp("us", tz="UTC")


def _edges() -> pa.Table:
    """One row for each value that is hard to encode, and the rows the mapper must reject."""
    n = 16
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "note": ["plain", "tab\there", "back\\slash", "line\nbreak\r", None, "nul\x00",
                     "ünïcødé ✓", "", "x", "x", "x", "x", "x", "x", "x", "x"],
            "at": pa.array(
                [datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
                 datetime(2024, 5, 1, 12, 30, 0, 5, tzinfo=UTC),
                 datetime(1970, 1, 1, tzinfo=UTC), None,
                 datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                 datetime(2100, 1, 1, tzinfo=UTC),
                 datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)] + [None] * 9,
                _T,
            ),
            "day": [date(2024, 2, 29), date(1, 1, 1), None] + [date(999, 1, 2)] * 13,
            "small": [0, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, None] + [7] * 10,
            "big": [0, 2**63 - 1, -(2**63), None] + [1] * 12,
            "ratio": [0.1, -0.0, 5e-324, 1.7976931348623157e308, None, math.nan, math.inf,
                      -math.inf, 1e16, 1e-5, 141.0, 2 / 3, 0.30000000000000004, 1, 2, 3],
            "amount": pa.array(
                [Decimal("1.500000000"), Decimal("100"), Decimal("0"), Decimal("-0.000000001"),
                 Decimal("99999999999999999999999999999.999999999"), Decimal("-0"), None,
                 Decimal("0.000000100"), Decimal("-12.340000000")] + [Decimal(1)] * 7,
                pa.decimal128(38, 9),
            ),
            "share": [31.76, -0.0, 5e-324, math.nan, math.inf, 1e15, 9999999999999998.0, 1e-7,
                      None, 26.0, 0.1, 100.0, 2 / 3, 1.0, 0.0, 1e-4],
            "flag": [True, False, None] + [True] * 13,
            "tags": [["a", "b\tc"], [], None] + [["x"]] * 13,
        }
    )  # fmt: skip


def _fill(target: Target, rows: Sequence[dict[str, Any]]) -> tuple[Batch, list[tuple[str, str]]]:
    batch = Batch(target, target.key)
    rejected = fill(batch, RowMapper(target), rows)
    return batch, [(str(row[target.key[0]]), reason) for row, reason in rejected]


def _landed(conn: Connection, target: Target, lines: Any) -> list[str]:
    """The rows Postgres stores from these COPY lines, each as its text form, sorted.

    In a table shaped as the writer's stage is (the target's own columns), or for a target
    with no table, one of the declared types.
    """
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS landed")
    cols = ", ".join(ident(c) for c in target.column_names)
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (target.table,))
    if cur.fetchall()[0][0]:
        cur.execute(f"CREATE TEMP TABLE landed AS SELECT {cols} FROM {ident(target.table)} LIMIT 0")
    else:
        defs = [f"{ident(c.name)} {PG_TYPES.get(c.type, c.type)}" for c in target.columns]
        if target.metadata_alias:
            defs.append("metadata jsonb")
        cur.execute(f"CREATE TEMP TABLE landed ({', '.join(defs)})")
    if lines:
        cur.execute("COPY landed FROM STDIN", stream=["".join(lines).encode()])
    cur.execute("SELECT landed::text FROM landed ORDER BY 1")
    return [r[0] for r in cur.fetchall()]


def assert_same_landing(env: Env, target: Target, rows: ArrowRows) -> int:
    """Arrow and the mapper reject the same rows for the same reasons and land equal rows."""
    arrow, arrow_rejects = _fill(target, rows)
    mapper, mapper_rejects = _fill(target, list(rows))  # a plain list: the mapper does all
    assert arrow_rejects == mapper_rejects
    assert arrow.kept == mapper.kept
    assert arrow.kept_keys == mapper.kept_keys
    assert arrow.lines.keys() == mapper.lines.keys()
    conn = env.connect()
    try:
        got = _landed(conn, target, arrow.lines.values())
        assert got == _landed(conn, target, mapper.lines.values())
    finally:
        conn.close()
    page = page_fields(target, rows)
    return sum(page.clean) if page else 0


def test_hard_values_land_as_the_mapper_lands_them(env: Env) -> None:
    """Escapes, bounds, NaN, zeros and scales; the rows the mapper rejects, it still rejects."""
    rows = storage_read.rows(_edges(), frozenset())
    clean = assert_same_landing(env, EDGES, rows)
    page = page_fields(EDGES, rows)
    assert page is not None
    # The mapper sees: a NUL, two timestamps and two ints out of range, three floats that are
    # not finite, NUMERICs under 1e-6 (Arrow writes them with an exponent, zero included), and
    # FLOAT64s for numeric that Arrow or repr() would write with an exponent.
    assert [i for i, ok in enumerate(page.clean) if not ok] == [2, 3, 4, 5, 6, 7]
    assert clean == 10
    _, rejects = _fill(EDGES, rows)
    assert [key for key, _ in rejects] == ["r3", "r4", "r5"]  # NaN/inf are valid float8


def test_keys_from_arrow_are_the_mappers_keys(env: Env) -> None:
    """Blank to str.strip() (an ASCII separator too), NUL, missing, and at the byte limit."""
    ids = ["ok", "  ", "\x1c", None, "a\x00b", "a" + "é" * 999, "a" + "✓" * 667, "x" * 2000,
           "x" * 2001, "é"]  # fmt: skip
    rows = storage_read.rows(pa.table({"id": ids, "note": ["n"] * len(ids)}), frozenset())
    page = page_fields(EDGES, rows)
    assert page is not None
    assert page.keys is not None
    # "é" is valid, but not surely so to Arrow's test (a letter or digit in ASCII): the mapper's.
    assert [k is not None for k in page.keys] == [True] + [False] * 4 + [True, False, True] + [
        False
    ] * 2
    assert_same_landing(env, EDGES, rows)
    _, rejects = _fill(EDGES, rows)
    assert len(rejects) == 6


def test_a_page_that_is_not_utf8_is_left_to_the_mapper() -> None:
    """Invalid bytes are the mapper's to replace, as REST decodes them."""
    data = b"okA\xff\xfeB"
    offsets = pa.array([0, 2, 6], pa.int32()).buffers()[1]
    text = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(data)])
    table = pa.table({"id": text, "note": ["a", "b"]})
    assert page_fields(EDGES, storage_read.rows(table, frozenset())) is None


def test_arrow_types_the_mapper_would_reject_stay_the_mappers() -> None:
    """A naive DATETIME, a float in an integer column: not encoded from Arrow."""
    table = pa.table(
        {"id": ["a"], "at": pa.array([datetime(2024, 1, 1)], pa.timestamp("us")), "small": [1.5]}
    )
    page = page_fields(EDGES, storage_read.rows(table, frozenset()))
    assert page is not None
    assert page.names == {"id"}


@pytest.fixture
def demo_env(env: Env) -> Env:
    """The demo dataset, with its nasty rows, in the test's own BigQuery datasets."""
    demo_data.seed_bigquery(env.bq, env.bq.project, env.datasets, demo_data.generate(scale=1))
    return env


def test_every_target_of_the_demo_lands_the_same_from_arrow(demo_env: Env) -> None:
    """Every declared target's rows, read over the Storage Read API, one page at a time."""
    reader = BigQueryReader(demo_env.bq, demo_env.settings.bigquery)
    from_arrow: dict[str, int] = {}
    with_metadata: set[str] = set()
    for declared in sources.SOURCES.values():
        source, tables = reader.resolve(declared)
        for target in source.targets:
            text = bigquery_sql.all_rows_query(target, tables)
            for page in reader.pages(Query(text, [], target.table, None), 40):
                if not isinstance(page.rows, ArrowRows):
                    continue  # a result of one page is read over REST
                clean = assert_same_landing(demo_env, target, page.rows)
                from_arrow[target.table] = from_arrow.get(target.table, 0) + clean
                fields = page_fields(target, page.rows)
                if fields is not None and fields.metadata and clean:
                    with_metadata.add(target.table)
    assert reader.sessions > 0
    # Every target with rows in the demo used Arrow for most of them, metadata objects too.
    assert all(from_arrow[t] > 0 for t in ("calls", "call_speakers", "transcripts", "emails"))
    assert {"calls", "emails"} <= with_metadata

"""The metadata object written from Arrow lands as the mapper's json.dumps of the same row."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pyarrow as pa

from gong_sync import storage_read
from gong_sync.arrow_lines import page_fields
from gong_sync.batches import Batch, fill
from gong_sync.bigquery_sql import METADATA_PREFIX as M
from gong_sync.declarations import Column, Target
from gong_sync.row_mapping import RowMapper
from tests.conftest import Env
from tests.test_arrow_lines import assert_same_landing

META = Target(
    table="meta_edges",
    key=("id",),
    parent="id",
    columns=(Column("id", "text", "x.id"),),
    from_sql="{x} AS x",
    deleted_sql="FALSE",
    metadata_alias="x",
    nul="strip",
)
N = 16
_T = pa.timestamp("us", tz="UTC")


def _hard() -> pa.Table:
    """A value of each hard kind per column; the ones the mapper must write are marked *."""
    return pa.table(
        {
            "id": [f"r{i:02}" for i in range(N)],
            f"{M}s": ['quo"te', "back\\slash", "line\nbreak\r\ttab", "nul\x00*", "bell\x07*",
                      "ünï ✓", "", None, "\u2028", "/", "x", "x", "x", "x", "x", "x"],
            f"{M}j": ['{"b": 1, "a": [1, 2, {"c": null}]}', '{"a": 1, "a": 2}', '"str"',
                      "null", "-0", "12345678901234567890123", '"\\u0000"*', '"\\ud800"*',
                      '"caf\\u00e9"', "[1.50]*", None, '{"v": "at 1.5x"}*', ' {"sp": true} ',
                      "[1, 2]", "[]", '{"t": "\\t"}'],
            f"{M}n": [0, 2**63 - 1, -(2**63), None] + [1] * 12,
            f"{M}b": [True, False, None] + [True] * 13,
            f"{M}t": pa.array(
                [datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
                 datetime(2024, 5, 1, 12, 30, 0, 5, tzinfo=UTC), None,
                 datetime(1, 1, 1, tzinfo=UTC)] + [datetime(2000, 1, 1, tzinfo=UTC)] * 12,
                _T,
            ),
            f"{M}f": [0.1, 26.0, -0.0, None, 1e16, 1e-5, math.nan, 2 / 3] + [1.5] * 8,
            f"{M}z": pa.nulls(N),
        }
    )  # fmt: skip


def test_hard_values_land_as_the_mappers_json(env: Env) -> None:
    """Escapes, JSON texts, bounds and NULLs; the rows it leaves to the mapper are those marked."""
    table = _hard()
    marked = [
        i
        for i in range(N)
        if any(str(v).endswith("*") for v in (table[f"{M}s"][i].as_py(), table[f"{M}j"][i].as_py()))
    ]
    table = table.set_column(1, f"{M}s", pa.array([_unmark(v) for v in table[f"{M}s"].to_pylist()]))
    table = table.set_column(2, f"{M}j", pa.array([_unmark(v) for v in table[f"{M}j"].to_pylist()]))
    rows = storage_read.rows(table, frozenset({f"{M}j"}))
    assert_same_landing(env, META, rows)
    page = page_fields(META, rows)
    assert page is not None
    assert page.metadata
    # Beyond the marked: a time Postgres cannot store (year 1), doubles repr writes with an
    # exponent, or that are not finite (the mapper rejects NaN inside JSON).
    assert [i for i, ok in enumerate(page.clean) if not ok] == sorted({*marked, 3, 4, 5, 6})


def _unmark(value: str | None) -> str | None:
    return value[:-1] if value is not None and value.endswith("*") else value


def test_a_column_of_another_type_leaves_the_object_to_the_mapper(env: Env) -> None:
    """A DATE (or NUMERIC, STRUCT...) among the columns: the mapper writes every object."""
    table = pa.table({"id": ["a", "b"], f"{M}s": ["x", "y"], f"{M}d": [date(2024, 1, 1), None]})
    rows = storage_read.rows(table, frozenset())
    page = page_fields(META, rows)
    assert page is not None
    assert not page.metadata
    assert_same_landing(env, META, rows)


def test_a_page_of_clean_objects_is_never_converted_to_dicts() -> None:
    """A call's row needs no dict when Arrow writes its columns and its object."""
    table = _hard().slice(12, 4)  # rows with nothing for the mapper
    rows = storage_read.rows(table, frozenset({f"{M}j"}))
    batch = Batch(META, META.key)
    assert fill(batch, RowMapper(META), rows) == []
    assert len(batch.lines) == 4
    assert rows._all is None
    assert not rows._some

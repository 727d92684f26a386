"""A page read as Arrow gives, by row, column or slice, exactly what a full conversion gives."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from gong_sync import arrow_rows
from gong_sync.arrow_rows import ArrowRows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _table(n: int) -> pa.Table:
    return pa.table(
        {
            "id": [f"r{i}" if i % 7 else None for i in range(n)],
            "doc": [f'{{"i": {i}}}' for i in range(n)],
            "amount": pa.array([Decimal(i) / 4 for i in range(n)], pa.decimal128(38, 9)),
            "at": pa.array(
                [T0 + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
        }
    )


def test_any_way_of_reading_a_page_gives_the_full_conversion() -> None:
    table = _table(200)
    whole = arrow_rows.convert(table, frozenset({"doc"}))
    assert whole[3] == {
        "id": "r3",
        "doc": {"i": 3},
        "amount": Decimal("0.75"),
        "at": T0 + timedelta(seconds=3),
    }
    rows = ArrowRows(table, frozenset({"doc"}))
    assert len(rows) == 200
    assert [rows[i] for i in (0, 5, -1, 199)] == [whole[0], whole[5], whole[-1], whole[199]]
    assert rows._all is None  # a few rows were converted on their own
    assert arrow_rows.column(rows, "amount") == [r["amount"] for r in whole]
    tail = rows[190:]
    assert isinstance(tail, ArrowRows)
    assert list(tail) == whole[190:]
    assert rows[::2] == whole[::2]
    with pytest.raises(IndexError):
        rows[200]
    assert rows == whole
    assert list(rows) == whole


def test_past_a_few_single_rows_the_page_is_converted_once() -> None:
    rows = ArrowRows(_table(100), frozenset())
    for i in range(64):
        rows[i]
    assert rows._all is None
    rows[64]
    assert rows._all is not None
    assert rows._some == {}
    assert arrow_rows.column(rows, "id")[:8] == [None, "r1", "r2", "r3", "r4", "r5", "r6", None]


@pytest.mark.parametrize("arrow", [False, True])
def test_the_first_descent_is_found_in_arrow_as_in_python(arrow: bool) -> None:
    def page(seconds: list[int | None]) -> Sequence[dict[str, Any]]:
        values = [None if s is None else T0 + timedelta(seconds=s) for s in seconds]
        if arrow:
            return ArrowRows(
                pa.table({"c": pa.array(values, pa.timestamp("us", "UTC"))}), frozenset()
            )
        return [{"c": v} for v in values]

    assert arrow_rows.first_descent(page([1, 1, 2, 5]), "c", None) is None
    assert arrow_rows.first_descent(page([1, 1, 2, 5]), "c", T0) is None
    assert arrow_rows.first_descent(page([1, 2]), "c", T0 + timedelta(seconds=2)) == 0
    assert arrow_rows.first_descent(page([1, 3, 2, 1]), "c", None) == 2
    assert arrow_rows.first_descent(page([]), "c", T0) is None


def test_arrow_allocates_from_the_system_allocator() -> None:
    """Not mimalloc, which held 20-45 MB more at the peak of a 1M-row backfill."""
    assert pa.default_memory_pool().backend_name == "system"

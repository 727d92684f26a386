"""A page read as Arrow, seen as rows typed as REST types them, converted only where looked at.

Rows as dicts take many times the room and time Arrow does. The mapping encodes most of a
page column at a time from Arrow (`arrow_lines`), so a page converts a row to a dict only
when something reads that row: a row the mapper must judge, a dead letter, the last row's
position. Whatever reads the rows gets exactly the values a full conversion gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc

from gong_sync import fast_json

Row = dict[str, Any]
# Arrow's default pool here is mimalloc, which keeps pages it freed: a calls backfill at 1M
# transcript rows peaked 20-45 MB higher on it than on the system allocator, for no gain in
# speed (jemalloc was no steadier: 251-328 MB). Pages are allocated and freed whole.
pa.set_memory_pool(pa.system_memory_pool())
_WIDE = Context(prec=100)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Past this many rows read one by one, converting the whole page once is cheaper.
_ONE_BY_ONE = 64


class ArrowRows(Sequence[Row]):
    """A page's rows (column name -> value) over the Arrow table they come from."""

    def __init__(self, table: pa.Table | pa.RecordBatch, json: frozenset[str]) -> None:
        """Keep the table and the names of its JSON columns (text in Arrow, parsed in rows)."""
        self.table = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
        self.json = json
        self._all: list[Row] | None = None
        self._some: dict[int, Row] = {}

    def __len__(self) -> int:
        """The page's row count, without converting anything."""
        return int(self.table.num_rows)

    @overload
    def __getitem__(self, i: int) -> Row: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Row]: ...

    def __getitem__(self, i: int | slice) -> Row | Sequence[Row]:
        """Row i, converted on its own while few have been; rows i:j, still unconverted."""
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if self._all is not None or step != 1:
                return self.rows()[i]
            return ArrowRows(self.table.slice(start, max(stop - start, 0)), self.json)
        if self._all is not None:
            return self._all[i]
        n = len(self)
        at = i + n if i < 0 else i
        if not 0 <= at < n:
            raise IndexError(i)
        if at not in self._some:
            if len(self._some) >= _ONE_BY_ONE:
                return self.rows()[at]
            self._some[at] = convert(self.table.slice(at, 1), self.json)[0]
        return self._some[at]

    def __iter__(self) -> Iterator[Row]:
        """Every row, converting the page once."""
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        """Equal to a list of the same rows, as the list it stands for."""
        if isinstance(other, ArrowRows):
            other = other.rows()
        return isinstance(other, list) and self.rows() == other

    __hash__ = None  # type: ignore[assignment]  # mutable in what it holds, as a list is

    def rows(self) -> list[Row]:
        """The whole page as dicts, converted once."""
        if self._all is None:
            self._all = convert(self.table, self.json)
            self._some = {}
        return self._all

    def column(self, name: str) -> list[Any]:
        """One column's values, as the rows hold them, without converting the others."""
        if self._all is not None:
            return [row[name] for row in self._all]
        return _values(self.table.column(name), name in self.json)


def first_descent(rows: Sequence[Row], name: str, after: Any) -> int | None:
    """The first row whose value is below the one before it (row 0: below `after`, if given).

    Compared in Arrow where the page was read as Arrow and the column has no NULL.
    """
    if not isinstance(rows, ArrowRows) or not len(rows) or rows.table.column(name).null_count:
        values = column(rows, name)
        previous = [after, *values][: len(values)]
        return next(
            (i for i, (v, p) in enumerate(zip(values, previous, strict=True))
             if p is not None and v < p),
            None,
        )  # fmt: skip
    values = rows.table.column(name)
    if after is not None and pc.less(values[0], pa.scalar(after, values.type)).as_py():
        return 0
    below = pc.less(values.slice(1), values.slice(0, len(values) - 1))
    at = pc.index(below, True).as_py()
    return None if at < 0 else at + 1


def joined(parts: Sequence[Sequence[Row]]) -> Sequence[Row]:
    """Pages (or slices of them) as one: still Arrow, unconverted, where every part is."""
    parts = [part for part in parts if len(part)]
    if parts and all(isinstance(p, ArrowRows) and p._all is None for p in parts):
        arrow = [p for p in parts if isinstance(p, ArrowRows)]
        json = arrow[0].json
        if all(p.json == json and p.table.schema == arrow[0].table.schema for p in arrow):
            return ArrowRows(pa.concat_tables([p.table for p in arrow]), json)
    return [row for part in parts for row in part]


def column(rows: Sequence[Row], name: str) -> list[Any]:
    """One column of a page's rows; from Arrow alone where the page was read as Arrow."""
    if isinstance(rows, ArrowRows):
        return rows.column(name)
    return [row[name] for row in rows]


def convert(table: pa.Table, json_columns: frozenset[str]) -> list[Row]:
    """Rows (column name -> value), typed as the REST path types them.

    JSON arrives as its text and NUMERIC at Arrow's fixed scale; REST parses the one and
    gives the other without trailing zeros, and the mapping downstream sees one form.
    Built column by column, each column in the fastest way that gives REST's values.
    """
    names = table.schema.names
    columns = [
        _values(values, name in json_columns)
        for name, values in zip(names, table.columns, strict=True)
    ]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _plain(value: Decimal) -> Decimal:
    """A NUMERIC without the trailing zeros of Arrow's fixed scale, a whole one without exponent.

    In a context wide enough for BIGNUMERIC's 77 digits: the default 28 would round or raise.
    """
    if value == value.to_integral_value(context=_WIDE):
        return value.quantize(Decimal(1), context=_WIDE)
    return value.normalize(context=_WIDE)


def _strings(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    """A string column's values; bytes that are not UTF-8 become U+FFFD, as REST decodes them."""
    try:
        return array.to_pylist()  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        raw = array.cast(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
        return [None if v is None else v.decode("utf-8", "replace") for v in raw.to_pylist()]


def _values(column: pa.Array | pa.ChunkedArray, is_json: bool) -> list[Any]:
    """One column's values as REST gives them."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = _strings(column)
        return [None if v is None else fast_json.loads(v) for v in values] if is_json else values
    if pa.types.is_decimal(kind):
        return [None if v is None else _plain(v) for v in column.to_pylist()]
    if pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz in (None, "UTC", "+00:00"):
        # From microseconds: pyarrow's own datetimes with a time zone cost five times more.
        # UTC as datetime.timezone.utc, as the REST client gives it.
        epoch = _EPOCH if kind.tz else _EPOCH.replace(tzinfo=None)
        micros = column.cast(pa.int64()).to_pylist()
        return [None if v is None else epoch + timedelta(microseconds=v) for v in micros]
    return column.to_pylist()  # type: ignore[no-any-return]

"""A page's COPY fields encoded column at a time with Arrow compute, for the rows that allow it.

The per-row mapper (`row_mapping.RowMapper`) stays the definition of a target row. A column
is encoded here only where its Arrow type is the one that mapper expects, and only for rows
in which nothing could make that mapper reject or alter a value (a NUL, a timestamp outside
its window, an int out of range, a float that is not finite, a NUMERIC Arrow writes with an
exponent); a key only where it is surely valid. Those rows, columns a transform or the
metadata object supply, JSON, and pages holding bytes that are not UTF-8 all go through the
mapper as before: reasons and stored values are the same either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gong_sync import arrow_metadata
from gong_sync.arrow_rows import ArrowRows
from gong_sync.arrow_text import Encoded, clean, escaped, float_repr, isoformat, never, special
from gong_sync.declarations import Column, Target
from gong_sync.row_mapping import KEY_MAX_BYTES

_INT32 = 2**31


def _text(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    # A NUL is rejected or stripped by the mapper, by the target's policy: it decides.
    present = special(values)
    if b"\x00" not in present:
        return escaped(values, present), never(values)
    return escaped(values, present), clean(pc.match_substring(values, "\x00"))


def _timestamp(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    got = isoformat(values)
    return None if got is None else (pc.fill_null(got[0], "\\N"), got[1])


def _date(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    if not pa.types.is_date32(values.type):
        return None
    return pc.fill_null(values.cast(pa.string()), "\\N"), never(values)


def _integer(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    if not pa.types.is_int64(values.type):
        return None
    if col.type == "integer":
        outside = pc.or_(pc.less(values, -_INT32), pc.greater_equal(values, _INT32))
    else:
        outside = never(values)
    return pc.fill_null(values.cast(pa.string()), "\\N"), clean(outside)


def _double(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    if not pa.types.is_float64(values.type):
        return None
    # Arrow writes the shortest text that reads back as the same double, as repr() does.
    return pc.fill_null(values.cast(pa.string()), "\\N"), clean(pc.invert(pc.is_finite(values)))


def _numeric(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    if not pa.types.is_decimal(values.type):
        return None
    text = values.cast(pa.string())
    # Arrow writes a value under 1e-6 (zero too, "0E-9") with an exponent: the mapper's.
    scientific = pc.match_substring_regex(text, "E")  # RE2 finds a literal fastest
    if values.type.scale > 0:  # no trailing zeros of the fixed scale, as the mapper's value
        text = pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".")
    return pc.fill_null(text, "\\N"), clean(scientific)


def _float_numeric(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    """A FLOAT64 (ROUND of a FLOAT64) in a numeric column, as repr() writes it."""
    text, suspect = float_repr(values)
    return pc.fill_null(text, "\\N"), suspect


def _number(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    """A numeric column holds what BigQuery types NUMERIC, or FLOAT64 (ROUND of a FLOAT64)."""
    return (_float_numeric if pa.types.is_float64(values.type) else _numeric)(col, values)


def _boolean(col: Column, values: pa.ChunkedArray) -> Encoded | None:
    if not pa.types.is_boolean(values.type):
        return None
    text = pc.if_else(values, "t", "f")
    return pc.fill_null(text, "\\N"), never(values)


_VECTOR: dict[str, Callable[[Column, pa.ChunkedArray], Encoded | None]] = {
    "text": _text,
    "timestamptz": _timestamp,
    "date": _date,
    "bigint": _integer,
    "integer": _integer,
    "double": _double,
    "numeric": _number,
    "boolean": _boolean,
}


@dataclass(frozen=True)
class PageFields:
    """A page's fields from Arrow: runs of adjacent columns, already joined by tabs.

    `parts` holds, in column order, a run's joined fields (one string a row) or the index of
    a column the mapper encodes per row; `clean[i]` says row i may use them, and `keys[i]`
    is row i's key where Arrow could tell the mapper accepts it. `transformed`: the target's
    transform ran on Arrow, so a clean row's transformed columns are among the parts.
    """

    parts: tuple[list[str] | int, ...]
    clean: list[bool]
    names: frozenset[str]  # the columns encoded here
    keys: list[tuple[str, ...] | None] | None = None
    transformed: bool = False
    metadata: bool = False  # the metadata object ends the last part

    @property
    def whole(self) -> bool:
        """Every column of a clean row is encoded here (the metadata object too, if it is
        the target's): its line needs no per-row mapping."""
        return len(self.parts) == 1 and not isinstance(self.parts[0], int)


def complete(target: Target) -> bool:
    """Whether Arrow can encode every column of this target's clean rows (no dicts needed).

    The metadata object counts as encoded: a page whose columns it cannot write converts
    its rows when the mapper first asks.
    """
    if target.transform is not None and target.arrow_transform is None:
        return False
    return all(col.sql is None or col.type in _VECTOR for col in target.columns)


def page_fields(target: Target, rows: Sequence[dict[str, Any]]) -> PageFields | None:
    """The fields Arrow can encode for this page, or None where the mapper must do every row."""
    if not isinstance(rows, ArrowRows) or not len(rows):
        return None
    table = rows.table
    try:
        table.validate(full=True)  # bytes that are not UTF-8: the mapper's replacement rules
    except pa.ArrowInvalid:
        return None
    columns = target.columns
    encoded = _transformed(target, rows)
    transformed = bool(encoded)
    for i, col in enumerate(columns):
        if col.sql is None or col.name in rows.json or col.name not in table.column_names:
            continue
        vector = _VECTOR.get(col.type)
        got = vector(col, table.column(col.name)) if vector else None
        if got is not None:
            encoded[i] = got
    metadata = arrow_metadata.metadata_field(table, rows.json) if target.metadata_alias else None
    if metadata is not None:  # the last field of a line, after every column
        encoded[len(columns)] = metadata
    if not encoded:
        return None
    suspect = functools.reduce(pc.or_, (mask for _, mask in encoded.values()))
    parts = _parts(encoded, len(columns) + (metadata is not None))
    names = frozenset(columns[i].name for i in encoded if i < len(columns))
    keys = _keys(target.key, table)
    clean_rows = pc.invert(suspect).to_pylist()
    return PageFields(parts, clean_rows, names, keys, transformed, metadata is not None)


def _parts(encoded: dict[int, Encoded], count: int) -> tuple[list[str] | int, ...]:
    """Runs of adjacent encoded fields joined by tabs, and the indexes of the others."""
    parts: list[list[str] | int] = []
    run: list[pa.ChunkedArray] = []
    for i in range(count):
        if i in encoded:
            run.append(encoded[i][0])
            continue
        if run:
            parts.append(_joined(run))
            run = []
        parts.append(i)
    if run:
        parts.append(_joined(run))
    return tuple(parts)


def _transformed(target: Target, rows: ArrowRows) -> dict[int, Encoded]:
    """The columns the target's transform supplies, from its Arrow form; {} if it has none.

    Only when that form supplies every one of them: a row's line then needs no transform.
    """
    if target.transform is None or target.arrow_transform is None:
        return {}
    got = target.arrow_transform(rows.table, rows.json)
    if got is None:
        return {}
    fields, suspect = got
    supplied = {i: col for i, col in enumerate(target.columns) if col.sql is None}
    if {col.name for col in supplied.values()} != set(fields):
        wanted = sorted(col.name for col in supplied.values())
        raise ValueError(f"{target.table}: its Arrow transform must supply exactly {wanted}")
    return {i: (fields[col.name], clean(suspect)) for i, col in supplied.items()}


def _joined(run: list[pa.ChunkedArray]) -> list[str]:
    if len(run) == 1:
        return run[0].to_pylist()  # type: ignore[no-any-return]
    return pc.binary_join_element_wise(*run, "\t").to_pylist()  # type: ignore[no-any-return]


def _keys(names: Sequence[str], table: pa.Table) -> list[tuple[str, ...] | None] | None:
    """Each row's key as the mapper's `key_of` gives it, where Arrow can tell it is valid.

    Valid for sure: present, holding a letter or digit (no strip() blanks it), no NUL, and
    at most KEY_MAX_BYTES in all. Every other row's key is the mapper's to judge.
    """
    texts: list[pa.ChunkedArray] = []
    for name in names:
        if name not in table.column_names:
            return None
        values = table.column(name)
        if pa.types.is_int64(values.type):
            values = values.cast(pa.string())
        elif not pa.types.is_string(values.type):
            return None
        texts.append(values)
    good = functools.reduce(
        pc.and_,
        (
            pc.and_(
                pc.match_substring_regex(text, "[0-9A-Za-z]"),
                pc.invert(pc.match_substring_regex(text, "\\x00")),
            )
            for text in texts
        ),
    )
    size = functools.reduce(pc.add, (pc.binary_length(text) for text in texts))
    good = pc.fill_null(pc.and_(good, pc.less_equal(size, KEY_MAX_BYTES)), False)
    keys = zip(*(text.to_pylist() for text in texts), strict=True)
    return [key if ok else None for key, ok in zip(keys, good.to_pylist(), strict=True)]

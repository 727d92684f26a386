"""A page's `metadata` objects written as JSON text with Arrow compute, for the rows that allow it.

The per-row mapper builds the object from the row's unmapped columns and `json.dumps` it;
Postgres parses either text into the same `jsonb` value. Each column is written as JSON only
where its type's text form is surely that value: strings (escaped), integers, booleans,
BigQuery TIMESTAMPs (as `isoformat()` writes them), doubles as `repr()` writes them, and JSON
columns embedded as BigQuery gives their text. A row holding anything the mapper would
change or judge (a NUL, a control character, a double outside repr's plain range, in JSON
text a number with a fraction or exponent, the escape of a NUL or a surrogate, a BOM) is the
mapper's; a page with a column of any other type is the mapper's whole.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from gong_sync.arrow_text import (
    Encoded,
    clean,
    escaped,
    float_repr,
    isoformat,
    never,
    special,
)
from gong_sync.bigquery_sql import METADATA_PREFIX

# A column name goes into the JSON text as it is: BigQuery's names need no escaping.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# In a string: control characters JSON must escape and Python would (NUL: stripped or
# rejected by the target's policy); tab, newline and return are escaped here.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_STRING_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_PLAIN_IN_STRING = bytes(b for b in range(256) if b not in b'\\"\n\r\t')
# In JSON text: control characters and a BOM (Python's parser refuses them raw), the escapes
# of a NUL and of a surrogate, and a number Python would respell (1.50 is 1.5 to it, not to
# jsonb); a string that merely looks like one ("at 1.5x") only costs a row its speed.
_JSON_SUSPECT = (
    r"[\x00-\x1f\x{feff}]|\\u0000|\\u[dD][89a-fA-F]"
    r"|(?:^|[\[:,\s])-?[0-9]+(?:\.|[eE])"  # a number starts a text or follows [ : , or a space
)


def metadata_field(table: pa.Table, json_columns: frozenset[str]) -> Encoded | None:
    """Each row's metadata object as a COPY field, and the rows the mapper must build."""
    names = sorted(n for n in table.column_names if n.startswith(METADATA_PREFIX))
    parts: list[pa.ChunkedArray | str] = []
    suspects: list[pa.ChunkedArray] = []
    for name in names:
        key = name[len(METADATA_PREFIX) :]
        if not _NAME.fullmatch(key):
            return None
        got = _json_value(table.column(name), name in json_columns)
        if got is None:
            return None
        parts += [f'"{key}":', pc.fill_null(got[0], "null"), ","]
        suspects.append(clean(got[1]))  # or_ propagates a NULL: none may reach it
    if not names:
        empty = pa.chunked_array([pa.repeat(pa.scalar("{}"), table.num_rows)])
        return empty, never(empty)
    parts[0], parts[-1] = "{" + str(parts[0]), "}"
    text = pc.binary_join_element_wise(*parts, "")
    suspect = functools.reduce(pc.or_, suspects)
    return escaped(text), suspect


def _json_value(values: pa.ChunkedArray, is_json: bool) -> Encoded | None:
    """One column as JSON values (NULL stays NULL), and its rows the mapper must write."""
    kind = values.type
    if is_json:
        if not pa.types.is_string(kind):
            return None
        return values, pc.match_substring_regex(values, _JSON_SUSPECT)
    if pa.types.is_timestamp(kind):
        got = isoformat(values)
        return None if got is None else (_quoted(got[0]), got[1])
    encode = _ENCODERS.get(kind.id)
    return encode(values) if encode else None


def _quoted(text: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.binary_join_element_wise('"', text, '"', "")


def _string(values: pa.ChunkedArray) -> Encoded:
    """A JSON string: backslash first, then quote, newline, return and tab escaped."""
    present = special(values, _PLAIN_IN_STRING)
    text = values
    for plain, escape in _STRING_ESCAPES:
        if plain.encode() in present:
            text = pc.replace_substring(text, plain, escape)
    return _quoted(text), pc.match_substring_regex(values, _CONTROL)


def _integer(values: pa.ChunkedArray) -> Encoded:
    return values.cast(pa.string()), never(values)


def _boolean(values: pa.ChunkedArray) -> Encoded:
    return pc.if_else(values, "true", "false"), never(values)


def _null(values: pa.ChunkedArray) -> Encoded:
    return values.cast(pa.string()), never(values)


_ENCODERS: dict[int, Callable[[pa.ChunkedArray], Encoded]] = {
    pa.string().id: _string,
    pa.int64().id: _integer,
    pa.bool_().id: _boolean,
    pa.float64().id: float_repr,
    pa.null().id: _null,
}

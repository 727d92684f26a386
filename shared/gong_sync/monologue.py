"""Gong's `sentence` JSON as one monologue row: per row, and the same a page at a time in Arrow.

`unpack_monologue` is the definition. `unpack_monologue_arrow` gives, for every row it calls
clean, the fields `unpack_monologue` gives, and leaves the rest to it: a row whose text holds
anything JSON parsers disagree on (control characters, a BOM, NUL and surrogate escapes), an
empty or missing array, an item without an integer start or a string text. A page whose JSON
Arrow cannot type that way (a float anywhere, since the stored JSON is the text as read and
Python would respell a float; a key given twice; mixed types) is left to it whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from gong_sync import fast_json
from gong_sync.arrow_text import column_bytes, escaped
from gong_sync.declarations import RowError

# Where the parsers may differ, or Postgres refuses what Python would not write: the row form.
# Control characters (raw in a string Python refuses them) and a BOM, in any text; the escapes
# of a NUL and of a surrogate, in the text whose strings are the monologue's (a string's own
# escapes are checked once it is decoded, as the next text).
_CONTROL = r"[\x00-\x1f\x{feff}]"
_PAIR = r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_ESCAPES = r"\\u0000|\\u[dD][89a-fA-F]"  # once the pairs are gone: a NUL, a lone surrogate
_NOT_CONTROL = bytes(range(0x20, 0x100))
_SENTENCE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("text", pa.string())])
_AS_LIST = pa.schema([("v", pa.list_(_SENTENCE))])
_AS_TEXT = pa.schema([("v", pa.string())])


def unpack_monologue(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """Turn Gong's `sentence` JSON (an array of {start, end, text}, ms) into one monologue."""
    raw = row.get("sentence")
    try:  # BigQuery's JSON type is always valid; a STRING column (or a stand-in's) may not be
        sentences = fast_json.loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError as exc:
        raise RowError(f"sentence: not valid JSON ({exc})") from None
    if not isinstance(sentences, list) or not sentences:
        raise RowError("sentence: expected a non-empty JSON array of {start, end, text}")
    texts: list[str] = []
    for i, item in enumerate(sentences):
        if not isinstance(item, Mapping) or not isinstance(item.get("start"), int):
            raise RowError(f"sentence[{i}]: expected an object with an integer start (ms)")
        text = item.get("text")
        if not isinstance(text, str):
            raise RowError(f"sentence[{i}].text: expected a string")
        texts.append(text)
    end = sentences[-1].get("end")
    return {
        "timestamp_seconds": Decimal(sentences[0]["start"]) / 1000,
        "end_seconds": Decimal(end) / 1000 if isinstance(end, int) else None,
        "text": " ".join(texts),
        "sentences": sentences,
    }


def unpack_monologue_arrow(
    table: pa.Table, json_columns: frozenset[str]
) -> tuple[dict[str, pa.ChunkedArray], pa.ChunkedArray] | None:
    """`unpack_monologue` for a page: the COPY fields of its clean rows, and the rows it is not."""
    if "sentence" not in table.column_names:
        return None
    texts = table.column("sentence").combine_chunks()
    if not pa.types.is_string(texts.type):
        return None
    suspect = _none(len(texts))
    # A JSON column is parsed once on reading, and a text (a STRING column, or JSON holding
    # a string) once more by the transform: as many passes here.
    if "sentence" in json_columns and pc.any(pc.starts_with(texts, '"')).as_py():
        layer = _parse(texts, _AS_TEXT, escapes=False)
        if layer is None:
            return None
        texts, suspect = layer
    parsed = _parse(texts, _AS_LIST, escapes=True)
    if parsed is None or _has_float(parsed[0].type):  # Python would respell a float
        return None
    return _fields(parsed[0], texts, pc.or_(parsed[1], suspect))


def _parse(
    texts: pa.Array, schema: pa.Schema, *, escapes: bool
) -> tuple[pa.Array, pa.Array] | None:
    """Each text as a JSON value of the schema's type, and the rows only the row form may judge.

    The schema's types are strict (a float where it says int64 fails the parse); fields it
    does not name are inferred.
    """
    suspect = _suspect(texts, escapes)
    safe = pc.if_else(suspect, pa.scalar("null"), pc.fill_null(texts, "null"))
    lines = pc.binary_join_element_wise(pa.scalar('{"v":'), safe, pa.scalar("}"), "")
    document = column_bytes(lines, "\n")  # one JSON object a line, as Arrow's reader reads
    options = pa_json.ParseOptions(explicit_schema=schema, newlines_in_values=False)
    try:
        parsed = pa_json.read_json(pa.BufferReader(document), parse_options=options)
    except pa.ArrowInvalid:  # a key twice, another type, JSON Python reads differently
        return None
    if parsed.num_rows != len(texts):
        return None
    return parsed.column("v").combine_chunks(), suspect


def _suspect(texts: pa.Array, escapes: bool) -> pa.Array:
    """The rows whose text holds what only the row form may judge.

    Looked for in the whole page's bytes first (a C scan each): most pages hold none, and a
    regular expression per row costs more than the parse.
    """
    raw = column_bytes(texts)
    if (
        raw.translate(None, _NOT_CONTROL)
        or b"\xef" in raw  # the lead byte of U+FEFF (and of U+F000..U+FFFF)
        or (escapes and b"\\" in raw and b"\\u" in raw)
    ):
        suspect = pc.match_substring_regex(texts, _CONTROL)
        if escapes:
            unpaired = pc.replace_substring_regex(texts, _PAIR, "")
            suspect = pc.or_(suspect, pc.match_substring_regex(unpaired, _ESCAPES))
        return pc.fill_null(suspect, False)
    return _none(len(texts))


def _none(n: int) -> pa.Array:
    return pa.array([False] * n, pa.bool_())


def _has_float(kind: pa.DataType) -> bool:
    """Whether a float sits anywhere in the type (in the fields the schema left to inference)."""
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return True
    return any(_has_float(kind.field(i).type) for i in range(kind.num_fields))


def _fields(
    lists: pa.ListArray, texts: pa.Array, suspect: pa.Array
) -> tuple[dict[str, pa.ChunkedArray], pa.ChunkedArray] | None:
    """The monologue's COPY fields from the parsed arrays, and the rows left to the row form."""
    items: pa.StructArray = lists.values
    offsets = lists.offsets
    if lists.offset or items.offset or not len(items) or offsets[-1].as_py() != len(items):
        return None  # not laid out as a fresh parse lays it out
    count = pc.list_value_length(lists)
    bad_item = pc.or_(
        pc.is_null(items), pc.or_(pc.is_null(items.field("start")), pc.is_null(items.field("text")))
    )
    rows = pa.array(range(len(lists)), pa.int64())
    bad_row = pc.is_in(rows, value_set=pc.filter(pc.list_parent_indices(lists), bad_item))
    empty = pc.fill_null(pc.equal(count, 0), True)
    suspect = pc.or_(pc.or_(suspect, empty), bad_row)
    zero = pa.scalar(0, offsets.type)
    first = pc.if_else(empty, zero, offsets.slice(0, len(lists)))
    last = pc.if_else(empty, zero, pc.subtract(offsets.slice(1), pa.scalar(1, offsets.type)))
    words = pa.ListArray.from_arrays(offsets, items.field("text"))
    fields = {
        "timestamp_seconds": _milliseconds(pc.take(items.field("start"), first)),
        "end_seconds": _milliseconds(pc.take(items.field("end"), last)),
        "text": escaped(pc.binary_join(words, " ")),
        "sentences": escaped(texts),
    }
    return {name: pa.chunked_array([v]) for name, v in fields.items()}, pa.chunked_array([suspect])


def _milliseconds(ms: pa.Array) -> pa.Array:
    """str(Decimal(ms) / 1000) for each integer: the shortest plain decimal, \\N for NULL."""
    digits = pc.utf8_ltrim(ms.cast(pa.string()), characters="-")
    padded = pc.utf8_lpad(digits, width=4, padding="0")
    text = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(padded, 0, -3), pc.utf8_slice_codeunits(padded, -3), "."
    )
    text = pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".")
    text = pc.if_else(pc.less(ms, 0), pc.binary_join_element_wise("-", text, ""), text)
    return pc.fill_null(text, "\\N")

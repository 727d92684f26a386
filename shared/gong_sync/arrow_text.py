"""Arrow columns as text, the way Python writes the same values: COPY escapes, isoformat, repr.

Shared by the encoders of COPY fields (arrow_lines), of the metadata object (arrow_metadata)
and of the transcripts' monologue (monologue).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from gong_sync.row_mapping import EARLIEST, LATEST

# What a column's encoder gives: its COPY fields, and the rows the mapper must see instead.
Encoded = tuple[pa.ChunkedArray, pa.ChunkedArray]
# Every byte but those COPY escapes and NUL: deleting them leaves the ones a column holds.
_PLAIN_BYTES = bytes(b for b in range(256) if b not in b"\\\t\n\r\x00")


def column_bytes(text: pa.ChunkedArray | pa.Array, separator: str = "") -> bytes:
    """Every text of a column end to end, as UTF-8 (NULL as nothing), for a C scan of a page.

    A search per row costs Arrow a call per string; a page rarely holds what it looks for.
    """
    text = pc.fill_null(text, "")
    whole = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    joined = pc.binary_join(pa.ListArray.from_arrays([0, len(whole)], whole), separator)[0]
    return bytes(joined.as_buffer().to_pybytes())


def special(text: pa.ChunkedArray, plain: bytes = _PLAIN_BYTES) -> bytes:
    """Which bytes not in `plain` occur anywhere in the column (by default: backslash, tab,
    newline, return and NUL, what COPY escapes or refuses)."""
    return column_bytes(text).translate(None, plain)


def escaped(text: pa.ChunkedArray, present: bytes | None = None) -> pa.ChunkedArray:
    """COPY text escaping, as copy_text.field does it (backslash first), NULL as \\N.

    `present`: what `special` found in the column, if the caller has looked already.
    """
    present = special(text) if present is None else present
    for plain, escape in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        if plain.encode() in present:
            text = pc.replace_substring(text, plain, escape)
    return pc.fill_null(text, "\\N")


def clean(suspect: pa.ChunkedArray) -> pa.ChunkedArray:
    """Rows the mapper must see; NULL (no value to judge) is not one."""
    return pc.fill_null(suspect, False)


def never(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """No row of this column needs the mapper."""
    return pc.and_(pc.is_valid(values), pa.scalar(False))


def isoformat(values: pa.ChunkedArray) -> Encoded | None:
    """Each UTC time as datetime.isoformat() writes it (NULL stays NULL), and the rows outside
    what Postgres stores; None unless the type is BigQuery's TIMESTAMP."""
    kind = values.type
    if not pa.types.is_timestamp(kind) or kind.unit != "us" or kind.tz not in ("UTC", "+00:00"):
        return None  # a naive DATETIME is the mapper's to reject; BigQuery's unit is us
    early = pc.less(values, pa.scalar(EARLIEST, kind))
    late = pc.greater_equal(values, pa.scalar(LATEST, kind))
    # Microseconds only when there are any. Cast as a naive UTC time: strftime with a time
    # zone is twenty times slower.
    text = values.cast(pa.timestamp("us")).cast(pa.string())
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    text = pc.replace_substring(text, ".000000", "")
    text = pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")
    return text, clean(pc.or_(early, late))


def float_repr(values: pa.ChunkedArray) -> Encoded:
    """Each double as repr() writes it (NULL stays NULL), and the rows left to Python.

    numeric (and jsonb's numbers) keep the scale they are given, so the text must be repr's,
    not just the same double: Arrow writes 26.0 as "26" and switches to an exponent at other
    bounds. Where it writes no exponent and repr would not either (1e-4 <= |x| < 1e16, or
    zero), the two agree once a whole number gets its ".0"; the other rows are Python's.
    """
    raw = values.cast(pa.string())
    text = pc.if_else(
        pc.match_substring_regex(raw, r"\."), raw, pc.binary_join_element_wise(raw, ".0", "")
    )
    size = pc.abs(values)
    plain = pc.and_(
        pc.invert(pc.match_substring_regex(raw, "e")),
        pc.and_(pc.or_(pc.greater_equal(size, 1e-4), pc.equal(size, 0)), pc.less(size, 1e16)),
    )
    return text, clean(pc.invert(plain))

"""RowMapper and COPY text: every valid row decodes back exactly; every bad one is a RowError.

The decoder below reads Postgres COPY text format as the server does
(https://www.postgresql.org/docs/current/sql-copy.html, "Text Format"), and array literals
as array_in does, so the properties hold against Postgres's reading, not our own encoder's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gong_sync import copy_text, sources
from gong_sync.bigquery_sql import METADATA_PREFIX
from gong_sync.declarations import Column, PgType, RowError, Target, deleted
from gong_sync.row_mapping import KEY_MAX_BYTES, RowMapper

# ---------------------------------------------------------------------------------------------
# A decoder of COPY text format and of text[] literals, written from the Postgres docs.

_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"


def decode_field(raw: str) -> str | None:
    """One COPY text field: \\N alone is NULL; a backslash escapes the character after it."""
    if raw == "\\N":
        return None
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        i += 1
        if char != "\\":
            out.append(char)
            continue
        assert i < len(raw), f"a field ends in a lone backslash: {raw!r}"
        char = raw[i]
        i += 1
        if char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        elif char in _OCTAL:
            digits = char
            while len(digits) < 3 and i < len(raw) and raw[i] in _OCTAL:
                digits += raw[i]
                i += 1
            out.append(chr(int(digits, 8)))
        elif char == "x" and i < len(raw) and raw[i] in _HEX:
            digits = raw[i]
            i += 1
            if i < len(raw) and raw[i] in _HEX:
                digits += raw[i]
                i += 1
            out.append(chr(int(digits, 16)))
        else:  # any other character stands for itself, the backslash among them
            out.append(char)
    return "".join(out)


def decode_line(line: str) -> list[str | None]:
    """One COPY text line: tab-separated fields ended by a newline, no raw CR or LF inside."""
    assert line.endswith("\n"), repr(line)
    body = line[:-1]
    assert "\n" not in body, f"a raw line feed inside a line: {line!r}"
    assert "\r" not in body, f"a raw carriage return inside a line: {line!r}"
    assert body != "\\.", "the line would read as the end-of-data marker"
    return [decode_field(f) for f in body.split("\t")]


def decode_array(text: str) -> list[str | None]:
    """A one-dimensional array literal: quoted items with backslash escapes, or bare NULL."""
    assert text.startswith("{"), text
    assert text.endswith("}"), text
    body = text[1:-1]
    items: list[str | None] = []
    i = 0
    while i < len(body):
        if body[i] == '"':
            i += 1
            chars: list[str] = []
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            i += 1
            items.append("".join(chars))
        else:
            end = body.find(",", i)
            end = len(body) if end < 0 else end
            bare = body[i:end].strip()
            assert bare.upper() == "NULL", f"an unquoted item that is not NULL: {bare!r}"
            items.append(None)
            i = end
        if i < len(body):
            assert body[i] == ",", text
            i += 1
            assert i < len(body), f"a trailing comma: {text}"
    return items


def _no_constant(name: str) -> Any:
    """json.loads hook: NaN and Infinity are not JSON."""
    raise AssertionError(f"{name} is not JSON (Postgres jsonb rejects it)")


def strict_json(text: str) -> Any:
    """JSON as Postgres reads it: no NaN or Infinity tokens."""
    return json.loads(text, parse_constant=_no_constant)


def same(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def without_nul(value: Any) -> Any:
    """The value with NUL removed from every string in it, mapping keys included."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def as_decimal(value: int | Decimal | str) -> Decimal:
    """The exact number a numeric source value stands for."""
    return Decimal(value.strip()) if isinstance(value, str) else Decimal(value)


def assert_decodes(col: Column, value: Any, raw: str | None, nul: str = "reject") -> None:
    """The decoded COPY field is exactly the value the column was given."""
    if value is None:
        assert raw is None, f"{col.name}: None encoded as {raw!r}"
        return
    assert raw is not None, f"{col.name}: {value!r} encoded as NULL"
    strip: Callable[[str], str] = (lambda s: s.replace("\x00", "")) if nul == "strip" else str
    if col.type == "text":
        assert raw == strip(value if isinstance(value, str) else str(value))
    elif col.type == "timestamptz":
        parsed = datetime.fromisoformat(raw)
        assert parsed == value
        assert parsed.utcoffset() == value.utcoffset()
    elif col.type == "date":
        assert date.fromisoformat(raw) == value
    elif col.type in ("bigint", "integer"):
        assert int(raw) == value
    elif col.type == "numeric":
        expected = as_decimal(value)
        got = Decimal(raw)
        assert got == expected
        assert got.as_tuple().exponent == expected.as_tuple().exponent  # the scale is kept
    elif col.type == "double":
        expected_float = float(value)
        got_float = float(raw)
        assert got_float == expected_float or (math.isnan(got_float) and math.isnan(expected_float))
    elif col.type == "boolean":
        assert raw == ("t" if value else "f")
    elif col.type == "jsonb":
        expected_json = without_nul(value) if nul == "strip" else value
        assert same(strict_json(raw), expected_json), (raw, value)
    elif col.type == "text[]":
        assert decode_array(raw) == [None if v is None else strip(v) for v in value]
    else:  # pragma: no cover - a new PgType needs a case here
        raise AssertionError(f"no decoder for {col.type}")


# ---------------------------------------------------------------------------------------------
# Strategies.

# Characters that COPY text and array literals treat specially, and some that are just wide.
_TRICKY = list('\\\t\n\r"{},N. \x0b\x0c\x1béß東\U0001f600\u2028')
_NO_SURROGATES = st.characters(exclude_categories=["Cs"])
_SAFE_CHAR = st.sampled_from(_TRICKY) | st.characters(
    exclude_categories=["Cs"], exclude_characters=["\x00"]
)
TEXT = st.text(_SAFE_CHAR, max_size=24) | st.sampled_from(["", "\\N", "NULL", "\\.", '"', "\\"])


def with_nul(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """These strings, and as many again with NUL bytes inside."""
    return text | st.builds(lambda a, b: f"{a}\x00{b}\x00", text, text)


TEXT_WITH_NUL = with_nul(TEXT)
KEY_TEXT = st.text(_SAFE_CHAR, min_size=1, max_size=16).filter(lambda s: bool(s.strip()))

_OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30)),
     timezone(timedelta(hours=14)), timezone(timedelta(hours=-3, minutes=-30, seconds=-15))]
)  # fmt: skip
TIMESTAMPS = st.builds(
    lambda moment, tz: moment.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)),
    _OFFSETS,
)
_DECIMALS = st.decimals(
    min_value=-(10**40), max_value=10**40, allow_nan=False, allow_infinity=False
)
# Fivetran sometimes lands a number as a string; clean ones are accepted.
NUMERIC = _DECIMALS | st.integers() | _DECIMALS.map(lambda d: f" {d} ")
DOUBLE = (
    st.floats()
    | st.integers(-(2**62), 2**62)
    | st.decimals(min_value=-(10**30), max_value=10**30, places=6)
)


def json_values(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON documents (no NaN or Infinity) with these strings as values and keys."""
    text = strings  # backslash-u0000 text included: six ordinary characters
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )


JSON = json_values(st.text(_SAFE_CHAR, max_size=10))
JSON_WITH_NUL = json_values(with_nul(st.text(_SAFE_CHAR, max_size=5)))
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(_SAFE_CHAR, max_size=10)


def values_of(pg_type: PgType, nul: str = "reject") -> st.SearchStrategy[Any]:
    """Valid non-null values of a column type (with NUL bytes in text when they are stripped)."""
    text = TEXT_WITH_NUL if nul == "strip" else TEXT
    return {
        "text": text,
        "timestamptz": TIMESTAMPS,
        "date": st.dates(),
        "bigint": st.integers(-(2**63), 2**63 - 1),
        "integer": st.integers(-(2**31), 2**31 - 1),
        "numeric": NUMERIC,
        "double": DOUBLE,
        "boolean": st.booleans(),
        "jsonb": JSON_WITH_NUL if nul == "strip" else JSON,
        "text[]": st.lists(st.none() | text, max_size=4),
    }[pg_type]


ALL_TYPES: tuple[PgType, ...] = (
    "text", "timestamptz", "date", "bigint", "integer", "numeric", "double", "boolean", "jsonb",
    "text[]",
)  # fmt: skip


def small_target(nul: str = "reject", metadata: bool = True) -> Target:
    """A target with a text key and one column of every type."""
    return Target(
        table="things",
        key=("id",),
        parent="id",
        columns=(
            Column("id", "text", "t.id"),
            *(
                Column(f"c_{t.replace('[]', '_array')}", t, f"t.c{i}")
                for i, t in enumerate(ALL_TYPES)
            ),
        ),
        from_sql="{thing} AS t",
        deleted_sql=deleted("t._fivetran_deleted"),
        metadata_alias="t" if metadata else None,
        nul="strip" if nul == "strip" else "reject",
    )


SMALL = small_target()
SMALL_STRIP = small_target("strip")
_META_NAMES = st.text(st.sampled_from("abcxyz_é"), min_size=1, max_size=6)


@st.composite
def rows_of(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    """A valid row of a target with no transform: a good key, values or NULLs, metadata."""
    row: dict[str, Any] = {}
    for col in target.columns:
        if col.name in target.key:
            row[col.name] = draw(KEY_TEXT if col.type == "text" else values_of(col.type))
        else:
            row[col.name] = draw(st.none() | values_of(col.type, target.nul))
    extra = draw(st.dictionaries(_META_NAMES, JSON_SCALARS, max_size=3))
    row.update({METADATA_PREFIX + k: v for k, v in extra.items()})
    return row


def assert_row_decodes(target: Target, row: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Map a row, decode its line, and compare every field with the value it came from."""
    key, line = RowMapper(target).map(row)
    assert key == tuple(str(row[k]) for k in target.key)
    fields = decode_line(line)
    assert len(fields) == len(target.column_names)
    for col, raw in zip(target.columns, fields, strict=False):
        assert_decodes(col, values.get(col.name), raw, target.nul)
    if target.metadata_alias:
        metadata = {
            k[len(METADATA_PREFIX) :]: v for k, v in row.items() if k.startswith(METADATA_PREFIX)
        }
        assert_decodes(Column("metadata", "jsonb"), metadata, fields[-1], target.nul)


def reason(target: Target, row: Mapping[str, Any]) -> str:
    """The RowError message mapping this row gives."""
    with pytest.raises(RowError) as caught:
        RowMapper(target).map(row)
    return str(caught.value)


def fields_or_reason(target: Target, row: Mapping[str, Any]) -> dict[str, str | None] | str:
    """The row's decoded COPY fields by column name, or its RowError message."""
    try:
        _, line = RowMapper(target).map(row)
    except RowError as exc:
        return str(exc)
    return dict(zip(target.column_names, decode_line(line), strict=True))


def fields_of(target: Target, row: Mapping[str, Any]) -> dict[str, str | None]:
    """The row's decoded COPY fields by column name."""
    got = fields_or_reason(target, row)
    assert not isinstance(got, str), got
    return got


def row_with(**values: Any) -> dict[str, Any]:
    """A row of SMALL with a good key and the given columns set."""
    return {"id": "k1", **values}


# ---------------------------------------------------------------------------------------------
# COPY text encoding.


@settings(max_examples=50, deadline=None)
@given(st.text(_NO_SURROGATES | st.sampled_from(_TRICKY)))
def test_any_text_round_trips_through_a_copy_field(text: str) -> None:
    """A field decodes to its text, and never holds a raw tab, CR or LF."""
    raw = copy_text.field(text)
    assert not {"\t", "\n", "\r"} & set(raw)
    assert decode_field(raw) == text


def test_null_is_backslash_n_and_the_text_backslash_n_is_not_null() -> None:
    """\\N alone is NULL; the two-character text \\N stays text."""
    assert copy_text.field(None) == "\\N"
    assert decode_field(copy_text.field("\\N")) == "\\N"
    assert decode_line(copy_text.line([copy_text.field("\\N"), copy_text.NULL])) == ["\\N", None]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.none() | st.text(_NO_SURROGATES | st.sampled_from(_TRICKY)), min_size=1, max_size=6)
)
def test_a_line_of_fields_decodes_to_its_values(values: list[str | None]) -> None:
    """Fields joined into a line split back into the same values."""
    assert decode_line(copy_text.line([copy_text.field(v) for v in values])) == values


@settings(max_examples=50, deadline=None)
@given(st.lists(st.none() | st.text(_NO_SURROGATES | st.sampled_from(_TRICKY), max_size=8)))
def test_array_literals_keep_null_items_quotes_braces_and_backslashes(
    items: list[str | None],
) -> None:
    """A text[] literal, COPY-escaped, decodes to its items; the text 'NULL' is not NULL."""
    literal = copy_text.array_literal(items)
    assert decode_array(literal) == items
    assert decode_array(decode_field(copy_text.field(literal)) or "") == items


def test_array_literal_examples() -> None:
    """The exact literal of a few hard items."""
    assert copy_text.array_literal([]) == "{}"
    assert copy_text.array_literal([None, "NULL", ""]) == '{NULL,"NULL",""}'
    assert copy_text.array_literal(['a"b', "c\\d", "{x,y}"]) == '{"a\\"b","c\\\\d","{x,y}"}'


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.text(_NO_SURROGATES, max_size=5).map(lambda s: s.replace("\n", "") + "\n")),
    st.integers(1, 4),
)
def test_chunks_carry_every_line_in_order_a_bounded_number_at_a_time(
    lines: list[str], size: int
) -> None:
    """Chunks concatenate to the lines' UTF-8 and hold at most `size` whole lines each."""
    chunks = list(copy_text.chunks(lines, size))
    assert b"".join(chunks) == "".join(lines).encode("utf-8")
    assert len(chunks) == -(-len(lines) // size)
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        assert chunk.count(b"\n") <= size


# ---------------------------------------------------------------------------------------------
# Valid rows decode back exactly.


@settings(max_examples=60, deadline=None)
@given(rows_of(SMALL))
def test_a_valid_row_decodes_to_exactly_its_values(row: dict[str, Any]) -> None:
    """Every type, NULLs, tricky text and metadata: the COPY line reads back as the row."""
    assert_row_decodes(SMALL, row, row)


@settings(max_examples=20, deadline=None)
@given(rows_of(SMALL_STRIP))
def test_under_nul_strip_a_row_decodes_to_its_values_without_nul(row: dict[str, Any]) -> None:
    """With nul="strip", text, arrays, JSON and metadata lose their NUL bytes, nothing else."""
    assert_row_decodes(SMALL_STRIP, row, row)


@settings(max_examples=40, deadline=None)
@given(JSON_WITH_NUL, st.lists(st.none() | TEXT_WITH_NUL, max_size=3), TEXT_WITH_NUL)
def test_under_nul_strip_json_arrays_and_text_lose_exactly_their_nul_bytes(
    doc: Any, items: list[str | None], text: str
) -> None:
    """Strings inside JSON (keys too), array items and text: NUL gone, all else kept."""
    values = {"c_jsonb": doc, "c_text_array": items, "c_text": text}
    fields = fields_of(SMALL_STRIP, row_with(**values))
    for name, value in values.items():
        assert_decodes(SMALL_STRIP.column(name), value, fields[name], "strip")


def _real_targets() -> dict[str, Target]:
    """Every target of every registered source and of its fallback, by a readable id."""
    found: dict[str, Target] = {}
    for source in sources.SOURCES.values():
        for declaration, suffix in ((source, ""), (source.fallback, "-fallback")):
            for target in declaration.targets if declaration else ():
                if not any(target is seen for seen in found.values()):  # a fallback shares most
                    found[f"{source.name}{suffix}.{target.table}"] = target
    return found


REAL_TARGETS = _real_targets()

_SENTENCES = st.lists(
    st.fixed_dictionaries(
        {"start": st.integers(0, 10**7), "end": st.integers(0, 10**7), "text": TEXT}
    ),
    min_size=1,
    max_size=3,
)
# Transform inputs whose type alone does not make a valid value (by input column name).
_INPUTS: dict[str, st.SearchStrategy[Any]] = {
    "sentence": _SENTENCES | _SENTENCES.map(json.dumps),
}


@st.composite
def real_rows(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    """A valid raw row of a real target: its SQL columns, its transform's inputs, metadata."""
    row: dict[str, Any] = {}
    for col in (*target.columns, *target.inputs):
        if col.sql is None:
            continue  # the transform supplies it
        if col.name in _INPUTS and col in target.inputs:
            row[col.name] = draw(_INPUTS[col.name])
        elif col.name in target.key:
            row[col.name] = draw(KEY_TEXT if col.type == "text" else values_of(col.type))
        else:
            row[col.name] = draw(st.none() | values_of(col.type, target.nul))
    if target.metadata_alias:
        extra = draw(st.dictionaries(_META_NAMES, JSON_SCALARS, max_size=2))
        row.update({METADATA_PREFIX + k: v for k, v in extra.items()})
    return row


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_a_valid_row_of_every_real_target_decodes_to_its_values(data: st.DataObject) -> None:
    """The declared targets: each column's field is the value the row (or transform) gave."""
    for name, target in REAL_TARGETS.items():
        row = data.draw(real_rows(target), label=name)
        values = {**row, **target.transform(row)} if target.transform else row
        assert_row_decodes(target, row, values)


def test_every_real_target_has_only_columns_the_mapper_knows() -> None:
    """A declared column of an unknown type or without SQL or transform fails here first."""
    for name, target in REAL_TARGETS.items():
        RowMapper(target)  # KeyError on an unknown type
        for col in target.columns:
            assert col.sql or target.transform, f"{name}.{col.name} has no source"


def test_a_transform_supplies_its_columns_and_its_row_error_is_the_reason() -> None:
    """Transform values win over the row's; a RowError it raises is the row's reason."""

    def transform(row: Mapping[str, Any]) -> Mapping[str, Any]:
        if row.get("raw") == "bad":
            raise RowError("raw: not parseable")
        return {"shout": str(row.get("raw")).upper(), "n": 7}

    target = Target(
        table="t", key=("id",), parent="id",
        columns=(Column("id", "text", "t.id"), Column("shout", "text"), Column("n", "integer")),
        from_sql="{t} AS t", deleted_sql="FALSE", transform=transform,
        inputs=(Column("raw", "text", "t.raw"),),
    )  # fmt: skip
    _, line = RowMapper(target).map({"id": "a", "raw": "hi", "shout": "ignored", "n": 1})
    assert decode_line(line) == ["a", "HI", "7"]
    assert reason(target, {"id": "a", "raw": "bad"}) == "raw: not parseable"


# ---------------------------------------------------------------------------------------------
# Metadata columns.


def test_metadata_holds_the_prefixed_columns_without_their_prefix() -> None:
    """_m_ columns become one JSON object; other row values stay out of it."""
    row = row_with(
        **{f"{METADATA_PREFIX}body": "hi", f"{METADATA_PREFIX}n": 3, "_cursor": "x", "other": 1}
    )
    _, line = RowMapper(SMALL).map(row)
    assert strict_json(decode_line(line)[-1] or "") == {"body": "hi", "n": 3}


def test_metadata_is_an_empty_object_without_extra_columns_and_absent_without_an_alias() -> None:
    """No _m_ columns: {}; a target without metadata_alias writes no metadata field at all."""
    _, line = RowMapper(SMALL).map(row_with())
    assert decode_line(line)[-1] == "{}"
    plain = small_target(metadata=False)
    _, line = RowMapper(plain).map(row_with(**{f"{METADATA_PREFIX}x": 1}))
    assert len(decode_line(line)) == len(plain.columns) == len(plain.column_names)


def test_metadata_encodes_bigquery_values_json_does_not_know() -> None:
    """Timestamps and dates as ISO text, NUMERIC as a decimal string, BYTES as base64."""
    row = row_with(**{
        f"{METADATA_PREFIX}at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        f"{METADATA_PREFIX}day": date(2026, 1, 2),
        f"{METADATA_PREFIX}amount": Decimal("12.50"),
        f"{METADATA_PREFIX}blob": b"\x00\xff",
    })  # fmt: skip
    _, line = RowMapper(SMALL).map(row)
    assert strict_json(decode_line(line)[-1] or "") == {
        "at": "2026-01-02T03:04:05+00:00", "day": "2026-01-02", "amount": "12.50", "blob": "AP8=",
    }  # fmt: skip


def test_metadata_with_nul_is_rejected_or_stripped_as_the_target_says() -> None:
    """A NUL in a metadata value or name: a RowError naming metadata, or stripped."""
    for bad in ({f"{METADATA_PREFIX}x": "a\x00b"}, {f"{METADATA_PREFIX}x\x00y": "a"}):
        assert reason(SMALL, row_with(**bad)).startswith("metadata: NUL byte inside JSON")
    _, line = RowMapper(SMALL_STRIP).map(row_with(**{f"{METADATA_PREFIX}x\x00y": "a\x00b"}))
    assert strict_json(decode_line(line)[-1] or "") == {"xy": "ab"}


def test_metadata_with_a_lone_surrogate_is_rejected() -> None:
    """Not Unicode, so not storable: the reason names metadata."""
    assert reason(SMALL, row_with(**{f"{METADATA_PREFIX}x": "\ud800"})).startswith(
        "metadata: lone surrogate"
    )


# ---------------------------------------------------------------------------------------------
# Keys.

PAIR = Target(
    table="pairs", key=("call_id", "seq"), parent="call_id",
    columns=(Column("call_id", "text", "p.call_id"), Column("seq", "integer", "p.seq"),
             Column("note", "text", "p.note")),
    from_sql="{pair} AS p", deleted_sql="FALSE",
)  # fmt: skip


def test_key_of_is_the_key_columns_as_text_in_declared_order() -> None:
    """Composite keys keep the declaration's order; non-text keys are their str()."""
    mapper = RowMapper(PAIR)
    assert mapper.key_of({"seq": 3, "call_id": " c1 ", "note": None}) == (" c1 ", "3")
    assert mapper.map({"seq": 3, "call_id": "c1"})[0] == ("c1", "3")


@settings(max_examples=50, deadline=None)
@given(KEY_TEXT, st.integers(-(2**31), 2**31 - 1))
def test_key_of_accepts_any_nonblank_storable_key(call_id: str, seq: int) -> None:
    """Tabs, newlines and quotes are fine in a key: only COPY fields are escaped."""
    assert RowMapper(PAIR).key_of({"call_id": call_id, "seq": seq}) == (call_id, str(seq))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "call_id: key is null"),
        ("", "call_id: key is empty"),
        (" \t\n", "call_id: key is empty"),
        ("a\x00b", "call_id: NUL byte in key"),
        ("a\udc80", "call_id: lone surrogate in key (not valid Unicode)"),
    ],
)
def test_a_bad_key_is_a_row_error_naming_its_column(value: Any, expected: str) -> None:
    """key_of and map reject it alike (a deleted row's key is checked without mapping it)."""
    row = {"call_id": value, "seq": 1}
    with pytest.raises(RowError, match=f"^{re.escape(expected)}"):
        RowMapper(PAIR).key_of(row)
    assert reason(PAIR, row).startswith(expected)


def test_a_null_later_key_column_is_named() -> None:
    """The reason names the key column that is null, not the first one."""
    assert reason(PAIR, {"call_id": "c", "seq": None}) == "seq: key is null"


@pytest.mark.parametrize(
    ("call_id", "seq", "ok"),
    [
        ("x" * (KEY_MAX_BYTES - 1), 1, True),  # exactly KEY_MAX_BYTES bytes together
        ("x" * KEY_MAX_BYTES, 1, False),
        ("é" * (KEY_MAX_BYTES // 2), 1, False),  # 2000 characters of 2 bytes: counted in bytes
        ("é" * ((KEY_MAX_BYTES - 1) // 2), 1, True),
        ("\U0001f600" * (KEY_MAX_BYTES // 4), 12, False),
    ],
)
def test_a_key_longer_than_key_max_bytes_in_utf8_is_rejected(
    call_id: str, seq: int, ok: bool
) -> None:
    """The limit is on the key's UTF-8 bytes, all its columns together, and names them all."""
    row = {"call_id": call_id, "seq": seq}
    if ok:
        assert RowMapper(PAIR).key_of(row) == (call_id, str(seq))
        return
    size = len(call_id.encode()) + len(str(seq))
    assert reason(PAIR, row) == (
        f"call_id, seq: key is {size} bytes; Postgres indexes at most {KEY_MAX_BYTES} here"
    )


# ---------------------------------------------------------------------------------------------
# Rejection rules: each is a RowError whose reason starts with the column's name.


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("c_text", "a\x00b", "NUL byte in text"),
        ("c_text", "a\ud800b", "lone surrogate in text"),
        ("c_text_array", ["ok", "a\x00"], "NUL byte in text"),
        ("c_text_array", [None, "\udfff"], "lone surrogate in text"),
        ("c_jsonb", {"a": "x\x00"}, "NUL byte inside JSON"),
        ("c_jsonb", {"a\x00": 1}, "NUL byte inside JSON"),
        ("c_jsonb", ["\x00"], "NUL byte inside JSON"),
        ("c_jsonb", {"a": "\ud83d"}, "lone surrogate inside JSON"),
        ("c_jsonb", {"\ude00": 1}, "lone surrogate inside JSON"),
        ("c_timestamptz", datetime(2026, 1, 1), "expected a UTC timestamp"),
        ("c_timestamptz", "2026-01-01T00:00:00Z", "expected a UTC timestamp"),
        ("c_timestamptz", date(2026, 1, 1), "expected a UTC timestamp"),
        ("c_timestamptz", datetime(1969, 12, 31, 23, 59, 59, 999999, UTC), "is outside 1970..2099"),
        ("c_timestamptz", datetime(2100, 1, 1, tzinfo=UTC), "is outside 1970..2099"),
        ("c_timestamptz", datetime(1, 1, 1, tzinfo=UTC), "is outside 1970..2099"),
        # 01:00 at +01:00 is 1969 in UTC; 20:00 at -04:00 on 2099-12-31 is 2100 in UTC.
        ("c_timestamptz", datetime(1970, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
         "is outside 1970..2099"),
        ("c_timestamptz", datetime(2099, 12, 31, 20, tzinfo=timezone(timedelta(hours=-4))),
         "is outside 1970..2099"),
        ("c_date", "2026-01-01", "expected a date"),
        ("c_integer", 2**31, "expected a integer"),
        ("c_integer", -(2**31) - 1, "expected a integer"),
        ("c_integer", True, "expected a integer"),
        ("c_integer", 1.0, "expected a integer"),
        ("c_integer", "1", "expected a integer"),
        ("c_bigint", 2**63, "expected a bigint"),
        ("c_bigint", -(2**63) - 1, "expected a bigint"),
        ("c_bigint", False, "expected a bigint"),
        ("c_numeric", float("nan"), "not a finite number"),
        ("c_numeric", float("inf"), "not a finite number"),
        ("c_numeric", Decimal("NaN"), "not a finite number"),
        ("c_numeric", Decimal("-Infinity"), "not a finite number"),
        ("c_numeric", Decimal("sNaN"), "not a finite number"),
        ("c_numeric", "NaN", "not a finite number"),
        ("c_numeric", Decimal("1E+131072"), "is out of range for Postgres numeric"),
        ("c_numeric", Decimal("-9.9E+131072"), "is out of range for Postgres numeric"),
        ("c_numeric", Decimal("1E-16384"), "is out of range for Postgres numeric"),
        ("c_numeric", Decimal("0E-16384"), "is out of range for Postgres numeric"),
        # Plain notation too, 16,390 digits after the point: not the short common case.
        ("c_numeric", Decimal("1." + "0" * 16388 + "1"), "is out of range for Postgres numeric"),
        ("c_numeric", "twelve", "not a number"),
        ("c_numeric", "1,5", "not a number"),
        ("c_numeric", True, "not a number"),
        ("c_double", Decimal("1E+309"), "is out of range for Postgres double"),
        ("c_double", -(10**400), "is out of range for Postgres double"),
        ("c_double", Decimal("1E-400"), "is out of range for Postgres double"),
        ("c_double", Decimal("-2E-330"), "is out of range for Postgres double"),
        ("c_double", "1e999", "is out of range for Postgres double"),
        ("c_double", "x", "not a number"),
        ("c_boolean", 1, "expected a boolean"),
        ("c_boolean", "true", "expected a boolean"),
    ],
)  # fmt: skip
def test_every_rejection_rule_is_a_row_error_naming_the_column(
    column: str, value: Any, expected: str
) -> None:
    """The reason is `<column>: <what is wrong>`, so a dead letter says where to look."""
    message = reason(SMALL, row_with(**{column: value}))
    assert message.startswith(f"{column}: ")
    assert expected in message


def test_a_long_bad_value_is_quoted_short_in_the_reason() -> None:
    """A 10 kB value does not make a 10 kB dead-letter reason."""
    message = reason(SMALL, row_with(c_boolean="y" * 10_000))
    assert len(message) < 200
    assert "chars)" in message


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("c_timestamptz", datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00+00:00"),
        ("c_timestamptz", datetime(2099, 12, 31, 23, 59, 59, 999999, UTC),
         "2099-12-31T23:59:59.999999+00:00"),
        ("c_integer", -(2**31), str(-(2**31))),
        ("c_integer", 2**31 - 1, str(2**31 - 1)),
        ("c_bigint", -(2**63), str(-(2**63))),
        ("c_bigint", 2**63 - 1, str(2**63 - 1)),
        ("c_numeric", Decimal("1E+131071"), "1E+131071"),
        ("c_numeric", Decimal("-1E-16383"), "-1E-16383"),
        ("c_numeric", Decimal("0E+200000"), "0E+200000"),
        ("c_numeric", Decimal("1" + "0" * 20000), "1" + "0" * 20000),  # plain, and long
        ("c_numeric", Decimal("0.0000010"), "0.0000010"),
        ("c_numeric", " 12.50 ", "12.50"),
        ("c_double", float("nan"), "nan"),  # float8 stores NaN and the infinities
        ("c_double", float("-inf"), "-inf"),
        ("c_double", "-nan", "NaN"),  # any NaN is written as the NaN float8 reads
        ("c_double", Decimal("Infinity"), "Infinity"),
        ("c_double", 5e-324, "5e-324"),  # the smallest subnormal still stores
        ("c_double", Decimal("0E-400"), "0E-400"),  # zero is not an underflow
        ("c_double", -0.0, "-0.0"),
        ("c_date", date(1, 1, 1), "0001-01-01"),
        ("c_boolean", False, "f"),
    ],
)  # fmt: skip
def test_values_at_the_edges_of_each_rule_are_accepted(column: str, value: Any, field: str) -> None:
    """The limits are inclusive where Postgres's are: these store, exactly as encoded."""
    _, line = RowMapper(SMALL).map(row_with(**{column: value}))
    names = list(SMALL.column_names)
    assert decode_line(line)[names.index(column)] == field


@settings(max_examples=50, deadline=None)
@given(st.datetimes(timezones=_OFFSETS | st.none()))
def test_a_timestamp_is_accepted_exactly_when_aware_and_in_1970_to_2099_utc(
    moment: datetime,
) -> None:
    """The window is on the instant, whatever the offset; a naive time is never accepted."""
    inside = moment.tzinfo is not None and (
        datetime(1970, 1, 1, tzinfo=UTC) <= moment < datetime(2100, 1, 1, tzinfo=UTC)
    )
    encode = RowMapper(SMALL).encoders[list(SMALL.column_names).index("c_timestamptz")]
    if inside:
        assert datetime.fromisoformat(encode(moment) or "") == moment
    else:
        with pytest.raises(RowError, match=r"^c_timestamptz: "):
            encode(moment)


def test_nul_in_text_is_stripped_under_the_strip_policy() -> None:
    """nul="strip" drops NUL bytes from text, arrays and JSON (keys too) instead of rejecting."""
    row = row_with(c_text="a\x00b", c_text_array=["\x00x", None], c_jsonb={"k\x00": ["v\x00"]})
    fields = fields_of(SMALL_STRIP, row)
    assert fields["c_text"] == "ab"
    assert decode_array(fields["c_text_array"] or "") == ["x", None]
    assert strict_json(fields["c_jsonb"] or "") == {"k": ["v"]}


def test_a_lone_surrogate_is_rejected_under_the_strip_policy_too() -> None:
    """Stripping is for NUL only: a surrogate is never silently changed."""
    assert reason(SMALL_STRIP, row_with(c_text="\ud800")).startswith("c_text: lone surrogate")
    assert reason(SMALL_STRIP, row_with(c_jsonb="\ud800")).startswith("c_jsonb: lone surrogate")


def test_a_nul_key_is_rejected_under_the_strip_policy_too() -> None:
    """A key is never changed: stripping it could merge two rows."""
    assert reason(SMALL_STRIP, {"id": "a\x00"}) == "id: NUL byte in key"


# ---------------------------------------------------------------------------------------------
# Defects these tests found (fixed with them).


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_float_inside_json_is_a_row_error_or_valid_json(value: float) -> None:
    """Either a RowError naming the column, or JSON that Postgres accepts."""
    got = fields_or_reason(SMALL, row_with(c_jsonb={"score": value}))
    if isinstance(got, str):
        assert got.startswith("c_jsonb: ")
    else:
        strict_json(got["c_jsonb"] or "")


def test_a_transcript_whose_sentence_json_holds_nan_is_not_a_poison_row() -> None:
    """The real transcripts target: a RowError, or a sentences field Postgres accepts."""
    target = REAL_TARGETS["calls.transcripts"]
    row = {"gong_call_id": "c1", "sequence_number": 0,
           "sentence": '[{"start": 0, "end": 10, "text": "hi", "score": NaN}]'}  # fmt: skip
    got = fields_or_reason(target, row)
    if isinstance(got, str):
        assert got.startswith("sentence")
    else:
        strict_json(got["sentences"] or "")


@pytest.mark.parametrize("text", ["\\u0000", "C:\\u0000dir", '{"inner": "\\u0000"}'])
def test_a_literal_backslash_u0000_in_json_text_is_not_a_nul(text: str) -> None:
    """A backslash then u0000 is six ordinary characters, which jsonb stores."""
    fields = fields_of(SMALL, row_with(c_jsonb={"path": text}))
    assert strict_json(fields["c_jsonb"] or "") == {"path": text}


@pytest.mark.parametrize("value", ["sNaN", Decimal("sNaN"), Decimal("-sNaN")])
def test_a_signalling_nan_for_a_double_is_stored_or_rejected(value: Any) -> None:
    """Either a RowError naming the column, or a field float8 reads (as Python's float does)."""
    got = fields_or_reason(SMALL, row_with(c_double=value))
    if isinstance(got, str):
        assert got.startswith("c_double: ")
    else:
        assert math.isnan(float(got["c_double"] or ""))


@pytest.mark.parametrize("text", ["[{", "", "[1] x", "{'start': 0}"])
def test_a_transcript_whose_sentence_is_not_json_is_a_row_error(text: str) -> None:
    """A STRING column (or a stand-in's) may hold anything: a dead letter, not a crash."""
    row = {"gong_call_id": "c1", "sequence_number": 0, "sentence": text}
    got = fields_or_reason(REAL_TARGETS["calls.transcripts"], row)
    assert isinstance(got, str)
    assert got.startswith("sentence: not valid JSON")

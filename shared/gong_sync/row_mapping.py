"""Validate and map one BigQuery row into the COPY fields of its target row."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from gong_sync import copy_text, fast_json
from gong_sync.bigquery_sql import METADATA_PREFIX
from gong_sync.declarations import Column, RowError, Target

if TYPE_CHECKING:
    from gong_sync.arrow_lines import PageFields

# Outside this window a timestamp is a sentinel or a corrupt value, not a real call time.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_INT32 = 2**31
# A lone surrogate is not Unicode: encoding the COPY stream failed and took the whole run down.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Postgres numeric holds at most 131072 digits before the point and 16383 after it; past that
# one odd value failed the whole page's COPY on every run.
_NUMERIC_MAX_ADJUSTED = 131071
_NUMERIC_MIN_EXPONENT = -16383
# A btree entry holds at most 2704 bytes; a longer key failed the page's COPY on every run.
KEY_MAX_BYTES = 2000
_SHOWN_CHARS = 80  # of a bad value quoted in a reason

Encoder = Callable[[Any], str | None]
NulPolicy = Literal["reject", "strip"]


def json_default(value: Any) -> Any:
    """JSON for the BigQuery types json.dumps does not know."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """The value with fn applied to every string inside it, mapping keys included."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Mapping):
        return {fn(str(k)): map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_strings(v, fn) for v in value]
    return value


def replace_nul(value: Any, by: str = "") -> Any:
    """The value with every NUL byte in every string inside it (keys too) replaced by `by`."""
    return map_strings(value, lambda text: text.replace("\x00", by))


def _shown(value: Any) -> str:
    """A bad value as a reason quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} chars)"


def _has_surrogate(text: str) -> bool:
    # isascii() is O(1) in CPython, so ASCII text (most of it) costs no scan.
    return not text.isascii() and _SURROGATE.search(text) is not None


def holdable(key: str) -> bool:
    """Whether Postgres can hold this value in a key: no NUL, no lone surrogate, and at most
    KEY_MAX_BYTES bytes. A row keyed by any other is a dead letter, never a stored row."""
    if "\x00" in key or _has_surrogate(key):
        return False
    return len(key) * 4 <= KEY_MAX_BYTES or len(key.encode()) <= KEY_MAX_BYTES


def _text(col: Column, nul: NulPolicy) -> Encoder:
    def encode(value: Any) -> str | None:
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        if _has_surrogate(text):
            raise RowError(f"{col.name}: lone surrogate in text (not valid Unicode)")
        if "\x00" in text:
            if nul == "reject":
                raise RowError(f"{col.name}: NUL byte in text (Postgres text cannot store it)")
            text = text.replace("\x00", "")
        return text

    return encode


def _timestamp(col: Column, nul: NulPolicy) -> Encoder:
    def encode(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise RowError(f"{col.name}: expected a UTC timestamp, got {_shown(value)}")
        if not EARLIEST <= value < LATEST:
            raise RowError(
                f"{col.name}: timestamp {value.isoformat()} is outside "
                f"{EARLIEST.year}..{LATEST.year - 1}"
            )
        return value.isoformat()

    return encode


def _date(col: Column, nul: NulPolicy) -> Encoder:
    def encode(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, date):
            raise RowError(f"{col.name}: expected a date, got {_shown(value)}")
        return value.isoformat()

    return encode


def _integer(col: Column, nul: NulPolicy) -> Encoder:
    limit = _INT32 if col.type == "integer" else 2**63

    def encode(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not -limit <= value < limit:
            raise RowError(f"{col.name}: expected a {col.type}, got {_shown(value)}")
        return str(value)

    return encode


def _fits(col: Column, value: int | float | Decimal) -> bool:
    """Whether Postgres stores this finite value in the column's type instead of failing."""
    if col.type == "double":
        try:
            as_float = float(value)
        except OverflowError:
            return False
        # float8 input rejects overflow and underflow alike.
        return math.isfinite(as_float) and (as_float != 0 or value == 0)
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return (
            isinstance(exponent, int)
            and exponent >= _NUMERIC_MIN_EXPONENT
            and (not value or value.adjusted() <= _NUMERIC_MAX_ADJUSTED)
        )
    return True


def _number(col: Column, nul: NulPolicy) -> Encoder:
    def encode(value: Any) -> str | None:
        if value is None:
            return None
        # The common cases, decided as the full rules below decide them but cheaper: a finite
        # float always fits; a NUMERIC in plain notation this short has the exponent and
        # size Postgres takes (as_tuple() was a third of a transcript row's mapping).
        if type(value) is float and math.isfinite(value):
            return repr(value)
        if type(value) is Decimal and col.type == "numeric" and value.is_finite():
            text = str(value)
            if "E" not in text and len(text) < 16000:
                return text
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            try:  # Fivetran sometimes lands numbers as strings; accept only clean ones.
                value = Decimal(str(value).strip())
            except ArithmeticError:
                raise RowError(f"{col.name}: not a number: {_shown(value)}") from None
        if isinstance(value, Decimal):
            finite = value.is_finite()
        else:
            finite = not isinstance(value, float) or math.isfinite(value)
        if not finite:
            if col.type == "numeric":  # a float NaN too: numeric would store it, as no amount
                raise RowError(f"{col.name}: not a finite number: {_shown(value)}")
            if isinstance(value, Decimal) and value.is_nan():  # float8 reads "NaN", not "sNaN"
                return "NaN"
        elif not _fits(col, value):
            raise RowError(f"{col.name}: {_shown(value)} is out of range for Postgres {col.type}")
        return repr(value) if isinstance(value, float) else str(value)

    return encode


def _boolean(col: Column, nul: NulPolicy) -> Encoder:
    def encode(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            raise RowError(f"{col.name}: expected a boolean, got {_shown(value)}")
        return "t" if value else "f"

    return encode


# Built once: json.dumps with any option builds a new encoder on every call. allow_nan=False:
# Python writes NaN/Infinity as bare tokens, which are not JSON and which jsonb refuses.
_JSON = json.JSONEncoder(default=json_default, ensure_ascii=False, sort_keys=True, allow_nan=False)
# A NUL escaped in JSON text: \u0000 after an even number of backslashes (an odd number
# means the backslash before "u0000" is itself escaped, six ordinary characters).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _jsonb(col: Column, nul: NulPolicy) -> Encoder:
    def encode(value: Any) -> str | None:
        if value is None:
            return None
        try:
            text = fast_json.dumps(value, json_default, _JSON)
            # A NUL in any string, key or value, is written \u0000: without one the value is
            # already what stripping gives, and rebuilding every dict to check costs more.
            # (Keys from a row are strings, which stripping leaves as they are.)
            if nul == "strip" and "\\u0000" in text:
                text = fast_json.dumps(replace_nul(value), json_default, _JSON)
        except ValueError:  # allow_nan=False: a float NaN or infinity somewhere inside
            raise RowError(f"{col.name}: NaN or infinity inside JSON (not valid JSON)") from None
        if _has_surrogate(text):
            raise RowError(f"{col.name}: lone surrogate inside JSON (not valid Unicode)")
        if "\\u0000" in text and _JSON_NUL.search(text):
            raise RowError(f"{col.name}: NUL byte inside JSON (Postgres jsonb cannot store it)")
        return text

    return encode


def _text_array(col: Column, nul: NulPolicy) -> Encoder:
    item = _text(col, nul)

    def encode(value: Any) -> str | None:
        if value is None:
            return None
        return copy_text.array_literal([item(v) for v in value])

    return encode


_ENCODERS: dict[str, Callable[[Column, NulPolicy], Encoder]] = {
    "text": _text,
    "timestamptz": _timestamp,
    "date": _date,
    "bigint": _integer,
    "integer": _integer,
    "numeric": _number,
    "double": _number,
    "boolean": _boolean,
    "jsonb": _jsonb,
    "text[]": _text_array,
}


class RowMapper:
    """Compiled from a target: turns a BigQuery row into (key, COPY line) or raises RowError."""

    def __init__(self, target: Target) -> None:
        """Prepare one encoder per column, in the target's column order."""
        self.target = target
        self.columns = list(target.columns)
        self.encoders = [_ENCODERS[c.type](c, target.nul) for c in self.columns]
        self.key_names = target.key
        meta = Column("metadata", "jsonb")
        self.metadata = _jsonb(meta, target.nul) if target.metadata_alias else None

    def key_of(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        """The row's target key as text; a null or blank key is a RowError."""
        key: list[str] = []
        for name in self.key_names:
            value = row.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise RowError(f"{name}: key is {'null' if value is None else 'empty'}")
            text = str(value)
            if "\x00" in text:
                raise RowError(f"{name}: NUL byte in key")
            if _has_surrogate(text):  # checked here too: a deleted row's key is never mapped
                raise RowError(f"{name}: lone surrogate in key (not valid Unicode)")
            key.append(text)
        if sum(map(len, key)) * 4 > KEY_MAX_BYTES:  # 4 bytes a character at most
            size = sum(len(k.encode("utf-8")) for k in key)
            if size > KEY_MAX_BYTES:
                raise RowError(
                    f"{', '.join(self.key_names)}: key is {size} bytes; Postgres indexes at most"
                    f" {KEY_MAX_BYTES} here"
                )
        return tuple(key)

    def map(self, row: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
        """Validate and encode a live row."""
        key = self.key_of(row)
        values: Mapping[str, Any] = row
        if self.target.transform is not None:
            values = {**row, **self.target.transform(row)}
        fields = [
            copy_text.field(encode(values.get(col.name)))
            for col, encode in zip(self.columns, self.encoders, strict=True)
        ]
        return key, copy_text.line(self._with_metadata(fields, row))

    def map_page_row(self, rows: Sequence[Mapping[str, Any]], page: PageFields, i: int) -> str:
        """Encode live row i, whose other columns Arrow encoded for its page (its key is valid).

        The transform runs first (unless Arrow ran it for the page) and the mapper's columns go
        in column order, as in `map`, so a rejected row gives the same reason; a transform
        that sets a column Arrow encoded sends the row through `map`. A row Arrow encoded
        whole is never looked at.
        """
        transformed = self.target.transform is None or page.transformed  # none left to run
        if page.whole and (self.metadata is None or page.metadata) and transformed:
            return f"{page.parts[0][i]}\n"  # type: ignore[index]
        row = rows[i]
        values: Mapping[str, Any] = row
        if self.target.transform is not None and not page.transformed:
            extra = self.target.transform(row)
            if not page.names.isdisjoint(extra):
                return self.map(row)[1]
            values = {**row, **extra}
        fields: list[str] = []
        for part in page.parts:
            if isinstance(part, int):
                value = values.get(self.columns[part].name)
                fields.append(copy_text.field(self.encoders[part](value)))
            else:
                fields.append(part[i])
        return copy_text.line(fields if page.metadata else self._with_metadata(fields, row))

    def _with_metadata(self, fields: list[str], row: Mapping[str, Any]) -> list[str]:
        """The fields, and the metadata object of the row's unmapped columns if declared."""
        if self.metadata is not None:
            extra = {
                k[len(METADATA_PREFIX) :]: v
                for k, v in row.items()
                if k.startswith(METADATA_PREFIX)
            }
            fields.append(copy_text.field(self.metadata(extra)))
        return fields

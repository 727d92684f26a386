"""JSON through orjson where it gives exactly what the stdlib gives, and the stdlib elsewhere.

orjson parses and writes JSON several times faster, which matters for the JSON of every
transcript row. It differs from the stdlib in a few known ways, each routed to the stdlib so
values and rejection reasons never depend on which library ran:

- parsing, orjson rounds an integer beyond 64 bits to a float (the stdlib keeps it exact), and
  refuses NaN, Infinity, numbers past the float range and lone surrogates (the stdlib gives
  values the caller then judges);
- writing, orjson writes NaN and infinities as `null` (the stdlib refuses them), and refuses
  integers beyond 64 bits, keys that are not strings, surrogates and deep nesting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson

# A run of 19 digits can be an integer orjson rounds (2**63 has 19 digits). Found on the UTF-8
# bytes with every digit mapped to "0" and all else to " ": a C scan, where a regular
# expression costs more than the parse. A string that merely holds such digits goes to the
# stdlib too, which is exact either way.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19
# datetime, date and time go to `default` as they go to the stdlib's, not to orjson's format.
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`, by orjson wherever orjson's value is the same."""
    try:
        data = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError:  # a lone surrogate: orjson refuses it, the stdlib keeps it
        return json.loads(text)
    if _LONG_DIGITS not in data.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN, Infinity, 1e400, a BOM, bad UTF-8: the stdlib's value, or its error
    return json.loads(text)


def dumps(value: Any, default: Callable[[Any], Any], stdlib: json.JSONEncoder) -> str:
    """`stdlib.encode(value)` or a text of the same JSON value, by orjson where it can be.

    Sorted keys and no escaping beyond JSON's own, as the stdlib encoder given is set up; the
    texts may differ in spacing and in how a float is spelt, never in the value.
    """
    try:
        out = orjson.dumps(value, default=default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return stdlib.encode(value)  # its text, or its own error for the caller's reason
    if b"null" in out and not _all_finite(value):  # orjson wrote a NaN or infinity as null
        return stdlib.encode(value)  # its error, for the caller's reason
    return out.decode()


def _all_finite(value: Any) -> bool:
    """Whether no float inside the value is a NaN or an infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(v) for v in value)
    return True

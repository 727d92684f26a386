"""fast_json gives the stdlib's values and errors, and stores what the stdlib stores in jsonb."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gong_sync import fast_json
from gong_sync.postgres import connect
from gong_sync.row_mapping import _JSON, json_default
from gong_sync.settings import PostgresSettings

# Texts where orjson and the stdlib part ways, and their neighbours that must stay fast.
TEXTS: list[str | bytes] = [
    "[9223372036854775807]", "[9223372036854775808]", "[-9223372036854775808]",
    "[-9223372036854775809]", "[18446744073709551615]", "[18446744073709551616]",
    "[123456789012345678901234567890]", '{"n": 1234567890123456789}', '["1234567890123456789"]',
    "[NaN]", "[Infinity]", "[-Infinity]", "[1e400]", "[-1e400]", "[1.7976931348623157e309]",
    "[5e-324]", "[-0]", "[-0.0]", "[0.1]", "[1E2]", "[0.30000000000000004]",
    '{"a": 1, "a": 2}', '["\\ud800"]', '["\\udc00x"]', '["\\ud83d\\ude00"]', '["\\u0000"]',
    "[\"a\x01b\"]", "\ufeff[1]", b"\xef\xbb\xbf[1]", '["\ud800"]', b'["\xff"]',
    '[1] ', ' [1]', "[1,]", "", "nul", '"x"', "[" * 300 + "]" * 300, "[" * 1100 + "]" * 1100,
    '[{"start": 0, "end": 8000, "text": "hello world"}]', "[1] x", "{'a': 1}",
    "[1]".encode("utf-16"), b"[1]",
]  # fmt: skip


def _outcome(fn: Callable[[Any], Any], arg: Any) -> tuple[str, str]:
    """A call's result as (type, repr) or (exception type, message), comparable across runs."""
    try:
        value = fn(arg)
    except RecursionError:
        return ("RecursionError", "")
    except Exception as exc:  # the exact error matters: it becomes a dead letter's reason
        return (type(exc).__name__, str(exc))
    return (type(value).__name__, _typed_repr(value))


def _typed_repr(value: Any) -> str:
    """repr with each number's type, so 1 and 1.0 and True differ, and NaN equals NaN."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_typed_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_typed_repr(v) for v in value) + "]"
    return f"{type(value).__name__}:{value!r}"


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_loads_gives_the_stdlibs_value_or_error(text: str | bytes) -> None:
    assert _outcome(fast_json.loads, text) == _outcome(json.loads, text)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(
            [0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, rng.getrandbits(70)]
        )
    if kind == 1:
        return rng.choice([0.1, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, rng.random()])
    if kind == 2:
        return "".join(
            rng.choice('ab 09\\"\u00e9\u2028\U0001f600') for _ in range(rng.randrange(30))
        )
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return "9" * rng.randrange(15, 25)
    if kind == 5:
        return rng.randrange(-(10**18), 10**18)
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(rng.randrange(50)): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _random_texts(n: int) -> Iterator[str]:
    rng = random.Random(20261202)
    for _ in range(n):
        text = json.dumps(_random_value(rng))
        yield text
        if len(text) > 2:  # and a damaged copy: a character dropped
            cut = rng.randrange(len(text))
            yield text[:cut] + text[cut + 1 :]


def test_loads_agrees_with_the_stdlib_on_random_texts() -> None:
    for text in _random_texts(3000):
        assert _outcome(fast_json.loads, text) == _outcome(json.loads, text), text


class _Str(str):
    pass


VALUES: list[Any] = [
    [float("nan")], {"x": [1, {"y": float("inf")}]}, [-math.inf], [None], [10**20], [2**64 - 1],
    [-(2**63)], {1: "int key"}, {None: 1}, ["\ud800"], {"\udc00": 1}, [Decimal("1.50")],
    [Decimal("NaN")], [datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)], [datetime(2024, 1, 2)],
    [date(1, 1, 1)], [time(1, 2)], [b"\x00\xff"], [_Str("sub")], [True, False], (1, 2),
    [1e16], [1e-7], [-0.0], {"b": 1, "a": {"d": 2, "c": 3}}, ["\x00"], ["\x7f\u2028"],
    [[[[[[[[[[1]]]]]]]]]], [object()],
]  # fmt: skip
_DEEP: Any = 1
for _ in range(300):
    _DEEP = [_DEEP]
VALUES.append(_DEEP)


def _parsed(text: str) -> str:
    return _typed_repr(json.loads(text))


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_writes_the_stdlibs_value_or_raises_its_error(value: Any) -> None:
    fast = _outcome(lambda v: _parsed(fast_json.dumps(v, json_default, _JSON)), value)
    slow = _outcome(lambda v: _parsed(_JSON.encode(v)), value)
    assert fast == slow


def test_dumps_agrees_with_the_stdlib_on_random_values() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        value = _random_value(rng)
        fast = _outcome(lambda v: _parsed(fast_json.dumps(v, json_default, _JSON)), value)
        assert fast == _outcome(lambda v: _parsed(_JSON.encode(v)), value), value


def test_orjson_does_the_common_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain JSON goes through orjson; the cases above go around it (else this is the stdlib)."""
    calls = {"loads": 0, "dumps": 0}

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(orjson, "loads", counted("loads", orjson.loads))
    monkeypatch.setattr(orjson, "dumps", counted("dumps", orjson.dumps))
    sentences = [{"start": 0, "end": 8000, "text": "so, pricing"}]
    assert fast_json.loads(json.dumps(sentences)) == sentences
    assert json.loads(fast_json.dumps(sentences, json_default, _JSON)) == sentences
    assert calls == {"loads": 1, "dumps": 1}
    fast_json.loads("[1234567890123456789]")  # a possible 64-bit overflow skips orjson
    assert calls["loads"] == 1


class _Counting(json.JSONEncoder):
    calls = 0

    def encode(self, o: Any) -> str:
        _Counting.calls += 1
        return super().encode(o)


def test_a_null_goes_to_the_stdlib_only_beside_a_nan() -> None:
    """orjson writes NaN as null: a None alone stays with orjson, a NaN anywhere does not."""
    stdlib = _Counting(ensure_ascii=False, sort_keys=True, allow_nan=False)
    assert fast_json.dumps({"a": None, "b": [1.5]}, json_default, stdlib) == '{"a":null,"b":[1.5]}'
    assert _Counting.calls == 0
    with pytest.raises(ValueError, match="Out of range float"):
        fast_json.dumps({"a": None, "b": [{"c": float("nan")}]}, json_default, stdlib)
    assert _Counting.calls == 1


def test_jsonb_stores_the_same_value_from_either_text(pg_server: PostgresSettings) -> None:
    """Spacing and float spelling differ between the two texts; jsonb keeps neither."""
    rng = random.Random(11)
    pairs = []
    for value in [*VALUES[:-1], *(_random_value(rng) for _ in range(300))]:
        try:
            slow = _JSON.encode(value)
        except (ValueError, TypeError):
            continue
        if "\\u0000" in slow or any(0xD800 <= ord(c) <= 0xDFFF for c in slow):
            continue  # rejected before Postgres, on either path
        pairs.append((fast_json.dumps(value, json_default, _JSON), slow))
    conn = connect(pg_server, database="postgres")
    cur = conn.cursor()
    differ = []
    for fast, slow in pairs:  # one by one: an array parameter would carry "null" as NULL
        cur.execute("SELECT %s::jsonb::text, %s::jsonb::text", (fast, slow))
        stored_fast, stored_slow = cur.fetchone()
        if stored_fast != stored_slow:
            differ.append((fast, slow))
    conn.close()
    assert len(pairs) > 250
    assert differ == []

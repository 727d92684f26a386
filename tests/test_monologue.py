"""The monologue a page at a time in Arrow is the per-row one, row for row, reason for reason."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import pyarrow as pa
import pytest

from gong_sync import sources, storage_read
from gong_sync.arrow_lines import page_fields
from gong_sync.arrow_rows import ArrowRows
from gong_sync.batches import Batch, fill
from gong_sync.monologue import unpack_monologue_arrow
from gong_sync.row_mapping import RowMapper
from tests.conftest import Env
from tests.test_arrow_lines import assert_same_landing

TRANSCRIPTS = sources.SOURCES["calls"].target("transcripts")


def _item(rng: random.Random, k: int) -> dict[str, object]:
    item: dict[str, object] = {"start": rng.choice([0, 1, 999, 1000, 1500, 2**40, -5]) + k}
    if rng.random() < 0.7:
        item["end"] = rng.choice([None, 0, 8000, 2**62, -1])
    item["text"] = rng.choice(["hello", "", "tab\\there", 'quote "x"', "é ✓ 😀", "back\\slash"])
    if rng.random() < 0.2:  # a field of its own: one type a page, as Arrow infers it
        item["speaker"] = rng.choice([None, "s1", "s2"])
    if rng.random() < 0.2:
        item["meta"] = {"flags": [True, None], "n": {"m": rng.choice([2, None])}}
    return item


def _good(rng: random.Random) -> str:
    """A valid monologue, spelt as any JSON writer might."""
    items = [_item(rng, k) for k in range(rng.randint(1, 4))]
    spacing = rng.choice([(",", ":"), (", ", ": ")])
    return json.dumps(items, separators=spacing, ensure_ascii=rng.random() < 0.5)


# Texts that each row of a page may hold: the row form rejects or alters them, or Arrow could
# read them differently, so every one is the row form's to judge; the rest of the page is not.
ROW_CASES = [
    "[]",
    "null",
    '[{"start": 1, "text": "a\\u0000b"}]',  # a NUL, escaped
    '[{"start": 1, "text": "\\ud800"}]',  # a lone surrogate, escaped
    '[{"start": 1, "text": "\\udc00 a lone low"}]',
    '[{"start": 1, "text": "\\ud800\\u0041 a high, then no low"}]',
    '[{"start": 1,\t"text": "a"}]',  # a tab between tokens
    '[{"start": 1, "text": "a\tb"}]',  # a raw tab in a string: Python refuses it
    '[{"start": 1,\n"text": "a"}]',
    '\ufeff[{"start": 1, "text": "a"}]',  # a BOM
    "[null]",
    '[{"text": "no start"}]',
    '[{"start": null, "text": "a"}]',
    '[{"start": 1}]',
    '[{"start": 1, "text": null}]',
    '[{"start": 1, "text": "a"}, {"start": 2}]',
]
# Texts that look odd but Arrow reads as the row form does.
EDGE_CASES = [
    '[{"start": -0, "end": -0, "text": "minus zero"}]',  # jsonb stores -0 as 0, as Python does
    '[{"start": 9223372036854775807, "end": -9223372036854775808, "text": "int64 edges"}]',
    '[{"start": 1, "text": "\\ud83d\\ude00 a surrogate pair"}]',
    '[{"start": 1, "text": "\\u00e9\\n\\t\\\\ \\" \\/ escapes"}]',
    '  [ {"start": 5, "end": 7, "text": "spaces"} ]  ',
]
# Texts that leave a whole page to the row form: Arrow cannot type them as the row form does.
PAGE_CASES = [
    '[{"start": 1.0, "text": "a float start"}]',
    '[{"start": 1, "end": 2.5, "text": "a float end"}]',
    '[{"start": 1, "text": "a", "confidence": 0.9}]',  # Python would respell the float
    '[{"start": 18446744073709551616, "text": "past int64"}]',
    '[{"start": 1e3, "text": "an exponent"}]',
    '[{"start": true, "text": "a boolean"}]',
    '[{"start": "1", "text": "a string"}]',
    '[{"start": 1, "text": 5}]',
    '[{"start": 1, "text": "a", "text": "twice"}]',
    '[{"start": 1, "end": "9", "text": "end as text"}]',
    '{"start": 1, "text": "an object"}',
    '"a string"',
    "[1, 2]",
]
# Not JSON at all: only a STRING column (or JSON holding a string) can hold these. Arrow's
# parser stops at the first, so the page is the row form's.
NOT_JSON = ['[{"start": 01, "text": "a"}]', '[{"start": NaN, "text": "a"}]', "[", "plain text"]

LAYOUTS = ["json", "json holding a string", "string"]


def _valid(text: str) -> bool:
    """JSON as BigQuery's JSON type holds it: strict, with no NaN or Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def _page(texts: Sequence[str | None], layout: str) -> ArrowRows:
    """A transcript page as read: a JSON column as BigQuery or the emulator gives it, or STRING."""
    if layout == "json holding a string":
        texts = [None if t is None else json.dumps(t) for t in texts]
    n = len(texts)
    table = pa.table(
        {
            "gong_call_id": [f"c{i}" for i in range(n)],
            "sequence_number": pa.array(range(n), pa.int64()),
            "speaker_id": ["s1"] * n,
            "topic": ["pricing"] * n,
            "source_synced_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
            "sentence": pa.array(texts, pa.string()),
        }
    )
    return storage_read.rows(table, frozenset() if layout == "string" else frozenset({"sentence"}))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_page_of_good_and_odd_rows_lands_as_the_row_form_lands_it(env: Env, layout: str) -> None:
    """Odd rows go to the row form, one by one; the good rows around them are Arrow's."""
    rng = random.Random(7)
    texts: list[str | None] = [_good(rng) for _ in range(300)]
    odd = [*ROW_CASES, None]
    if layout == "json":  # BigQuery's JSON type holds valid JSON only
        odd = [t for t in odd if t is None or _valid(t)]
    at = sorted(rng.sample(range(len(texts)), len(odd)))
    for i, text in zip(at, odd, strict=True):
        texts[i] = text
    spare = [i for i in range(len(texts)) if i not in at]
    for i, text in zip(rng.sample(spare, len(EDGE_CASES)), EDGE_CASES, strict=True):
        texts[i] = text
    rows = _page(texts, layout)
    page = page_fields(TRANSCRIPTS, rows)
    assert page is not None
    assert page.transformed
    assert page.whole
    assert [i for i, ok in enumerate(page.clean) if not ok] == at
    assert assert_same_landing(env, TRANSCRIPTS, rows) == len(texts) - len(odd)


@pytest.mark.parametrize(
    ("layout", "text"),
    [(layout, text) for layout in LAYOUTS for text in PAGE_CASES]
    + [(layout, text) for layout in LAYOUTS[1:] for text in NOT_JSON],
)
def test_json_arrow_cannot_type_as_the_row_form_does_leaves_the_page_to_it(
    env: Env, layout: str, text: str
) -> None:
    """A float, an int past 64 bits, a key twice, a changing type, not JSON: the row form's."""
    rng = random.Random(11)
    rows = _page([_good(rng), text, _good(rng)], layout)
    assert unpack_monologue_arrow(rows.table, rows.json) is None
    page = page_fields(TRANSCRIPTS, rows)
    assert page is None or not page.transformed
    assert_same_landing(env, TRANSCRIPTS, rows)


def test_a_page_arrow_transforms_is_never_converted_to_dicts() -> None:
    """The point of it: a clean transcript page's rows are written without being looked at."""
    rng = random.Random(3)
    rows = _page([_good(rng) for _ in range(50)], "json")
    batch = Batch(TRANSCRIPTS, TRANSCRIPTS.key)
    assert fill(batch, RowMapper(TRANSCRIPTS), rows) == []
    assert len(batch.lines) == 50
    assert rows._all is None
    assert not rows._some

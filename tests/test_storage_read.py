"""The Storage Read API path: the same rows, types and order as REST, and REST as its fallback."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from google.api_core.exceptions import DeadlineExceeded
from google.cloud import bigquery

from gong_sync import bigquery_sql, sources, storage_read
from gong_sync.bigquery_reader import BigQueryReader, Query
from gong_sync.result_order import UnorderedResult, in_cursor_order
from gong_sync.settings import BigQuerySettings
from tests.conftest import Env
from tests.factories import at, call, insert, insert_account_and_owner, opportunity, transcript
from tests.storage_standins import Paced, serving

# -- conversion (no services) ------------------------------------------------------------------


def test_arrow_rows_are_typed_as_rest_types_them() -> None:
    """JSON arrives as text and NUMERIC at a fixed scale; the mapping sees REST's forms."""
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    batch = pa.RecordBatch.from_pydict(
        {
            "id": ["a", None],
            "doc": ['{"k": [1, "x"]}', None],
            "amount": pa.array(
                [Decimal("1.500000000"), Decimal("100.000000000")], pa.decimal128(38, 9)
            ),
            "at": pa.array([when, None], pa.timestamp("us", tz="UTC")),
            "tags": [["x", "y"], []],
            "flag": [True, None],
        }
    )
    got = storage_read.rows(batch, frozenset({"doc"}))
    assert got == [
        {"id": "a", "doc": {"k": [1, "x"]}, "amount": Decimal("1.5"), "at": when,
         "tags": ["x", "y"], "flag": True},
        {"id": None, "doc": None, "amount": Decimal("100"), "at": None, "tags": [], "flag": None},
    ]  # fmt: skip
    assert [str(r["amount"]) for r in got] == ["1.5", "100"]  # no trailing zeros, no exponent


@pytest.mark.parametrize(
    ("arrow", "rest"),
    [
        ("99999999999999999999999999999.999999999", "99999999999999999999999999999.999999999"),
        ("12345678901234567890123456789.000000000", "12345678901234567890123456789"),
        ("-0.000000001", "-1E-9"),
        ("0E-9", "0"),
    ],
)
def test_numeric_at_its_limits_loses_no_digit(arrow: str, rest: str) -> None:
    """NUMERIC holds 29 digits before the point: Python's default 28-digit context rounded."""
    batch = pa.RecordBatch.from_pydict({"n": pa.array([Decimal(arrow)], pa.decimal128(38, 9))})
    (row,) = storage_read.rows(batch, frozenset())
    assert row["n"] == Decimal(rest)
    assert str(row["n"]) == rest


@pytest.mark.parametrize("as_table", [False, True], ids=["batch", "page"])
def test_bytes_that_are_not_utf8_become_replacement_characters(as_table: bool) -> None:
    """As the REST client decodes them (errors="replace"), so both paths land the same text."""
    data = b"okA\xff\xfeB"
    offsets = pa.array([0, 2, 6], pa.int32()).buffers()[1]
    text = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(data)])
    batch = pa.RecordBatch.from_arrays([text, pa.array([1, 2])], names=["title", "n"])
    page = pa.Table.from_batches([batch.slice(0, 1), batch.slice(1)]) if as_table else batch
    assert storage_read.rows(page, frozenset()) == [
        {"title": "ok", "n": 1},
        {"title": "A\ufffd\ufffdB", "n": 2},
    ]


def _batches(sizes: list[int]) -> Iterator[pa.RecordBatch]:
    start = 0
    for size in sizes:
        yield pa.RecordBatch.from_pydict({"n": list(range(start, start + size))})
        start += size


@pytest.mark.parametrize("skip", [0, 1, 4, 5, 6, 12, 13])
def test_skipping_rows_across_batches_drops_exactly_those_rows(skip: int) -> None:
    kept = storage_read.skip_rows(_batches([5, 0, 3, 5]), skip)
    assert [v for b in kept for v in b.column(0).to_pylist()] == list(range(13))[skip:]


@pytest.mark.parametrize("size", [1, 2, 5, 7, 100])
def test_batches_of_any_length_become_pages_of_the_page_size(size: int) -> None:
    pages = [t.column(0).to_pylist() for t in storage_read.repage(_batches([3, 0, 8, 1]), size)]
    assert [n for page in pages for n in page] == list(range(12))
    assert all(len(p) == size for p in pages[:-1])
    assert 0 < len(pages[-1]) <= size


def _cursor_page(seconds: Sequence[int], arrow: bool) -> Sequence[dict[str, Any]]:
    """A page of cursors, read over REST (dicts) or as Arrow."""
    values = [at(s) for s in seconds]
    if arrow:
        table = pa.table({bigquery_sql.CURSOR: pa.array(values, pa.timestamp("us", tz="UTC"))})
        return storage_read.rows(table, frozenset())
    return [{bigquery_sql.CURSOR: v} for v in values]


@pytest.mark.parametrize("arrow", [False, True])
def test_a_row_out_of_cursor_order_is_refused_before_its_page_commits(arrow: bool) -> None:
    rows = _cursor_page((1, 1, 2), arrow)
    assert in_cursor_order("call", rows, at(0)) == at(2)  # ties are in order
    assert in_cursor_order("call", rows, at(1)) == at(2)
    with pytest.raises(UnorderedResult, match=r"cursor \S*:01\.\d+\+00:00 after one with \S*:03\."):
        in_cursor_order("call", rows, at(3))  # the page before ended later than this one starts
    for late in (1, 2):  # a row below the one before it, anywhere in the page
        page = _cursor_page([*range(1, late + 2), 0], arrow)
        with pytest.raises(UnorderedResult, match="GONG_SYNC_BQ_READ_API=rest"):
            in_cursor_order("call", page, None)


# -- against the emulator ------------------------------------------------------------------


def _reader(env: Env, **changes: Any) -> BigQueryReader:
    return BigQueryReader(env.bq, dataclasses.replace(env.settings.bigquery, **changes))


def _page_query(env: Env, reader: BigQueryReader, stream_name: str) -> Query:
    """The page query of one stream of `calls` or `opportunities`, as the engine builds it."""
    source = sources.get("opportunities" if stream_name == "opportunity" else "calls")
    source, tables = reader.resolve(source)
    (stream,) = [s for s in source.streams if s.table == stream_name]
    target = source.target(stream.drives) if stream.drives else None
    text = bigquery_sql.page_query(stream, target, tables, has_since=False, has_position=False)
    params = bigquery_sql.page_params(stream, tables[stream.table], at(10**6), 1000, None, None)
    return Query(text, params, stream.table)


def _seed(env: Env) -> None:
    calls = [call(f"c{i:02d}", at(i // 3), custom_data={"k": i, "n": [i, None]}) for i in range(40)]
    insert(env.bq, env.datasets, "call", calls)
    insert(
        env.bq, env.datasets, "transcript", [transcript(f"c{i:02d}", 0, at(i)) for i in range(30)]
    )
    insert_account_and_owner(env.bq, env.datasets)
    deals = [opportunity(f"o{i:02d}", at(i // 4), amount=Decimal(f"{i}.25")) for i in range(20)]
    insert(env.bq, env.datasets, "opportunity", deals)


@pytest.mark.parametrize("stream", ["call", "transcript", "opportunity"])
def test_storage_and_rest_read_the_same_rows_in_the_same_order(env: Env, stream: str) -> None:
    _seed(env)
    storage, rest = _reader(env), _reader(env, read_api="rest")
    query = _page_query(env, storage, stream)
    over_storage = list(storage.pages(query, 7))
    over_rest = list(rest.pages(query, 7))
    assert storage.sessions == 1
    assert rest.sessions == 0
    assert [len(p.rows) for p in over_storage] == [len(p.rows) for p in over_rest]
    assert [p.rows for p in over_storage] == [p.rows for p in over_rest]
    assert over_storage[0].total_rows == over_rest[0].total_rows
    # Resuming the stored result from a row reads the same rows as REST's startIndex.
    job = over_storage[0]
    again = storage.resume(job.job_id or "", job.location, 9, 7)
    assert [r for p in again for r in p.rows] == [r for p in over_rest for r in p.rows][9:]


def test_a_short_result_is_read_over_rest(env: Env) -> None:
    """One REST request holds it: a read session would only add a round trip."""
    _seed(env)
    reader = _reader(env)
    query = _page_query(env, reader, "opportunity")
    (page,) = reader.pages(query, 50)
    assert len(page.rows) == 20
    assert reader.sessions == 0


def test_json_inside_a_struct_or_array_is_read_over_rest(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REST parses JSON at any depth, Arrow gives it as text: such a result is REST's.

    google-cloud-bigquery `_helpers.CellDataParser`: `record_to_py` recurses and `json_to_py`
    parses, REPEATED fields item by item. The emulator reports nested JSON as STRING, so the
    rule is pinned on schemas, and its use on a long result with the rule forced.
    """
    field = bigquery.SchemaField
    assert not storage_read.nested_json([field("j", "JSON"), field("n", "INT64")])
    assert storage_read.nested_json([field("j", "JSON", mode="REPEATED")])
    deep = field("s", "RECORD", fields=[field("t", "RECORD", fields=[field("j", "JSON")])])
    assert storage_read.nested_json([deep])
    assert not storage_read.nested_json([field("s", "RECORD", fields=[field("x", "STRING")])])
    _seed(env)
    reader = _reader(env)
    query = _page_query(env, reader, "call")
    monkeypatch.setattr(storage_read, "nested_json", lambda fields: True)
    assert sum(len(p.rows) for p in reader.pages(query, 7)) > 7
    assert reader.sessions == 0


def test_a_stream_open_longer_than_a_request_timeout_is_read_to_its_end() -> None:
    """The stream stays open while the run writes each page: a request timeout must not cut it.

    Cut so, it failed with DeadlineExceeded, which the client library does not resume.
    """
    batches = [pa.RecordBatch.from_pydict({"n": [i, i + 1]}) for i in range(0, 10, 2)]
    with serving(Paced(batches, gap=0.4)) as host:
        settings = BigQuerySettings(storage_emulator_host=host)
        client = storage_read.make_read_client(settings)
        assert client is not None
        table = bigquery.TableReference.from_string("p.d.t")
        read = storage_read.batches(client, table, "p", deadline=None, default_timeout=1.0)
        assert [n for b in read for n in b.column(0).to_pylist()] == list(range(10))  # 2 s
        soon = time.monotonic() + 1.0  # a run's deadline still cuts it
        with pytest.raises(DeadlineExceeded):
            list(storage_read.batches(client, table, "p", deadline=soon, default_timeout=60))

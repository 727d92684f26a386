"""The BigQuery SQL builders, run for their meaning: the queries execute in SQLite.

Every construct the builders emit for plain declarations (backtick identifiers, @name
parameters, COALESCE, NULLs sorting first in ORDER BY) means the same in SQLite, whose
Python driver binds @name parameters from a dict. The one BigQuery-only construct,
`IN UNNEST(@keys)`, is translated to `IN (SELECT value FROM json_each(@keys))`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud.bigquery import ArrayQueryParameter
from hypothesis import given, settings
from hypothesis import strategies as st

from gong_sync import bigquery_sql as sql
from gong_sync import sources
from gong_sync.bigquery_sql import (
    CURSOR,
    DELETED,
    METADATA_PREFIX,
    SchemaMismatch,
    TableRef,
    key_column,
)
from gong_sync.declarations import Column, Source, Stream, Target, Touch, deleted
from gong_sync.local import fivetran_schemas

# ---------------------------------------------------------------------------------------------
# A fake declaration whose SQL SQLite also speaks.

THING_SCHEMA = {
    "id": "STRING", "parent_id": "STRING", "title": "STRING", "body": "STRING",
    "extra": "INTEGER", "is_deleted": "BOOLEAN", "_fivetran_synced": "TIMESTAMP",
    "_fivetran_deleted": "BOOLEAN",
}  # fmt: skip
PART_SCHEMA = {
    "thing_id": "STRING", "n": "INTEGER", "note": "STRING", "_fivetran_synced": "TIMESTAMP",
    "_fivetran_deleted": "BOOLEAN",
}  # fmt: skip
TABLES = {
    "thing": TableRef("thing", "proj.ds.thing", THING_SCHEMA),
    "part": TableRef("part", "proj.ds.part_v2", PART_SCHEMA),
}

THINGS = Target(
    table="things",
    key=("thing_id",),
    parent="parent_id",
    columns=(
        Column("thing_id", "text", "t.id"),
        Column("parent_id", "text", "t.parent_id"),
        Column("title", "text", "UPPER(t.title)"),
        Column("score", "double", "t.score", optional=True),  # not in THING_SCHEMA
        Column("synced_at", "timestamptz", "t._fivetran_synced", compare=False),
    ),
    from_sql="{thing} AS t",
    deleted_sql=deleted("t._fivetran_deleted", "t.is_deleted"),
    metadata_alias="t",
    inputs=(Column("body", "text", "t.body"),),
)
THING_STREAM = Stream(table="thing", alias="t", key=("id",), drives="things")
PART_STREAM = Stream(
    table="part",
    alias="p",
    key=("thing_id", "n"),
    touches=(
        Touch("things", column="thing_id"),
        Touch("things", column="thing_id"),  # the same column twice is selected once
        Touch("things", lookup_sql="SELECT id AS k FROM {thing} WHERE id IN UNNEST(@ids)"),
    ),
)
PART_TARGET = Target(
    table="parts", key=("thing_id", "n"), parent="thing_id",
    columns=(Column("thing_id", "text", "p.thing_id"), Column("n", "integer", "p.n")),
    from_sql="{part} AS p", deleted_sql="FALSE",
)  # fmt: skip
SOURCE = Source(
    name="things",
    streams=(THING_STREAM, PART_STREAM),
    targets=(THINGS,),
    datasets={"thing": "gong", "part": "gong"},
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CURSORS = [T0, T0 + timedelta(seconds=1), T0 + timedelta(minutes=5), T0 + timedelta(days=1)]


# ---------------------------------------------------------------------------------------------
# Running the queries in SQLite.


def _sqlite_value(value: Any) -> Any:
    """Timestamps as fixed-width UTC text, so text order is time order."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _from_sqlite(value: Any) -> Any:
    """Back from _sqlite_value: fixed-width text to an aware datetime."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def used_params(text: str) -> set[str]:
    """The @parameters a query reads."""
    return set(re.findall(r"@(\w+)", text))


def connect(
    tables: Mapping[str, TableRef], rows: Mapping[str, Sequence[Mapping[str, Any]]]
) -> sqlite3.Connection:
    """An in-memory SQLite database with a table per ref, named by its full BigQuery path."""
    db = sqlite3.connect(":memory:")
    for logical, ref in tables.items():
        cols = ", ".join(f'"{c}"' for c in ref.schema)
        db.execute(f'CREATE TABLE "{ref.full_name}" ({cols})')
        for row in rows.get(logical, ()):
            marks = ", ".join("?" for _ in ref.schema)
            db.execute(
                f'INSERT INTO "{ref.full_name}" VALUES ({marks})',
                [_sqlite_value(row.get(c)) for c in ref.schema],
            )
    return db


def run(db: sqlite3.Connection, text: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    """Execute a query with exactly the parameters it reads; rows as dicts."""
    assert used_params(text) == {p.name for p in params}, "parameters used != supplied"
    if text.count(" IN UNNEST(@keys)"):
        assert text.count(" IN UNNEST(") == 1
        text = text.replace(" IN UNNEST(@keys)", " IN (SELECT value FROM json_each(@keys))")
    bound = {
        p.name: json.dumps(p.values)
        if isinstance(p, ArrayQueryParameter)
        else _sqlite_value(p.value)
        for p in params
    }
    cursor = db.execute(text, bound)
    names = [d[0] for d in cursor.description]
    return [{n: _from_sqlite(v) for n, v in zip(names, row, strict=True)} for row in cursor]


def keyset_order(cursor: Any, key: Sequence[Any]) -> tuple[Any, ...]:
    """(cursor, key...) with NULLs first in every key column, as ORDER BY sorts them."""
    return (cursor, *((v is not None, v) for v in key))


def read_all(
    db: sqlite3.Connection,
    query: Callable[..., str],
    stream: Stream,
    ref: TableRef,
    *,
    until: datetime,
    since: datetime | None,
    limit: int,
    position_of: Callable[[Mapping[str, Any]], tuple[datetime, tuple[Any, ...]]],
) -> Iterator[dict[str, Any]]:
    """Page through a stream as the engine does: each query resumes after the last row read."""
    after: tuple[datetime | None, tuple[Any, ...]] | None = None
    for _ in range(1000):
        text = query(has_since=since is not None, has_position=after is not None)
        params = sql.page_params(stream, ref, until, limit, since, after)
        rows = run(db, text, params)
        yield from rows
        if len(rows) < limit:
            return
        after = position_of(rows[-1])
    raise AssertionError("paging did not end")


# ---------------------------------------------------------------------------------------------
# Keyset paging on the fake declaration: the whole page query runs.


@st.composite
def part_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows of the two-column-key stream, keys unique, with NULLs and ties everywhere."""
    keys = draw(
        st.lists(
            st.tuples(
                st.sampled_from([None, "", "a", "b", "B", "ab", "é"]),
                st.sampled_from([None, -1, 0, 2]),
            ),
            unique=True,
            max_size=14,
        )
    )
    return [
        {
            "thing_id": a,
            "n": n,
            "note": f"{a}/{n}",
            "_fivetran_synced": draw(st.sampled_from([None, *CURSORS])),
        }
        for a, n in keys
    ]


@settings(max_examples=50, deadline=None)
@given(
    part_rows(),
    st.sampled_from(CURSORS),
    st.none() | st.sampled_from(CURSORS),
    st.integers(1, 4),
)
def test_paging_reads_every_row_in_the_window_once_in_cursor_then_key_order(
    rows: list[dict[str, Any]], until: datetime, since: datetime | None, limit: int
) -> None:
    """The pages, in order, are exactly the rows with since <= cursor <= until, sorted."""
    db = connect(TABLES, {"part": rows})
    ref = TABLES["part"]

    def query(*, has_since: bool, has_position: bool) -> str:
        return sql.page_query(
            PART_STREAM, None, TABLES, has_since=has_since, has_position=has_position
        )

    def position_of(row: Mapping[str, Any]) -> tuple[datetime, tuple[Any, ...]]:
        return row[CURSOR], (row[key_column(0)], row[key_column(1)])

    got = list(
        read_all(db, query, PART_STREAM, ref, until=until, since=since, limit=limit,
                 position_of=position_of)
    )  # fmt: skip
    inside = [
        r for r in rows
        if r["_fivetran_synced"] is not None and r["_fivetran_synced"] <= until
        and (since is None or r["_fivetran_synced"] >= since)
    ]  # fmt: skip
    inside.sort(key=lambda r: keyset_order(r["_fivetran_synced"], (r["thing_id"], r["n"])))
    assert [(r[key_column(0)], r[key_column(1)]) for r in got] == [
        (r["thing_id"], r["n"]) for r in inside
    ]
    assert [r[CURSOR] for r in got] == [r["_fivetran_synced"] for r in inside]
    # A touch stream selects each touched column once, under its own name.
    assert all(r["thing_id"] == r[key_column(0)] for r in got)
    assert {k for r in got for k in r} <= {"thing_id", CURSOR, key_column(0), key_column(1)}


def test_the_keyset_predicate_is_strictly_after_the_position_with_nulls_first() -> None:
    """One query after a position: every row whose (cursor, key) sorts after it, no other."""
    cursor = CURSORS[1]
    keys = [(a, n) for a in (None, "a", "b") for n in (None, 0, 1)]
    rows = [{"thing_id": a, "n": n, "_fivetran_synced": c} for c in CURSORS[:3] for a, n in keys]
    db = connect(TABLES, {"part": rows})
    for after in keys:
        text = sql.page_query(PART_STREAM, None, TABLES, has_since=False, has_position=True)
        params = sql.page_params(
            PART_STREAM, TABLES["part"], CURSORS[-1], 100, None, (cursor, after)
        )
        got = [(r[CURSOR], r[key_column(0)], r[key_column(1)]) for r in run(db, text, params)]
        expected = sorted(
            ((r["_fivetran_synced"], r["thing_id"], r["n"]) for r in rows
             if keyset_order(r["_fivetran_synced"], (r["thing_id"], r["n"]))
             > keyset_order(cursor, after)),
            key=lambda t: keyset_order(t[0], t[1:]),
        )  # fmt: skip
        assert got == expected, after


def test_a_driving_page_selects_the_target_columns_metadata_and_bookkeeping() -> None:
    """Columns by name, an absent optional column as NULL, unmapped columns as _m_, _deleted."""
    things: list[dict[str, Any]] = [
        {"id": "k1", "parent_id": "p", "title": "one", "body": "b1", "extra": 7,
         "is_deleted": None, "_fivetran_synced": CURSORS[0], "_fivetran_deleted": None},
        {"id": "k2", "parent_id": "p", "title": "two", "body": None, "extra": None,
         "is_deleted": True, "_fivetran_synced": CURSORS[1], "_fivetran_deleted": False},
        {"id": "k3", "parent_id": None, "title": None, "body": None, "extra": None,
         "is_deleted": False, "_fivetran_synced": CURSORS[1], "_fivetran_deleted": True},
    ]  # fmt: skip
    db = connect(TABLES, {"thing": things})
    text = sql.page_query(THING_STREAM, THINGS, TABLES, has_since=False, has_position=False)
    params = sql.page_params(THING_STREAM, TABLES["thing"], CURSORS[-1], 10, None, None)
    got = run(db, text, params)
    assert got[0] == {
        "thing_id": "k1", "parent_id": "p", "title": "ONE", "score": None,
        "synced_at": CURSORS[0], "body": "b1",
        f"{METADATA_PREFIX}body": "b1", f"{METADATA_PREFIX}extra": 7,
        f"{METADATA_PREFIX}is_deleted": None,
        DELETED: 0, CURSOR: CURSORS[0], key_column(0): "k1",
    }  # fmt: skip
    # Any flag TRUE is deleted; NULL flags are alive.
    assert [r[DELETED] for r in got] == [0, 1, 1]


def test_metadata_columns_are_the_unmapped_non_fivetran_columns_inputs_included() -> None:
    """An input (read, not written) stays in metadata; _fivetran_* never lands there."""
    assert sql.metadata_columns(THINGS, TABLES) == ["body", "extra", "is_deleted"]
    assert sql.metadata_columns(PART_TARGET, TABLES) == []


# ---------------------------------------------------------------------------------------------
# Keyset paging on every real stream: the page query's own WHERE and ORDER BY run in SQLite
# over the stream's table (the SELECT list and joins are BigQuery's business).


def _real_streams() -> dict[str, tuple[Source, Stream]]:
    """Every stream of every registered source and fallback (a shared one once), by id."""
    found: dict[str, tuple[Source, Stream]] = {}
    for source in sources.SOURCES.values():
        for declaration in (source, source.fallback):
            if declaration is None:
                continue
            for stream in declaration.streams:
                found.setdefault(f"{source.name}.{stream.table}", (declaration, stream))
    return found


REAL_STREAMS = _real_streams()


def _real_tables(source: Source) -> dict[str, TableRef]:
    """The local Fivetran schemas as BigQuery reports them, under project.dataset.table."""
    return {
        name: TableRef(
            name, f"proj.{source.datasets[name]}.{name}", fivetran_schemas.column_types(name)
        )
        for name in sql.referenced_tables(source)
    }


_VALUES = {
    "STRING": st.sampled_from([None, "", "a", "b", "ab", "Z"]),
    "INT64": st.sampled_from([None, -5, 0, 3]),
    "INTEGER": st.sampled_from([None, -5, 0, 3]),
}


def assert_pages_in_order(name: str, data: st.DataObject) -> None:
    """Page through generated rows of one real stream with its page query's keyset part."""
    source, stream = REAL_STREAMS[name]
    tables = _real_tables(source)
    ref = tables[stream.table]
    target = source.target(stream.drives) if stream.drives else None
    if target is not None:  # the keyset columns are the stream table's own
        assert f"{{{stream.table}}} AS {stream.alias}" in target.from_sql
    keys = data.draw(
        st.lists(
            st.tuples(*(_VALUES[ref.schema[k]] for k in stream.key)), unique=True, max_size=10
        ),
        label=f"{name} keys",
    )
    cursors = data.draw(st.lists(st.sampled_from([None, *CURSORS]), min_size=len(keys),
                                 max_size=len(keys)), label=f"{name} cursors")  # fmt: skip
    rows = [
        {**dict(zip(stream.key, key, strict=True)), stream.cursor: cursor}
        for key, cursor in zip(keys, cursors, strict=True)
    ]
    until = data.draw(st.sampled_from(CURSORS), label=f"{name} until")
    since = data.draw(st.none() | st.sampled_from(CURSORS), label=f"{name} since")
    limit = data.draw(st.integers(1, 3), label=f"{name} limit")
    db = connect({stream.table: ref}, {stream.table: rows})

    def query(*, has_since: bool, has_position: bool) -> str:
        text = sql.page_query(
            stream, target, tables, has_since=has_since, has_position=has_position
        )
        own_where = text[text.rindex(" WHERE ") :]
        return f"SELECT {stream.alias}.* FROM `{ref.full_name}` AS {stream.alias}{own_where}"

    def position_of(row: Mapping[str, Any]) -> tuple[datetime, tuple[Any, ...]]:
        return row[stream.cursor], tuple(row[k] for k in stream.key)

    got = [
        tuple(r[k] for k in stream.key)
        for r in read_all(db, query, stream, ref, until=until, since=since, limit=limit,
                          position_of=position_of)
    ]  # fmt: skip
    inside = sorted(
        (r for r in rows if r[stream.cursor] is not None and r[stream.cursor] <= until
         and (since is None or r[stream.cursor] >= since)),
        key=lambda r: keyset_order(r[stream.cursor], [r[k] for k in stream.key]),
    )  # fmt: skip
    assert got == [tuple(r[k] for k in stream.key) for r in inside], name


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_every_real_stream_pages_through_its_rows_once_in_order(data: st.DataObject) -> None:
    """The real page query's WHERE and ORDER BY: each row in the window exactly once, sorted."""
    for name in REAL_STREAMS:
        assert_pages_in_order(name, data)


@pytest.mark.parametrize("name", list(REAL_STREAMS))
def test_every_real_page_query_reads_only_parameters_page_params_supplies(name: str) -> None:
    """For each combination of since and position, the @names used are exactly those supplied."""
    source, stream = REAL_STREAMS[name]
    tables = _real_tables(source)
    ref = tables[stream.table]
    target = source.target(stream.drives) if stream.drives else None
    key = tuple(None for _ in stream.key)
    for since in (None, T0):
        for after in (None, (T0, key)):
            text = sql.page_query(
                stream, target, tables, has_since=since is not None, has_position=after is not None
            )
            params = sql.page_params(stream, ref, T0, 10, since, after)
            assert used_params(text) == {p.name for p in params}
            assert text.endswith(" LIMIT @limit")


def test_page_params_are_typed_for_bigquery() -> None:
    """Bounds are TIMESTAMPs, the limit INT64, each key its column's type in query-param form."""
    params = sql.page_params(
        PART_STREAM, TABLES["part"], T0, 10, CURSORS[0], (CURSORS[1], ("a", 3))
    )
    assert [(p.name, p.type_, p.value) for p in params] == [
        ("until", "TIMESTAMP", T0),
        ("limit", "INT64", 10),
        ("since", "TIMESTAMP", CURSORS[0]),
        ("after_cursor", "TIMESTAMP", CURSORS[1]),
        ("after_k0", "STRING", "a"),
        ("after_k1", "INT64", 3),  # the schema says INTEGER (legacy name)
    ]
    assert sql.key_param_names(PART_STREAM) == ["after_k0", "after_k1"]
    assert sql.key_param_names(THING_STREAM) == ["after_k0"]


def test_page_params_refuse_a_position_whose_key_has_the_wrong_length() -> None:
    """A stored position from another key shape fails loudly instead of binding half a key."""
    with pytest.raises(ValueError):  # noqa: PT011 - zip(strict=True) says which is shorter
        sql.page_params(PART_STREAM, TABLES["part"], T0, 10, None, (T0, ("a",)))


# ---------------------------------------------------------------------------------------------
# The other queries.


def test_newest_cursor_is_the_greatest_cursor_up_to_until() -> None:
    """MAX over the stream's table, bounded by @until; NULL when nothing is that old."""
    rows: list[dict[str, Any]] = [
        {"thing_id": "a", "n": i, "_fivetran_synced": c} for i, c in enumerate(CURSORS)
    ]
    db = connect(TABLES, {"part": [*rows, {"thing_id": "z", "n": 9, "_fivetran_synced": None}]})
    text = sql.newest_cursor_query(PART_STREAM, TABLES)
    assert "`proj.ds.part_v2`" in text
    for until, newest in [(CURSORS[2], CURSORS[2]), (CURSORS[2] - timedelta(microseconds=1),
                          CURSORS[1]), (T0 - timedelta(seconds=1), None)]:  # fmt: skip
        assert run(db, text, [sql.scalar("until", "TIMESTAMP", until)]) == [{"newest": newest}]


THING_ROWS: list[dict[str, Any]] = [
    {"id": "a1", "parent_id": "A", "title": "x", "_fivetran_deleted": None},
    {"id": "a2", "parent_id": "A", "title": "y", "_fivetran_deleted": False, "is_deleted": None},
    {"id": "a3", "parent_id": "A", "_fivetran_deleted": True},
    {"id": "a4", "parent_id": "A", "is_deleted": True},
    {"id": "b1", "parent_id": "B"},
    {"id": "n1", "parent_id": None},
    {"id": "n2", "parent_id": None, "is_deleted": True},
]


def test_derive_query_reads_the_live_rows_of_the_given_parents() -> None:
    """Rows whose parent is in @keys and no flag is TRUE (a NULL flag is alive)."""
    db = connect(TABLES, {"thing": THING_ROWS})
    text = sql.derive_query(THINGS, TABLES)
    keys = ArrayQueryParameter("keys", "STRING", ["A", "missing"])
    got = run(db, text, [keys])
    assert sorted(r["thing_id"] for r in got) == ["a1", "a2"]
    assert got[0].keys() == {
        "thing_id", "parent_id", "title", "score", "synced_at", "body",
        *(f"{METADATA_PREFIX}{c}" for c in sql.metadata_columns(THINGS, TABLES)),
    }  # fmt: skip
    assert DELETED not in got[0]  # only live rows: no deletion column


def test_derive_query_with_null_parent_reads_the_live_rows_without_a_parent() -> None:
    """null_parent=True: the live rows whose parent is NULL, and no @keys parameter."""
    db = connect(TABLES, {"thing": THING_ROWS})
    text = sql.derive_query(THINGS, TABLES, null_parent=True)
    assert used_params(text) == set()
    assert [r["thing_id"] for r in run(db, text, [])] == ["n1"]


def test_key_query_reads_only_the_keys_of_live_rows() -> None:
    """One column per target key, under its target name."""
    db = connect(TABLES, {"thing": THING_ROWS})
    got = run(db, sql.key_query(THINGS, TABLES), [])
    assert sorted(got, key=lambda r: r["thing_id"]) == [
        {"thing_id": k} for k in ("a1", "a2", "b1", "n1")
    ]


# ---------------------------------------------------------------------------------------------
# Table references, parameters and schema checks.


def test_resolve_replaces_every_placeholder_with_the_quoted_real_table() -> None:
    """Each {logical} becomes its backtick-quoted full name, however often it appears."""
    text = sql.resolve("SELECT * FROM {thing} AS t JOIN {part} AS p ON p.x = t.x, {thing}", TABLES)
    assert text == (
        "SELECT * FROM `proj.ds.thing` AS t JOIN `proj.ds.part_v2` AS p ON p.x = t.x,"
        " `proj.ds.thing`"
    )
    assert sql.resolve("SELECT 1", TABLES) == "SELECT 1"
    with pytest.raises(KeyError, match="nope"):
        sql.resolve("{nope}", TABLES)


@pytest.mark.parametrize(
    "path", ["p.d.t`; DROP TABLE x; --", "p.d.t x", "p.d.t\n", "", "p.d.`t`", "p.d.t/*"]
)
def test_a_table_path_that_could_escape_its_quotes_is_refused(path: str) -> None:
    """A configured table name is an identifier, never SQL."""
    tables = {"thing": TableRef("thing", path, THING_SCHEMA)}
    with pytest.raises(ValueError, match="not a valid BigQuery table path"):
        sql.resolve("{thing}", tables)


def test_a_table_path_with_project_punctuation_is_quoted() -> None:
    """Hyphens, colons (domain projects) and underscores are valid in a path."""
    assert sql.quote("my-proj:eu.data_set.t_1") == "`my-proj:eu.data_set.t_1`"


@pytest.mark.parametrize(
    ("bq_type", "param_type"),
    [("INTEGER", "INT64"), ("FLOAT", "FLOAT64"), ("BOOLEAN", "BOOL"), ("STRING", "STRING"),
     ("INT64", "INT64"), ("TIMESTAMP", "TIMESTAMP"), ("NUMERIC", "NUMERIC")],
)  # fmt: skip
def test_scalar_maps_legacy_schema_types_to_query_parameter_types(
    bq_type: str, param_type: str
) -> None:
    """get_table reports legacy type names; query parameters need the standard ones."""
    param = sql.scalar("x", bq_type, 1)
    assert (param.name, param.type_, param.value) == ("x", param_type, 1)


def test_referenced_tables_lists_each_table_once_in_first_use_order() -> None:
    """Streams first, then each target's FROM, then touch lookups."""
    assert sql.referenced_tables(SOURCE) == ["thing", "part"]


def test_the_declared_columns_exist_in_the_full_schema() -> None:
    """The fake source is consistent: the negative cases below fail for one reason each."""
    sql.check_columns(SOURCE, TABLES)


def _without(table: str, column: str) -> dict[str, TableRef]:
    """TABLES with one column dropped from one table's schema."""
    ref = TABLES[table]
    schema = {k: v for k, v in ref.schema.items() if k != column}
    return {**TABLES, table: TableRef(ref.logical, ref.full_name, schema)}


@pytest.mark.parametrize("column", ["id", "title", "body", "_fivetran_deleted", "is_deleted"])
def test_a_missing_target_column_names_itself_the_target_and_the_table(column: str) -> None:
    """Written columns, inputs and deletion flags must exist; the message says what to do."""
    with pytest.raises(SchemaMismatch) as caught:
        sql.check_columns(SOURCE, _without("thing", column))
    assert str(caught.value) == (
        f"column {column!r} used by target things is missing from BigQuery table "
        "proj.ds.thing; restore it or change the declaration"
    )


@pytest.mark.parametrize("column", ["thing_id", "n", "_fivetran_synced"])
def test_a_missing_stream_column_names_itself_the_stream_and_the_table(column: str) -> None:
    """The stream's key, cursor and touched columns must exist."""
    with pytest.raises(SchemaMismatch) as caught:
        sql.check_columns(SOURCE, _without("part", column))
    assert str(caught.value) == (
        f"column {column!r} of stream part is missing from BigQuery table proj.ds.part_v2"
    )


def test_an_absent_optional_column_is_allowed_and_selected_as_null() -> None:
    """`score` is not in the schema: no mismatch, and the SELECT yields NULL for it."""
    sql.check_columns(SOURCE, TABLES)
    assert "NULL AS `score`" in sql.select_list(THINGS, TABLES)
    with_score = {**THING_SCHEMA, "score": "FLOAT"}
    tables = {**TABLES, "thing": TableRef("thing", "proj.ds.thing", with_score)}
    assert "t.score AS `score`" in sql.select_list(THINGS, tables)


def test_columns_of_a_subquery_alias_are_not_checked_against_any_table() -> None:
    """Only aliases of {table} references are checked; a derived table's columns are its own."""
    target = Target(
        table="joined", key=("thing_id",), parent="thing_id",
        columns=(Column("thing_id", "text", "t.id"), Column("total", "bigint", "s.total")),
        from_sql="{thing} AS t LEFT JOIN (SELECT thing_id, COUNT(*) AS total FROM {part}"
                 " GROUP BY thing_id) AS s ON s.thing_id = t.id",
        deleted_sql="FALSE",
    )  # fmt: skip
    source = Source(name="joined", streams=(), targets=(target,))
    sql.check_columns(source, TABLES)


@pytest.mark.parametrize("name", sorted(sources.SOURCES))
def test_every_real_source_matches_the_local_fivetran_schemas(name: str) -> None:
    """The declarations and the emulator's Fivetran tables agree (and its fallback's too)."""
    source = sources.SOURCES[name]
    for declaration in (source, source.fallback):
        if declaration is not None:
            sql.check_columns(declaration, _real_tables(declaration))


def test_a_floored_derivation_reads_each_floored_table_from_the_floor_on() -> None:
    """Speakers: both speaker tables through a raw `_fivetran_synced >= @floor` (what block
    pruning needs), selecting every column the query names of them; users and call as before."""
    source = sources.get("calls")
    tables = {
        name: sql.TableRef(name, f"p.d.{name}", fivetran_schemas.column_types(name))
        for name in source.tables()
    }
    target = source.target("call_speakers")
    named = [s for s in source.streams if s.table in ("call_speaker", "call_participant")]
    plain = sql.derive_query(target, tables)
    text = sql.derive_query(target, tables, floored=named)
    assert used_params(text) == {"keys", "floor"}
    for stream in named:
        found = re.findall(rf"\(SELECT ([^()]*) FROM `p\.d\.{stream.table}` WHERE (.*?)\)", text)
        assert [f[1] for f in found] == ["`_fivetran_synced` >= @floor"], stream.table
        selected = {c.strip("` ") for c in found[0][0].split(",")}
        named_in_plain = {c for c in tables[stream.table].schema if re.search(rf"\b{c}\b", plain)}
        assert selected == named_in_plain | {"_fivetran_synced"}
    for bare in ("users", "call"):
        assert f"`p.d.{bare}` AS" in text
    # And nothing else changed:
    unwrapped = re.sub(r"\(SELECT [^()]* FROM (`[^`]*`) WHERE `_fivetran_synced` >= @floor\)",
                       r"\1", text)  # fmt: skip
    assert unwrapped == plain

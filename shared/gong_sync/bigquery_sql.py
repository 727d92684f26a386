"""BigQuery SQL built from declarations: identifiers come from declarations, values are params."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from google.cloud import bigquery

from gong_sync import narrowing
from gong_sync.declarations import PLACEHOLDER, Column, Source, Stream, Target

_TABLE_REF = re.compile(r"\{(\w+)\}\s+AS\s+(\w+)", re.IGNORECASE)
# The bookkeeping columns a page query adds to a target's own (and nothing else names):
METADATA_PREFIX = "_m_"  # a metadata column of the target, to be folded into its JSON
CURSOR = "_cursor"  # the stream's cursor value (its _fivetran_synced)
DELETED = "_deleted"  # whether the row is deleted in the source
KEY_PREFIX = "_k"  # _k0, _k1...: the stream's key, in order, for keyset paging


def key_column(i: int) -> str:
    """The bookkeeping column of the i-th key of a stream."""
    return f"{KEY_PREFIX}{i}"


class SchemaMismatch(RuntimeError):
    """A declared column is missing from the BigQuery table; the message names it."""


@dataclass(frozen=True)
class TableRef:
    """A logical table resolved to its real BigQuery location and schema."""

    logical: str
    full_name: str  # project.dataset.table
    schema: Mapping[str, str]  # column -> BigQuery type, in table order


def quote(full_name: str) -> str:
    """Backtick-quote a table path, refusing characters that could escape the quotes."""
    if not re.fullmatch(r"[\w.\-:]+", full_name):
        raise ValueError(f"not a valid BigQuery table path: {full_name!r}")
    return f"`{full_name}`"


def resolve(sql: str, tables: Mapping[str, TableRef]) -> str:
    """Replace {logical} placeholders with quoted table paths."""
    return PLACEHOLDER.sub(lambda m: quote(tables[m.group(1)].full_name), sql)


def referenced_tables(source: Source) -> list[str]:
    """Every logical table a source's SQL mentions, in first-use order."""
    return source.tables()


def _aliases(target: Target) -> dict[str, str]:
    """Alias -> logical table, from the target's FROM clause."""
    return {alias: table for table, alias in _TABLE_REF.findall(target.from_sql)}


def _expressions(target: Target, *, optional: bool = True) -> list[str]:
    """Every SQL text of a target; optional=False leaves out optional columns."""
    cols = [*target.columns, *target.inputs]
    return [
        *(c.sql for c in cols if c.sql and (optional or not c.optional)),
        target.from_sql,
        target.deleted_sql,
    ]


_COLUMN_REF = re.compile(r"\b(\w+)\.(\w+)\b")


def _missing(target: Target, col: Column, tables: Mapping[str, TableRef]) -> bool:
    """Whether an optional column's source column is absent from BigQuery."""
    aliases = _aliases(target)
    return any(
        alias in aliases and name not in tables[aliases[alias]].schema
        for alias, name in _COLUMN_REF.findall(col.sql or "")
    )


def check_columns(source: Source, tables: Mapping[str, TableRef]) -> None:
    """Fail before reading anything if a declared column no longer exists in BigQuery."""
    for target in source.targets:
        aliases = _aliases(target)
        for expr in _expressions(target, optional=False):
            for alias, column in _COLUMN_REF.findall(expr):
                if alias not in aliases:
                    continue
                ref = tables[aliases[alias]]
                if column not in ref.schema:
                    raise SchemaMismatch(
                        f"column {column!r} used by target {target.table} is missing from "
                        f"BigQuery table {ref.full_name}; restore it or change the declaration"
                    )
    for stream in source.streams:
        ref = tables[stream.table]
        needed = [*stream.key, stream.cursor, *(t.column for t in stream.touches if t.column)]
        for column in needed:
            if column not in ref.schema:
                raise SchemaMismatch(
                    f"column {column!r} of stream {stream.table} is missing from BigQuery "
                    f"table {ref.full_name}"
                )


def metadata_columns(target: Target, tables: Mapping[str, TableRef]) -> list[str]:
    """Columns of the metadata alias that no declaration maps: new columns land here."""
    if not target.metadata_alias:
        return []
    alias = target.metadata_alias
    table = tables[_aliases(target)[alias]]
    # Only written columns count as mapped: an input (an email body that feeds the snippet)
    # is still kept whole in metadata.
    written = [c.sql for c in target.columns if c.sql]
    mapped = {col for expr in written for a, col in _COLUMN_REF.findall(expr) if a == alias}
    return [c for c in table.schema if c not in mapped and not c.startswith("_fivetran")]


def _value_sql(target: Target, col: Column, tables: Mapping[str, TableRef]) -> str:
    if col.optional and _missing(target, col, tables):
        return "NULL"
    return col.sql or "NULL"


def select_list(target: Target, tables: Mapping[str, TableRef]) -> str:
    """The SELECT list that yields a target's columns, raw inputs and metadata columns."""
    cols = [c for c in (*target.columns, *target.inputs) if c.sql]
    parts = [f"{_value_sql(target, c, tables)} AS `{c.name}`" for c in cols]
    parts += [
        f"{target.metadata_alias}.`{col}` AS `{METADATA_PREFIX}{col}`"
        for col in metadata_columns(target, tables)
    ]
    return ", ".join(parts)


def _key_after(exprs: Sequence[str], names: Sequence[str]) -> str:
    """Null-safe lexicographic `exprs > @names`, matching ORDER BY's NULLS FIRST."""
    expr, name = exprs[0], names[0]
    greater = f"((@{name} IS NULL AND {expr} IS NOT NULL) OR {expr} > @{name})"
    if len(exprs) == 1:
        return greater
    equal = f"(({expr} IS NULL AND @{name} IS NULL) OR {expr} = @{name})"
    return f"({greater} OR ({equal} AND {_key_after(exprs[1:], names[1:])}))"


def key_param_names(stream: Stream) -> list[str]:
    """Parameter names for the keyset position of a stream's key columns."""
    return [f"after_k{i}" for i in range(len(stream.key))]


def page_query(
    stream: Stream,
    target: Target | None,
    tables: Mapping[str, TableRef],
    *,
    has_since: bool,
    has_position: bool,
) -> str:
    """A stream's rows after a keyset position in (cursor, key) order, up to @limit of them."""
    a = stream.alias
    cursor = f"{a}.`{stream.cursor}`"
    keys = [f"{a}.`{k}`" for k in stream.key]
    if target is not None:
        selected = f"{select_list(target, tables)}, {is_deleted(target)} AS {DELETED}"
        from_sql = resolve(target.from_sql, tables)
    else:
        touch_cols = [c for t in stream.touches for c in t.row_columns()]
        selected = ", ".join([f"{a}.`{c}` AS `{c}`" for c in dict.fromkeys(touch_cols)] or ["1"])
        from_sql = f"{quote(tables[stream.table].full_name)} AS {a}"
    selected += f", {cursor} AS {CURSOR}, " + ", ".join(
        f"{k} AS {key_column(i)}" for i, k in enumerate(keys)
    )
    where = [f"{cursor} <= @until"]
    if has_since:
        where.append(f"{cursor} >= @since")
    if has_position:
        names = key_param_names(stream)
        where.append(
            f"({cursor} > @after_cursor OR ({cursor} = @after_cursor AND "
            f"{_key_after(keys, names)}))"
        )
    return (
        f"SELECT {selected} FROM {from_sql} WHERE {' AND '.join(where)}"
        f" ORDER BY {cursor}, {', '.join(keys)} LIMIT @limit"
    )


def newest_cursor_query(stream: Stream, tables: Mapping[str, TableRef]) -> str:
    """The newest cursor of a stream up to @until: where reading it in full would have ended."""
    cursor = f"`{stream.cursor}`"
    return (
        f"SELECT MAX({cursor}) AS newest FROM {quote(tables[stream.table].full_name)}"
        f" WHERE {cursor} <= @until"
    )


def is_deleted(target: Target) -> str:
    """The target's deletion test, TRUE only when it is TRUE: NULL (a NULL flag) is alive."""
    return f"COALESCE(({target.deleted_sql}), FALSE)"


def all_rows_query(target: Target, tables: Mapping[str, TableRef]) -> str:
    """Every live row of a target: what a first backfill lands."""
    return (
        f"SELECT {select_list(target, tables)} FROM {resolve(target.from_sql, tables)}"
        f" WHERE NOT {is_deleted(target)}"
    )


def derive_query(
    target: Target,
    tables: Mapping[str, TableRef],
    *,
    null_parent: bool = False,
    cursor: str | None = None,
    floored: Sequence[Stream] = (),
) -> str:
    """Every live row of a target whose parent is in @keys (or, null_parent, is NULL).

    With `cursor` (a base-table cursor column, raw), only rows with it at or after @since:
    compared with a parameter, as a page query's, so a table clustered on it is pruned.
    With `floored` streams, each of their tables is read from @floor on (see floors.py).
    """
    parent = target.column(target.parent).sql
    which = f"{parent} IS NULL" if null_parent else f"{parent} IN UNNEST(@keys)"
    window = f" AND {cursor} >= @since" if cursor else ""
    return _from_floor(f"{all_rows_query(target, tables)} AND {which}{window}", floored, tables)


def _from_floor(text: str, floored: Sequence[Stream], tables: Mapping[str, TableRef]) -> str:
    """The query with each floored table read through a filter on its raw cursor.

    A subquery naming every column of the table whose name the query mentions (a superset of
    those it uses) and the cursor: it bills about what the plain table would, less the blocks
    before @floor where it is clustered. Every mention of the table is bounded, so a floored
    target must read such a table only by its parents' key (sets, windows, GROUP BYs).
    """
    for stream in floored:
        ref = tables[stream.table]
        table = quote(ref.full_name)
        names = [c for c in ref.schema if re.search(rf"\b{re.escape(c)}\b", text)]
        columns = ", ".join(f"`{c}`" for c in dict.fromkeys([*names, stream.cursor]))
        bounded = f"(SELECT {columns} FROM {table} WHERE `{stream.cursor}` >= @floor)"
        text = text.replace(table, bounded)
    return text


NULL_CURSOR = "TIMESTAMP '0001-01-01 00:00:00+00'"  # a NULL cursor's floor: read it all


def floor_query(
    named: Sequence[tuple[Stream, str]], tables: Mapping[str, TableRef], *, keyed: bool = False
) -> str:
    """Per parent (`k`), the earliest and the newest cursor up to @until of the rows naming it.

    `named` pairs each stream with the column of its rows that names the parent; `keyed`,
    only the parents in @keys. A row whose cursor is NULL (no page reads it, no cursor bounds
    it) gives its parent the year-1 floor, which floors.py reads as "no floor".
    """
    union = " UNION ALL ".join(
        f"SELECT CAST({s.alias}.`{column}` AS STRING) AS k, {stream_cursor(s)} AS c"
        f" FROM {quote(tables[s.table].full_name)} AS {s.alias}"
        f" WHERE ({stream_cursor(s)} <= @until OR {stream_cursor(s)} IS NULL)"
        + (f" AND CAST({s.alias}.`{column}` AS STRING) IN UNNEST(@keys)" if keyed else "")
        for s, column in named
    )
    return (
        f"SELECT k, MIN(IFNULL(c, {NULL_CURSOR})) AS floor, MAX(c) AS newest"
        f" FROM ({union}) GROUP BY k"
    )


def stream_cursor(stream: Stream) -> str:
    """A stream's cursor over its alias, raw: what a window compares with @since."""
    return f"{stream.alias}.{stream.cursor}"


def recent_parents_query(target: Target, tables: Mapping[str, TableRef], stream: Stream) -> str:
    """Up to @n random parents with a row of the stream whose cursor is at or after @since.

    The stream's table alone, on its raw cursor: clustered on it, it bills the window's blocks.
    """
    parent = target.column(target.parent).sql
    table = quote(tables[stream.table].full_name)
    return (
        f"SELECT k FROM (SELECT DISTINCT {parent} AS k FROM {table} AS {stream.alias}"
        f" WHERE {stream_cursor(stream)} >= @since) WHERE k IS NOT NULL ORDER BY RAND() LIMIT @n"
    )


def sweep_query(
    target: Target, tables: Mapping[str, TableRef], after: Literal[">=", ">"] | None = None
) -> str:
    """Every live row of a target with a parent, in parent order, up to @sweep_limit rows.

    after is the comparison with @parent that resumes it (">=" or ">"), None from the start.
    Ordered by parent alone: a set's rows come together, in no order among themselves.
    """
    parent = target.column(target.parent).sql
    start = "" if after is None else f" AND {parent} {after} @parent"
    return (
        f"{all_rows_query(target, tables)} AND {parent} IS NOT NULL{start}"
        f" ORDER BY {parent} LIMIT @sweep_limit"
    )


def param_type(bq_type: str) -> str:
    """The query-parameter type for a column of this BigQuery type."""
    return {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}.get(bq_type, bq_type)


def page_params(
    stream: Stream,
    ref: TableRef,
    until: datetime,
    limit: int,
    since: datetime | None,
    after: tuple[datetime | None, tuple[Any, ...]] | None,
) -> list[Any]:
    """The parameters of a page query: its bounds, and the keyset (cursor, key) to read after."""
    params = [scalar("until", "TIMESTAMP", until), scalar("limit", "INT64", limit)]
    if since is not None:
        params.append(scalar("since", "TIMESTAMP", since))
    if after is not None:
        cursor, key = after
        params.append(scalar("after_cursor", "TIMESTAMP", cursor))
        for name, col, value in zip(key_param_names(stream), stream.key, key, strict=True):
            params.append(scalar(name, ref.schema[col], value))
    return params


def scalar(name: str, bq_type: str, value: Any) -> bigquery.ScalarQueryParameter:
    """A typed scalar parameter."""
    return bigquery.ScalarQueryParameter(name, param_type(bq_type), value)


def key_query(target: Target, tables: Mapping[str, TableRef]) -> str:
    """The keys of every live row of a target: only key columns are selected, so it is cheap."""
    columns = [target.column(k).sql or "" for k in target.key]
    keys = ", ".join(f"{sql} AS `{k}`" for sql, k in zip(columns, target.key, strict=True))
    # A LEFT JOIN neither a key nor the deletion test names adds no key: left out, unbilled.
    joins = narrowing.prune(target.from_sql, [*columns, target.deleted_sql])
    return f"SELECT {keys} FROM {resolve(joins, tables)} WHERE NOT {is_deleted(target)}"

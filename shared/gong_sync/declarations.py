"""A source is data: the BigQuery tables it reads, and the Postgres tables it writes.

A *stream* is one BigQuery table read incrementally on its own cursor and watermark. A
*target* is one Postgres table, described by a BigQuery SELECT whose columns are the target's
columns. A stream either *drives* a target (each changed source row is one target row, so the
page query is the target's SELECT itself) or *touches* it (its changed rows name parent keys
whose whole set of target rows is derived again, as when a user's title changes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pyarrow as pa

# A logical table in declared SQL: {call}, {users}.
PLACEHOLDER = re.compile(r"\{(\w+)\}")

PgType = Literal[
    "text",
    "timestamptz",
    "date",
    "bigint",
    "integer",
    "numeric",
    "double",
    "boolean",
    "jsonb",
    "text[]",
]

# Receives the raw BigQuery row (column name -> value), returns values for the columns that
# declare no SQL of their own; raises RowError for a record that cannot be mapped.
Transform = Callable[[Mapping[str, Any]], Mapping[str, Any]]
# The same transform over a page read as Arrow (the table and its JSON columns' names): the
# COPY fields of every column it supplies, and the rows whose values only `Transform` may
# judge (a mask); None leaves the whole page to `Transform`. A clean row's fields must be the
# ones `Transform` gives: `arrow_lines` then writes them without calling it.
ArrowTransform = Callable[
    ["pa.Table", frozenset[str]],
    "tuple[Mapping[str, pa.ChunkedArray], pa.ChunkedArray] | None",
]


# The columns Fivetran and Salesforce use to mark a row deleted.
DELETION_FLAGS = ("_fivetran_deleted", "is_deleted")


def deleted(*flags: str) -> str:
    """SQL that is TRUE when any of these flags is TRUE: a NULL flag means the row is alive.

    Fivetran leaves NULL in a flag column added to a table that already had rows, and
    `NOT NULL` is NULL, which a WHERE or a JOIN treats as FALSE: every flag in every query
    goes through here (a test checks the declarations for bare flags).
    """
    return "(" + " OR ".join(f"COALESCE({flag}, FALSE)" for flag in flags) + ")"


def live(*flags: str) -> str:
    """SQL that is TRUE unless one of these flags is TRUE (NULL is alive)."""
    return f"NOT {deleted(*flags)}"


class RowError(ValueError):
    """A source row that cannot be mapped; the message is the dead-letter reason."""


@dataclass(frozen=True)
class Column:
    """One target column and the BigQuery expression (over the target's aliases) it comes from."""

    name: str
    type: PgType
    sql: str | None = None  # None: the target's transform supplies the value
    compare: bool = True  # False: bookkeeping that alone never counts as a change
    optional: bool = False  # the source column may not exist; then the value is NULL


@dataclass(frozen=True)
class Target:
    """A Postgres table and the BigQuery SELECT that derives its rows."""

    table: str
    key: tuple[str, ...]
    parent: str  # the column naming the root entity (a call id); sets are replaced per parent
    columns: tuple[Column, ...]
    from_sql: str  # "{table}" placeholders are resolved to configured BigQuery tables
    # A BOOL expression: the row is (soft) deleted. The SQL builder reads NULL as alive.
    deleted_sql: str
    metadata_alias: str | None = None  # unmapped columns of this alias land in "metadata"
    transform: Transform | None = None
    arrow_transform: ArrowTransform | None = None  # the transform a page at a time, if any
    inputs: tuple[Column, ...] = ()  # extra BigQuery values the transform reads (not written)
    children: tuple[str, ...] = ()  # tables whose rows share `parent` and follow its deletes
    # What a NUL byte in text or JSON does: reject the row (a dead letter), or strip it.
    nul: Literal["reject", "strip"] = "reject"

    def column(self, name: str) -> Column:
        """Return the column called name."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.table} has no column {name}")

    @property
    def base_table(self) -> str:
        """The logical table every row of the target starts from: the first one in from_sql."""
        found = PLACEHOLDER.search(self.from_sql)
        if found is None:
            raise ValueError(f"target {self.table} reads no {{table}}")
        return found.group(1)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every Postgres column written, metadata last."""
        names = tuple(col.name for col in self.columns)
        return (*names, "metadata") if self.metadata_alias else names


@dataclass(frozen=True)
class Touch:
    """A stream's changed rows name parents of a target whose sets must be derived again."""

    target: str
    column: str | None = None  # a column of the stream's own row holding the parent key
    lookup_sql: str | None = None  # or a SELECT of parent keys `k` given the changed keys @ids
    # The target columns (and same-named inputs) this stream's rows can change; empty: any.
    # Deriving only these reads only what they need: a LEFT JOIN none of them uses is left
    # out, so every LEFT JOIN of the target must match at most one row (a key).
    feeds: tuple[str, ...] = ()
    # Where a row's earlier parents are found, when `column` can change in place (it is not
    # part of the row's key): (a column of the row, the target column holding that value).
    # A speaker s1 moved from call c1 to c2 names c2; the stored speaker s1 names c1.
    # Alone (no column, no lookup), the stored target is where the parents are found: a user
    # feeds exactly the speaker rows derived with its id, read in Postgres, not BigQuery.
    was: tuple[str, str] | None = None
    # Derive the parents it names once per this period (at its UTC boundary), not in the run
    # that notes them: for a touch whose parents span all of time (a user's calls), whose
    # derivation reads back to the oldest of them, so a day's touches share one such read.
    every: timedelta | None = None

    def row_columns(self) -> tuple[str, ...]:
        """The columns of a changed row this touch reads (its page query selects them)."""
        return tuple(c for c in (self.column, self.was[0] if self.was else None) if c)


@dataclass(frozen=True)
class Stream:
    """One BigQuery table read incrementally on its own cursor."""

    table: str  # logical table name; also names the watermark
    alias: str
    key: tuple[str, ...]
    cursor: str = "_fivetran_synced"
    drives: str | None = None
    touches: tuple[Touch, ...] = ()

    def names_parents_of(self, table: str) -> bool:
        """Whether a column of this stream's rows names the parents of that target's sets."""
        return any(touch.target == table and touch.column for touch in self.touches)


@dataclass(frozen=True)
class Source:
    """A unit of sync with its own lock and status: its streams, in the order they run."""

    name: str
    streams: tuple[Stream, ...]
    targets: tuple[Target, ...]
    datasets: Mapping[str, str] = field(default_factory=dict)  # logical table -> dataset role
    # Used instead when a table of `fallback_for` does not exist and this declaration never
    # synced from a table only it reads (same name and targets; BigQueryReader.resolve).
    fallback: Source | None = None
    fallback_for: tuple[str, ...] = ()

    def tables(self) -> list[str]:
        """Every logical table this declaration reads, in first-use order."""
        names: list[str] = [s.table for s in self.streams]
        for target in self.targets:
            names += PLACEHOLDER.findall(target.from_sql)
        for stream in self.streams:
            for touch in stream.touches:
                names += PLACEHOLDER.findall(touch.lookup_sql or "")
        return list(dict.fromkeys(names))

    def read_before(self, read: Iterable[str]) -> list[str]:
        """Of the streams read before (`read`), those over a table only this declaration
        reads, not its fallback: having read one, the source never falls back."""
        fallback = set(self.fallback.tables()) if self.fallback else set()
        own = set(self.tables()) - fallback
        return sorted({s.table for s in self.streams if s.table in own} & set(read))

    def target(self, table: str) -> Target:
        """Return the target writing table."""
        for target in self.targets:
            if target.table == table:
                return target
        raise KeyError(f"source {self.name} has no target {table}")

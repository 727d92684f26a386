"""Each target's Postgres table, as the migrations leave it, is what its declaration says."""

from __future__ import annotations

import pytest

from gong_sync import sources
from gong_sync.declarations import Target
from tests.conftest import Env

# information_schema's name for each declared type.
_PG = {"text": "text", "timestamptz": "timestamp with time zone", "date": "date",
       "bigint": "bigint", "integer": "integer", "numeric": "numeric",
       "double": "double precision", "boolean": "boolean", "jsonb": "jsonb",
       "text[]": "ARRAY"}  # fmt: skip
# Columns of the schema (DESIGN's data model) that no Fivetran table we read fills yet: they
# stay NULL. Gong's call_topic table could fill `topics`.
UNFILLED = {"transcripts": {"sentiment", "topics"}}
TARGETS = [(s.name, t) for s in sources.SOURCES.values() for t in s.targets]


@pytest.mark.parametrize(("source", "target"), TARGETS, ids=[t.table for _, t in TARGETS])
def test_the_table_is_its_declaration(env: Env, source: str, target: Target) -> None:
    columns = dict(env.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s", target.table,
    ))  # fmt: skip
    assert columns, f"{target.table}: no such table"
    declared = {c.name: _PG[c.type] for c in target.columns}
    # A text column the mapping bounds (the 500-character snippet) may be varchar(n).
    found = {name: "text" if (columns.get(name), kind) == ("character varying", "text")
             else columns.get(name) for name, kind in declared.items()}  # fmt: skip
    assert found == declared
    written = set(declared) | ({"metadata"} if target.metadata_alias else set())
    assert set(columns) - written == UNFILLED.get(target.table, set())
    primary = [r[0] for r in env.query(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = CAST(%s AS regclass) AND i.indisprimary"
        " ORDER BY array_position(i.indkey, a.attnum)", target.table,
    )]  # fmt: skip
    assert tuple(primary) == target.key

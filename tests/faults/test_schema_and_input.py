"""Faults from the source side: schema changes between runs, and hostile or huge values."""

from __future__ import annotations

import pytest
from google.cloud import bigquery

from gong_sync.bigquery_sql import SchemaMismatch
from tests.conftest import Env
from tests.factories import at, call, dml, insert

INJECTION = "x'); DROP TABLE calls; -- \" ` \\ ; SELECT pg_sleep(10) --"


def _alter(env: Env, table: str, ddl: str, schema: list[bigquery.SchemaField]) -> None:
    """Change a table's schema in the emulator: its DDL and its API metadata both need it."""
    full = f"{env.bq.project}.{env.datasets['gong']}.{table}"
    env.bq.query(ddl.format(table=f"`{full}`")).result()
    ref = env.bq.get_table(full)
    ref.schema = schema
    env.bq.update_table(ref, ["schema"])


def test_a_column_added_in_bigquery_lands_in_metadata(env: Env) -> None:
    insert(env.bq, env.datasets, "call", [call("c1", at(0))])
    env.sync()
    full = f"{env.bq.project}.{env.datasets['gong']}.call"
    schema = [*env.bq.get_table(full).schema, bigquery.SchemaField("deal_size_band", "STRING")]
    _alter(env, "call", "ALTER TABLE {table} ADD COLUMN deal_size_band STRING", schema)
    dml(env.bq, f"UPDATE `{full}` SET deal_size_band = 'L', _fivetran_synced = @t WHERE id = 'c1'",
        t=at(7200))  # fmt: skip
    stats = env.sync()
    assert stats.rows_upserted == 1
    (metadata,) = env.query("SELECT metadata FROM calls WHERE gong_call_id = 'c1'")[0]
    assert metadata["deal_size_band"] == "L"
    assert metadata["workspace_id"] == "ws1"


def test_a_dropped_mapped_column_fails_clearly_before_any_write(env: Env) -> None:
    insert(env.bq, env.datasets, "call", [call("c1", at(0))])
    env.sync()
    full = f"{env.bq.project}.{env.datasets['gong']}.call"
    schema = [f for f in env.bq.get_table(full).schema if f.name != "title"]
    _alter(env, "call", "ALTER TABLE {table} DROP COLUMN title", schema)
    insert(env.bq, env.datasets, "call", [
        {k: v for k, v in call("c2", at(7200)).items() if k != "title"}
    ])  # fmt: skip
    with pytest.raises(SchemaMismatch, match=r"column 'title' used by target calls is missing"):
        env.sync()
    assert env.query("SELECT gong_call_id FROM calls") == [("c1",)]  # no partial write
    assert env.query("SELECT last_status, error_details->>'type' FROM sync_status") == [
        ("failed", "SchemaMismatch")
    ]


def test_injection_shaped_text_lands_verbatim_everywhere(env: Env) -> None:
    texts = {
        k: f"{k} {INJECTION}"
        for k in ("title", "url", "direction", "scope", "media", "purpose", "system", "language")
    }
    insert(env.bq, env.datasets, "call", [call(INJECTION, at(0), **texts)])
    env.sync()
    row = env.query(
        "SELECT gong_call_id, title, url, direction, scope, media, purpose, system, language"
        " FROM calls"
    )
    assert row == [(INJECTION, *texts.values())]
    assert env.query("SELECT count(*) FROM pg_tables WHERE tablename = 'calls'") == [(1,)]


def test_a_10_mb_email_body_lands_with_its_snippet(env: Env) -> None:
    body = ("Ten megabytes of pasted contract text. " * 270_000)[: 10 * 1024 * 1024]
    insert(env.bq, env.datasets, "email", [
        {"id": "big", "subject": "Contract", "sent_at": at(0), "body": body, "thread_id": "t",
         "direction": "Inbound", "headers": {}, "context": None, "_fivetran_synced": at(0),
         "_fivetran_deleted": False},
    ])  # fmt: skip
    stats = env.sync("emails")
    assert stats.rows_upserted == 1
    assert len(body) == 10 * 1024 * 1024
    sizes = "SELECT length(body_snippet), length(metadata->>'body') FROM emails"
    assert env.query(sizes) == [(500, len(body))]


def test_lost_state_recovers_with_a_full_read(env: Env) -> None:
    """Deleted status and watermarks mean a full read; a future watermark is caught, not trusted."""
    insert(env.bq, env.datasets, "call", [call(f"c{i}", at(i)) for i in range(5)])
    env.sync()
    env.execute("DELETE FROM sync_status")
    env.execute("DELETE FROM sync_watermarks")
    again = env.sync()
    assert again.rows_read >= 5
    assert again.rows_upserted == 0  # nothing duplicated, nothing changed
    # Corrupt: a watermark a year ahead would make every later run read nothing.
    env.execute("UPDATE sync_watermarks SET watermark = now() + interval '1 year'")
    insert(env.bq, env.datasets, "call", [call("late", at(10))])
    fixed = env.sync()
    assert fixed.rows_upserted == 1
    assert len(env.query("SELECT 1 FROM calls")) == 6

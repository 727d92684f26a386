"""Faults from the source side: schema changes between runs, huge values, and lost run state.

Hostile values (null keys, NUL, surrogates, injection-shaped text, ...) are in test_bad_input.
"""

from __future__ import annotations

import logging

import pytest
from google.cloud import bigquery

from gong_sync.bigquery_sql import SchemaMismatch
from tests.conftest import Env
from tests.factories import at, call, dml, email, insert, transcript
from tests.faults.matrix import Scenario, model


def _alter(env: Env, table: str, ddl: str, schema: list[bigquery.SchemaField]) -> None:
    """Change a table's schema in the emulator: its DDL and its API metadata both need it."""
    full = f"{env.bq.project}.{env.datasets['gong']}.{table}"
    env.bq.query(ddl.format(table=f"`{full}`")).result()
    ref = env.bq.get_table(full)
    ref.schema = schema
    env.bq.update_table(ref, ["schema"])


def test_a_column_added_in_bigquery_lands_in_metadata(env: Env, matrix: Scenario) -> None:
    row = call("c1", at(0))
    insert(env.bq, env.datasets, "call", [row])
    env.sync()
    full = f"{env.bq.project}.{env.datasets['gong']}.call"
    schema = [*env.bq.get_table(full).schema, bigquery.SchemaField("deal_size_band", "STRING")]
    _alter(env, "call", "ALTER TABLE {table} ADD COLUMN deal_size_band STRING", schema)
    dml(env.bq, f"UPDATE `{full}` SET deal_size_band = 'L', _fivetran_synced = @t WHERE id = 'c1'",
        t=at(7200))  # fmt: skip
    stats = env.sync()
    # The reference puts every unmapped column in metadata: the new one beside workspace_id.
    matrix.exact(env, model(call=[{**row, "deal_size_band": "L"}]), "calls")
    assert stats.rows_upserted == 1
    (metadata,) = env.query("SELECT metadata FROM calls WHERE gong_call_id = 'c1'")[0]
    assert metadata["deal_size_band"] == "L"
    assert metadata["workspace_id"] == "ws1"


def test_a_dropped_mapped_column_fails_clearly_before_any_write(env: Env, matrix: Scenario) -> None:
    first = call("c1", at(0))
    insert(env.bq, env.datasets, "call", [first])
    env.sync()
    full = f"{env.bq.project}.{env.datasets['gong']}.call"
    schema = [f for f in env.bq.get_table(full).schema if f.name != "title"]
    _alter(env, "call", "ALTER TABLE {table} DROP COLUMN title", schema)
    insert(env.bq, env.datasets, "call", [
        {k: v for k, v in call("c2", at(7200)).items() if k != "title"}
    ])  # fmt: skip
    with pytest.raises(SchemaMismatch, match=r"column 'title' used by target calls is missing"):
        env.sync()
    matrix.exact(env, model(call=[first]), "calls")  # no partial write: c2 is not there
    assert env.query("SELECT last_status, error_details->>'type' FROM sync_status") == [
        ("failed", "SchemaMismatch")
    ]


def test_a_10_mb_email_body_lands_with_its_snippet(env: Env, matrix: Scenario) -> None:
    body = ("Ten megabytes of pasted contract text. " * 270_000)[: 10 * 1024 * 1024]
    row = email("big", at(0), subject="Contract", body=body, thread_id="t", headers={})
    insert(env.bq, env.datasets, "email", [row])
    stats = env.sync("emails")
    matrix.exact(env, model(email=[row]), "emails")
    assert stats.rows_upserted == 1
    assert len(body) == 10 * 1024 * 1024
    sizes = "SELECT length(body_snippet), length(metadata->>'body') FROM emails"
    assert env.query(sizes) == [(500, len(body))]


def _calls_with_monologues(env: Env, n: int) -> dict[str, list[dict[str, object]]]:
    calls = [call(f"c{i}", at(i)) for i in range(n)]
    monologues = [transcript(f"c{i}", 0, at(i)) for i in range(n)]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", monologues)
    return {"call": calls, "transcript": monologues}


def test_lost_state_recovers_with_a_full_read(
    env: Env, matrix: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleted status and watermarks mean a full read; a future watermark is caught, not trusted."""
    data = _calls_with_monologues(env, 5)
    assert env.sync().rows_read == 10
    matrix.exact(env, model(**data), "calls", "transcripts")

    env.execute("DELETE FROM sync_status")
    env.execute("DELETE FROM sync_watermarks")
    again = env.sync()
    assert again.rows_read == 10  # no watermark: every stream read from its start
    assert again.rows_upserted == 0  # nothing duplicated, nothing changed
    matrix.exact(env, model(**data), "calls", "transcripts")
    assert env.query("SELECT last_status, rows_read FROM sync_status") == [("success", 10)]

    # Corrupt: sync_status is only ever written, so garbage in it misleads no run; a watermark a
    # year ahead would make every later run read nothing, so it must be caught.
    env.execute(
        "UPDATE sync_status SET watermark = 'infinity', last_status = 'garbage', rows_read = -1,"
        " error_details = '\"garbage\"'"
    )
    env.execute("UPDATE sync_watermarks SET watermark = now() + interval '1 year'")
    late = call("late", at(10))
    insert(env.bq, env.datasets, "call", [late])
    with caplog.at_level(logging.ERROR, logger="gong_sync.engine"):
        fixed = env.sync()
    future = [r.getMessage() for r in caplog.records if "is in the future" in r.getMessage()]
    assert {m.split(" is in")[0] for m in future} == {
        "watermark of calls.call",
        "watermark of calls.transcript",
    }
    assert fixed.rows_read == 11  # read from scratch
    assert fixed.rows_upserted == 1  # only the late call is new
    data["call"].append(late)
    matrix.exact(env, model(**data), "calls", "transcripts")
    assert env.query("SELECT max(watermark) <= now() FROM sync_watermarks") == [(True,)]
    assert env.query("SELECT last_status, rows_read, watermark <= now() FROM sync_status") == [
        ("success", 11, True)
    ]


@pytest.mark.parametrize(
    ("watermark", "resume_after"),
    [
        ("infinity", None),
        ("-infinity", None),
        (None, '"garbage"'),
        (None, '{"cursor": "yesterday", "key": 5}'),
    ],
    ids=["infinite-watermark", "minus-infinite-watermark", "resume-not-an-object",
         "resume-cursor-not-a-time"],
)  # fmt: skip
def test_a_garbage_watermark_is_detected_and_read_from_scratch(
    env: Env,
    matrix: Scenario,
    caplog: pytest.LogCaptureFixture,
    watermark: str | None,
    resume_after: str | None,
) -> None:
    """The schema admits these (timestamptz infinities, any JSON); none may stall the source."""
    data = _calls_with_monologues(env, 3)
    env.sync()
    env.execute(
        "UPDATE sync_watermarks SET watermark = COALESCE(CAST(%s AS timestamptz), watermark),"
        " resume_after = CAST(%s AS jsonb)",
        watermark,
        resume_after,
    )
    late = call("late", at(10))
    insert(env.bq, env.datasets, "call", [late])
    with caplog.at_level(logging.ERROR):
        fixed = env.sync()
    assert fixed.status == "success"
    assert any(r.levelno == logging.ERROR for r in caplog.records)  # detected, and said so
    data["call"].append(late)
    matrix.exact(env, model(**data), "calls", "transcripts")

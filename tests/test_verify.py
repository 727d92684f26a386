"""Reconciliation finds what the cursor cannot see, and --fix repairs it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from gong_sync import sources, state, verify
from gong_sync.bigquery_reader import BigQueryReader
from tests.conftest import Env
from tests.factories import at, call, dml, insert, speaker, transcript
from tests.faults.bigquery_billing import BigQueryBilling
from tests.faults.test_bigquery_cost import _through

OLD, NEW = at(0), at(7200)  # OLD rows fall outside the 1 h lookback once NEW has synced


def _calls_report(out: str) -> dict[str, Any]:
    doc = json.loads(out)
    (calls,) = [s for s in doc["sources"] if s["source"] == "calls"]
    return {t["target"]: t for t in calls["targets"]}


def _seed(env: Env) -> None:
    insert(env.bq, env.datasets, "call", [call(f"c{i}", OLD) for i in range(1, 6)])
    insert(env.bq, env.datasets, "call", [call("c9", NEW, title="bad\x00")])
    insert(env.bq, env.datasets, "transcript", [transcript(f"c{i}", 0, OLD) for i in range(1, 6)])
    insert(env.bq, env.datasets, "call_context_integration", [
        {"call_id": "c1", "object_type": "Opportunity", "object_id": "006A", "name": "Deal",
         "value": "Won", "_fivetran_synced": OLD, "_fivetran_deleted": False},
        {"call_id": "c1", "object_type": "Account", "object_id": "001A", "name": "Acme",
         "value": "Customer", "_fivetran_synced": OLD, "_fivetran_deleted": False},
    ])  # fmt: skip
    # The newest row of every stream, so the old rows are out of the lookback afterwards.
    insert(env.bq, env.datasets, "call", [call("c6", NEW)])
    insert(env.bq, env.datasets, "transcript", [transcript("c6", 0, NEW)])
    insert(env.bq, env.datasets, "call_context_integration", [
        {"call_id": "c6", "object_type": "Opportunity", "object_id": "006B", "name": "Deal",
         "value": "Open", "_fivetran_synced": NEW, "_fivetran_deleted": False},
    ])  # fmt: skip
    assert env.sync().status == "success"


def test_verify_is_clean_after_a_sync_and_ignores_dead_letters(env: Env) -> None:
    _seed(env)
    result = env.cli("verify", "--json", "--source", "calls")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    report = _calls_report(result.stdout)
    assert report["calls"]["bigquery_rows"] == 7
    assert report["calls"]["postgres_rows"] == 6
    assert report["calls"]["rejected"] == 1  # c9, the NUL title: a dead letter, not drift
    assert report["calls"]["values_checked"] == 6
    assert report["call_opportunities"]["postgres_rows"] == 2


def test_verify_finds_every_kind_of_drift_and_fix_repairs_it(env: Env) -> None:
    _seed(env)
    g, p = env.datasets["gong"], env.bq.project
    # Deleted in BigQuery without _fivetran_synced moving: invisible to the cursor.
    dml(env.bq, f"DELETE FROM `{p}.{g}.call` WHERE id = 'c2'")
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = TRUE WHERE id = 'c3'")
    dml(env.bq, f"DELETE FROM `{p}.{g}.call_context_integration` WHERE object_id = '006A'")
    # Changed by hand in Postgres.
    assert env.execute("DELETE FROM calls WHERE gong_call_id = 'c4'") == 1
    assert env.execute("UPDATE transcripts SET text = 'edited' WHERE gong_call_id = 'c5'") == 1
    assert env.sync().status == "success"  # the incremental sync sees none of it

    before = env.cli("verify", "--json", "--source", "calls")
    assert before.returncode == 1, before.stderr[-2000:]
    report = _calls_report(before.stdout)
    assert report["calls"]["samples"] == {"missing": [["c4"]], "extra": [["c2"], ["c3"]]}
    # The monologues of c2 (gone from BigQuery) and c3 (soft-deleted) are orphans: their
    # call is not live in BigQuery, and nothing else would ever delete them.
    assert report["transcripts"]["samples"] == {
        "changed": [["c5", "0"]],
        "orphans": [["c2", "0"], ["c3", "0"]],
    }
    assert (report["transcripts"]["extra"], report["transcripts"]["orphans"]) == (0, 2)
    assert report["call_opportunities"]["samples"] == {"extra": [["c1", "006A"]]}

    fixed = env.cli("verify", "--fix", "--source", "calls")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr[-2000:]
    assert "after --fix" in fixed.stdout
    assert env.query("SELECT gong_call_id FROM calls ORDER BY 1") == [
        ("c1",),
        ("c4",),
        ("c5",),
        ("c6",),
    ]
    assert env.query("SELECT text FROM transcripts WHERE gong_call_id = 'c5'") == [("Hi. Ok",)]
    assert env.query("SELECT gong_call_id FROM transcripts ORDER BY 1") == [
        ("c1",),
        ("c4",),
        ("c5",),
        ("c6",),
    ]
    assert env.query("SELECT * FROM call_opportunities") == [("c6", "006B")]
    again = env.cli("verify", "--json", "--source", "calls")
    assert again.returncode == 0, again.stdout


def test_a_link_removed_in_the_source_is_removed_here(env: Env) -> None:
    _seed(env)
    g, p = env.datasets["gong"], env.bq.project
    dml(
        env.bq,
        f"UPDATE `{p}.{g}.call_context_integration` SET _fivetran_deleted = TRUE,"
        " _fivetran_synced = @t WHERE object_id = '006B'",
        t=at(9000),
    )
    env.sync()
    assert env.query("SELECT * FROM call_opportunities") == [("c1", "006A")]


def test_orphans_alone_fail_verify_and_fix_removes_every_child(env: Env) -> None:
    _seed(env)
    # Children of a call BigQuery never had: stored (a child may land first), then orphans.
    insert(env.bq, env.datasets, "transcript", [transcript("c7", 0, NEW)])
    insert(env.bq, env.datasets, "call_speaker", [speaker("s7", "c7", NEW)])
    insert(env.bq, env.datasets, "call_context_integration", [
        {"call_id": "c7", "object_type": "Opportunity", "object_id": "006C", "name": "Deal",
         "value": "Open", "_fivetran_synced": NEW, "_fivetran_deleted": False},
    ])  # fmt: skip
    assert env.sync().status == "success"
    children = ("transcripts", "call_speakers", "call_opportunities")
    count = " UNION ALL ".join(
        f"SELECT count(*) FROM {t} WHERE gong_call_id = 'c7'" for t in children
    )
    assert env.query(count) == [(1,), (1,), (1,)]
    before = env.cli("verify", "--json", "--source", "calls")
    assert before.returncode == 1, before.stdout
    report = _calls_report(before.stdout)
    for table in children:
        assert (report[table]["orphans"], report[table]["missing"], report[table]["extra"]) == (
            1, 0, 0,
        ), table  # fmt: skip
    assert env.cli("verify", "--fix", "--source", "calls").returncode == 0
    assert env.query(count) == [(0,), (0,), (0,)]


def test_a_verify_staged_over_many_invocations_finds_the_same_drift(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two keys a page and no time left after each: every call stages one page and returns."""
    _seed(env)
    assert env.execute("DELETE FROM calls WHERE gong_call_id = 'c4'") == 1
    dml(env.bq, f"DELETE FROM `{env.bq.project}.{env.datasets['gong']}.call` WHERE id = 'c2'")
    monkeypatch.setattr(verify, "KEY_PAGE", 2)
    reader = BigQueryReader(env.bq, env.settings.bigquery)
    calls, report = 0, None
    while report is None:
        calls += 1
        assert calls < 50, "the verify never finished"
        conn = env.connect()
        try:
            report = verify.verify_within(
                sources.get("calls"), env.settings, reader, conn, 0, lambda: True
            )
            waiting = env.query("SELECT count(*) FROM verify_progress")
        finally:
            conn.close()
        assert waiting == [(0,)] if report else [(1,)]
    assert calls >= 4  # 7 call keys two at a time, and the other targets after them
    by_target = {t.target: t for t in report.targets}
    assert (by_target["calls"].missing, by_target["calls"].extra) == ([("c4",)], [("c2",)])
    assert by_target["transcripts"].orphans == [("c2", "0")]
    assert by_target["calls"].rejected == 1  # c9's NUL title: a dead letter, not drift
    assert env.query("SELECT count(*) FROM verify_keys") == [(0,)]


def test_a_second_verify_of_a_source_at_once_is_refused(env: Env) -> None:
    """Both would stage into (and clear) the same keys."""
    _seed(env)
    holder = env.connect()
    try:
        assert state.try_lock_verify(holder, "calls")
        with pytest.raises(verify.Busy, match="a verify of calls is running"):
            env.verify("calls")
    finally:
        holder.close()
    assert env.verify("calls").clean


def test_a_result_that_does_not_continue_where_staging_stopped_starts_the_verify_over(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pages are read by row index: another row there means another result, never mixed in."""
    _seed(env)
    assert env.execute("DELETE FROM calls WHERE gong_call_id = 'c4'") == 1
    monkeypatch.setattr(verify, "KEY_PAGE", 2)
    reader = BigQueryReader(env.bq, env.settings.bigquery)

    def call() -> verify.SourceReport | None:
        conn = env.connect()
        try:
            return verify.verify_within(
                sources.get("calls"), env.settings, reader, conn, 0, lambda: True
            )
        finally:
            conn.close()

    assert call() is None
    wrong = '["not the row staged last"]'
    env.execute(
        "UPDATE verify_progress SET jobs = jsonb_set(jobs, '{calls,last}', to_jsonb(%s::text))",
        wrong,
    )
    report, calls = None, 1
    while report is None:
        calls += 1
        assert calls < 60, "the verify never finished"
        report = call()
    assert "does not continue there; starting over" in caplog.text
    by_target = {t.target: t for t in report.targets}
    assert (by_target["calls"].missing, by_target["calls"].extra) == ([("c4",)], [])


def test_a_verify_lists_a_bounded_number_of_keys_and_repairs_the_rest_later(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verify during a backfill can find tens of millions of keys: it lists a bounded number
    of each kind, counts the rest, repairs what it listed, and a later verify the rest."""
    _seed(env)
    assert env.execute("DELETE FROM calls WHERE gong_call_id IN ('c1', 'c2', 'c3', 'c4')") == 4
    dml(env.bq, f"DELETE FROM `{env.bq.project}.{env.datasets['gong']}.call` WHERE id = 'c5'")
    monkeypatch.setattr(verify, "DRIFT_LISTED", 2)
    calls = {t.target: t for t in env.verify("calls", sample=0).targets}["calls"]
    assert calls.missing == [("c1",), ("c2",)]  # in key order
    assert (calls.count("missing"), calls.unlisted) == (4, {"missing": 2})
    assert calls.extra == [("c5",)]  # within the bound: listed, nothing unlisted
    assert calls.summary()["missing"] == 4
    after = {t.target: t for t in env.reconcile("calls", sample=0).targets}["calls"]
    assert (after.missing, after.unlisted, after.extra) == ([("c3",), ("c4",)], {}, [])
    final = env.reconcile("calls", sample=0)
    assert final.clean, [t.summary() for t in final.targets]
    assert env.query("SELECT count(*) FROM calls WHERE gong_call_id IN ('c1','c2','c3','c4')") == [
        (4,)
    ]


@pytest.mark.parametrize("days", [8, 0])
def test_a_value_sample_reads_only_the_last_days_of_a_table(env: Env, days: int) -> None:
    """The sample is drawn in BigQuery from, and derives, the rows synced in the driving
    stream's last days: a filter on the raw cursor that a clustered table prunes. A change
    the sync missed is recent there, so it is drawn. 0 samples all of time."""
    week_later = at(10 * 86_400)
    calls = [call("c1", OLD), call("c2", week_later), call("c3", OLD)]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", [transcript("c1", 0, OLD),
                                                transcript("c2", 0, week_later),
                                                transcript("c3", 0, OLD)])  # fmt: skip
    assert env.sync().status == "success"
    assert env.execute("UPDATE transcripts SET text = 'edited' WHERE gong_call_id != 'c3'") == 2
    # c3 changes in BigQuery after the sync: stored, it is as old as c1.
    table = f"{env.bq.project}.{env.datasets['gong']}.transcript"
    dml(env.bq, f"UPDATE `{table}` SET speaker_id = 'sX', _fivetran_synced = @t"
        " WHERE call_id = 'c3'", t=at(10 * 86_400 + 60))  # fmt: skip
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, {}) as billing:
        billed = _through(env, billing)
        settings = dataclasses.replace(billed.settings, verify_sample_days=days)
        reader = BigQueryReader(billed.bq, settings.bigquery)
        conn = env.connect()
        try:
            report = verify.verify_source(sources.get("calls"), settings, reader, conn, 500)
        finally:
            conn.close()
    changed = {t.target: t.changed for t in report.targets}
    recent = [("c2", "0"), ("c3", "0")]
    assert changed["transcripts"] == (recent if days else [("c1", "0"), *recent])
    (sampled,) = [j.sql for j in billing.jobs if "@keys" in j.sql and ".transcript`" in j.sql]
    assert ("t._fivetran_synced >= @since" in sampled) == bool(days)
    draws = [j.sql for j in billing.jobs if "RAND()" in j.sql and ".transcript`" in j.sql]
    assert len(draws) == (1 if days else 0)

"""Exactness on real data: NULL deletion flags, orphans, NULL parent ids, deleted opportunities.

Each test here failed on the engine before these rules were stated once in the declarations.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from gong_sync import bigquery_sql, sources, verify
from gong_sync.bigquery_reader import BigQueryReader, FallbackRefused
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.declarations import DELETION_FLAGS, Source
from tests.conftest import Env
from tests.factories import at, call, dml, email, insert, opportunity, speaker, transcript

OLD, NEW = at(0), at(7200)  # OLD rows are outside the 1 h lookback once NEW has synced


def _sql_texts(source: Source) -> list[str]:
    """Every SQL text a source (and its fallback) declares."""
    texts: list[str] = []
    for target in source.targets:
        texts += [c.sql or "" for c in (*target.columns, *target.inputs)]
        texts += [target.from_sql, target.deleted_sql]
    for stream in source.streams:
        texts += [t.lookup_sql or "" for t in stream.touches]
    return texts + (_sql_texts(source.fallback) if source.fallback else [])


def test_every_deletion_flag_in_every_declaration_reads_null_as_alive() -> None:
    flag = "|".join(DELETION_FLAGS)
    for source in sources.SOURCES.values():
        for text in _sql_texts(source):
            # The one rule: a flag is only ever read as COALESCE(flag, FALSE).
            bare = re.sub(rf"COALESCE\((?:\w+\.)?(?:{flag}), FALSE\)", "", text)
            assert not re.search(rf"\b({flag})\b", bare), f"{source.name}: bare flag in {text}"
        for target in source.targets:
            built = bigquery_sql.is_deleted(target)
            assert built == f"COALESCE(({target.deleted_sql}), FALSE)"


def _with_fallbacks(source: Source) -> list[Source]:
    return [source, *(_with_fallbacks(source.fallback) if source.fallback else [])]


def test_every_touch_whose_parent_can_change_in_place_says_where_it_was() -> None:
    """A row whose parent column is not part of its key can move to another parent as an
    update: its touch must find the parent it left (Touch.was), or that set keeps it."""
    for source in (s for top in sources.SOURCES.values() for s in _with_fallbacks(top)):
        for stream in source.streams:
            for touch in (t for t in stream.touches if t.column):
                if touch.column in stream.key:
                    continue
                assert touch.was, f"{source.name}: {stream.table} -> {touch.target} has no was"
                target = source.target(touch.target)
                assert touch.was[1] in {c.name for c in target.columns}, touch.was


def test_a_fallback_stands_in_only_for_tables_its_own_declaration_does_not_read() -> None:
    """A fallback is chosen when a table of `fallback_for` is missing and the source never
    synced from a table only it reads (BigQueryReader.resolve): both must say which."""
    with_fallback = [s for s in sources.SOURCES.values() if s.fallback is not None]
    assert {s.name for s in with_fallback} == {"calls", "opportunities"}
    for source in with_fallback:
        assert source.fallback is not None
        own = set(source.tables()) - set(source.fallback.tables())
        assert source.fallback_for, source.name
        assert set(source.fallback_for) <= own, source.name
        assert any(s.table in own for s in source.streams), source.name  # "synced" is seen


def test_a_touch_derived_once_a_period_changes_no_key_and_drives_nothing() -> None:
    """Touch.every defers a touch's parents: sound only where waiting changes values alone
    (verify leaves waiting parents out of its value sample, not its keys), and where no
    driving stream's returning parents share its notes (they must be derived at once)."""
    deferred = [
        (source, stream, touch)
        for source in (s for top in sources.SOURCES.values() for s in _with_fallbacks(top))
        for stream in source.streams
        for touch in stream.touches
        if touch.every
    ]
    assert deferred  # the users' touch of call_speakers
    for source, stream, touch in deferred:
        assert stream.drives is None, stream.table
        assert touch.column is None, stream.table  # its parents are found by `was` alone
        assert touch.lookup_sql is None, stream.table
        assert touch.was is not None
        target = source.target(touch.target)
        assert touch.was[1] not in target.key, (stream.table, touch.was)


def _context(cid: str | None, oid: str | None, synced: Any, **over: Any) -> dict[str, Any]:
    row = {"call_id": cid, "object_type": "Opportunity", "object_id": oid, "name": "Deal",
           "value": "Open", "_fivetran_synced": synced, "_fivetran_deleted": False}  # fmt: skip
    return {**row, **over}


def _person(table: str, key: str, eid: str, address: str, synced: Any, **over: Any) -> Any:
    row = {key: eid, "email_address": address, "name": "N", "_fivetran_synced": synced,
           "_fivetran_deleted": None}  # fmt: skip
    if table == "email_recipient":
        row["type"] = "to"
    return {**row, **over}


def _land_null_flags(env: Env) -> None:
    """A NULL flag on every table and join, then the newest row of each stream."""
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD, _fivetran_deleted=None), call("c9", NEW)])
    insert(b, d, "call_speaker", [speaker("s1", "c1", OLD, _fivetran_deleted=None,
                                          user_id="u1")])  # fmt: skip
    insert(b, d, "users", [{"id": "u1", "email_address": "U@x.example", "first_name": "Uma",
                            "last_name": "Ng", "title": "AE", "manager_id": None,
                            "active": True, "_fivetran_synced": OLD,
                            "_fivetran_deleted": None}])  # fmt: skip
    insert(b, d, "transcript", [transcript("c1", 0, OLD, _fivetran_deleted=None),
                                transcript("c9", 0, NEW)])  # fmt: skip
    insert(b, d, "call_context_integration", [_context("c1", "006A", OLD, _fivetran_deleted=None),
                                              _context("c9", "006A", NEW)])  # fmt: skip
    insert(b, d, "email", [email("e1", OLD, _fivetran_deleted=None), email("e9", NEW)])
    insert(b, d, "email_sender", [_person("email_sender", "email_id", "e1", "S@x.example", OLD)])
    insert(b, d, "email_recipient", [
        _person("email_recipient", "email_id", "e1", "R@x.example", OLD)
    ])  # fmt: skip
    insert(b, d, "account", [{"id": "001A", "name": "Acme", "is_deleted": None,
                              "_fivetran_synced": OLD, "_fivetran_deleted": None}])  # fmt: skip
    insert(b, d, "user", [{"id": "005A", "name": "Ann", "email": "Ann@x.example",
                           "_fivetran_synced": OLD, "_fivetran_deleted": None}])  # fmt: skip
    insert(b, d, "opportunity", [
        opportunity("006A", OLD, is_deleted=None, _fivetran_deleted=None),
        opportunity("006Z", NEW),
    ])  # fmt: skip


STORED = {
    "calls": "SELECT gong_call_id FROM calls ORDER BY 1",
    "call_speakers": "SELECT gong_call_id, name, email FROM call_speakers ORDER BY 1",
    "transcripts": "SELECT gong_call_id FROM transcripts ORDER BY 1",
    "call_opportunities": "SELECT gong_call_id, gong_opportunity_id FROM call_opportunities"
    " ORDER BY 1",
    "emails": "SELECT gong_email_id, sender_email, recipients FROM emails ORDER BY 1",
    "opportunities": "SELECT gong_opportunity_id, account_name, owner_email FROM opportunities"
    " ORDER BY 1",
}
WANT = {
    "calls": [("c1",), ("c9",)],
    "call_speakers": [("c1", "Uma Ng", "u@x.example")],
    "transcripts": [("c1",), ("c9",)],
    "call_opportunities": [("c1", "006A"), ("c9", "006A")],
    "emails": [("e1", "s@x.example", ["r@x.example"]), ("e9", None, [])],
    "opportunities": [("006A", "Acme", "ann@x.example"), ("006Z", "Acme", "ann@x.example")],
}


def _sync_all(env: Env) -> None:
    for name in sources.SOURCES:
        assert env.sync(name).status == "success", name


def _stored(env: Env) -> dict[str, list[tuple[Any, ...]]]:
    return {table: env.query(text) for table, text in STORED.items()}


def test_null_flags_survive_runs_reimports_verify_and_fix(env: Env) -> None:
    _land_null_flags(env)
    _sync_all(env)
    assert _stored(env) == WANT
    # Fivetran re-imports every related table: each re-derives the rows that use it.
    p, g, sf = env.bq.project, env.datasets["gong"], env.datasets["salesforce"]
    for dataset, table in [(g, "call_speaker"), (g, "users"), (g, "call_context_integration"),
                           (g, "email_sender"), (g, "email_recipient"), (sf, "account"),
                           (sf, "user"), (sf, "opportunity")]:  # fmt: skip
        dml(env.bq, f"UPDATE `{p}.{dataset}.{table}` SET _fivetran_synced = @t WHERE TRUE",
            t=at(9000))  # fmt: skip
    _sync_all(env)
    assert _stored(env) == WANT
    checked = env.cli("verify", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    fixed = env.cli("verify", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr[-2000:]
    assert _stored(env) == WANT


def _letters(env: Env) -> set[tuple[str, tuple[Any, ...], str]]:
    rows = env.query("SELECT target, record_key, reason FROM dead_letters")
    return {(t, tuple(json.loads(k)), r) for t, k, r in rows}


def test_a_live_row_with_a_null_parent_id_is_a_dead_letter(env: Env) -> None:
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD)])
    insert(b, d, "call_speaker", [
        speaker("s1", None, OLD), speaker("s2", None, OLD, _fivetran_deleted=True),
        speaker("s3", "", OLD), speaker("s4", "c1", OLD),
    ])  # fmt: skip
    insert(b, d, "call_context_integration", [
        _context(None, "006A", OLD, _fivetran_deleted=None),
        _context(None, "001A", OLD, object_type="Account"),  # not a link: nothing to store
        _context("c1", None, OLD),
    ])  # fmt: skip
    assert env.sync().status == "success"
    assert _letters(env) == {
        ("call_opportunities", (None, "006A"), "gong_call_id: key is null"),
        ("call_opportunities", ("c1", None), "gong_opportunity_id: key is null"),
        ("call_speakers", ("", "s3"), "gong_call_id: key is empty"),
        ("call_speakers", (None, "s1"), "gong_call_id: key is null"),
    }
    assert env.query("SELECT speaker_id FROM call_speakers") == [("s4",)]
    stats = env.sync()  # the lookback reads them again: the ledger counts, nothing is new
    assert (stats.rows_failed, len(_letters(env))) == (4, 4)


def test_links_to_an_opportunity_deleted_in_salesforce_go_and_come_back(env: Env) -> None:
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD)])
    insert(b, d, "call_context_integration", [
        _context("c1", "006A", OLD), _context("c1", "006B", OLD), _context("c1", "006NEW", OLD),
    ])  # fmt: skip
    # A later link moves the links' watermark past c1's lookback: only the opportunity's
    # lookup reaches c1 from here on.
    insert(b, d, "call_context_integration", [_context("c9", "006Z", NEW)])
    insert(b, d, "opportunity", [opportunity("006A", OLD), opportunity("006B", OLD)])
    assert env.sync().status == "success"
    links = (
        "SELECT gong_opportunity_id FROM call_opportunities WHERE gong_call_id = 'c1' ORDER BY 1"
    )
    assert env.query(links) == [("006A",), ("006B",), ("006NEW",)]
    p, sf = env.bq.project, env.datasets["salesforce"]
    dml(env.bq, f"UPDATE `{p}.{sf}.opportunity` SET is_deleted = TRUE, _fivetran_synced = @t"
                " WHERE id = '006A'", t=at(60))  # fmt: skip
    dml(env.bq, f"UPDATE `{p}.{sf}.opportunity` SET _fivetran_deleted = TRUE,"
                " _fivetran_synced = @t WHERE id = '006B'", t=at(60))  # fmt: skip
    assert env.sync().status == "success"
    # An id Salesforce never had stays: the opportunity may still land.
    assert env.query(links) == [("006NEW",)]
    dml(env.bq, f"UPDATE `{p}.{sf}.opportunity` SET is_deleted = NULL, _fivetran_synced = @t"
                " WHERE id = '006A'", t=at(120))  # fmt: skip
    assert env.sync().status == "success"
    assert env.query(links) == [("006A",), ("006NEW",)]
    assert env.sync("opportunities").status == "success"
    assert env.query("SELECT gong_opportunity_id FROM opportunities") == [("006A",)]


def test_a_bad_row_in_a_set_keeps_only_its_own_stored_row(env: Env) -> None:
    """A link with no object id (a dead letter) once kept its call's whole set: a sibling
    link to an opportunity deleted in Salesforce stayed for good. Found by the differential
    test. A bad row with a key keeps its stored row; its gone siblings still go."""
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD)])
    insert(b, d, "call_speaker", [speaker("s1", "c1", OLD), speaker("s2", "c1", OLD)])
    insert(
        b, d, "call_context_integration", [_context("c1", "006A", OLD), _context("c1", None, OLD)]
    )
    insert(b, d, "opportunity", [opportunity("006A", OLD)])
    assert env.sync().status == "success"
    links = "SELECT gong_opportunity_id FROM call_opportunities"
    assert env.query(links) == [("006A",)]
    p, g, sf = env.bq.project, env.datasets["gong"], env.datasets["salesforce"]
    dml(b, f"UPDATE `{p}.{sf}.opportunity` SET is_deleted = TRUE, _fivetran_synced = @t"
           " WHERE id = '006A'", t=at(60))  # fmt: skip
    # s1 can no longer be read (a NUL byte); s2 is deleted: s1 stays as stored, s2 goes.
    dml(b, f"DELETE FROM `{p}.{g}.call_speaker` WHERE id = 's1'")
    insert(b, d, "call_speaker", [speaker("s1", "c1", at(60), user_id="u\x00")])
    dml(b, f"UPDATE `{p}.{g}.call_speaker` SET _fivetran_deleted = TRUE, _fivetran_synced = @t"
           " WHERE id = 's2'", t=at(60))  # fmt: skip
    assert env.sync().status == "success"
    assert env.query(links) == []
    assert env.query("SELECT speaker_id, user_id FROM call_speakers") == [("s1", None)]


def test_without_salesforce_calls_link_every_opportunity_object(env: Env) -> None:
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD)])
    insert(b, d, "call_context_integration", [_context("c1", "006A", OLD)])
    insert(b, d, "opportunity", [opportunity("006A", OLD, is_deleted=True)])
    bq = dataclasses.replace(env.settings.bigquery, table_overrides={"opportunity": "absent"})
    env.settings = dataclasses.replace(env.settings, bigquery=bq)
    assert env.sync().status == "success"
    assert env.query("SELECT gong_opportunity_id FROM call_opportunities") == [("006A",)]


def test_calls_that_synced_from_salesforce_never_fall_back(env: Env) -> None:
    """Links follow Salesforce's live opportunities: Gong's record would link deleted ones
    again, for good, if a missing opportunity table let the fallback stand in."""
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD)])
    insert(b, d, "call_context_integration", [_context("c1", "006A", OLD)])
    insert(b, d, "opportunity", [opportunity("006A", OLD, is_deleted=True)])
    assert env.sync().status == "success"
    assert env.query("SELECT gong_opportunity_id FROM call_opportunities") == []
    bq = dataclasses.replace(env.settings.bigquery, table_overrides={"opportunity": "absent"})
    env.settings = dataclasses.replace(env.settings, bigquery=bq)
    env.execute("DELETE FROM sync_watermarks")  # as a full refresh leaves them
    with pytest.raises(FallbackRefused, match="it has synced from opportunity before") as refused:
        env.sync()
    assert env.query("SELECT gong_opportunity_id FROM call_opportunities") == []
    # What it says to run moves the source to its fallback for good, and nothing more.
    for statement in re.findall(r"DELETE FROM [^;]*;", str(refused.value)):
        env.execute(statement)
    assert env.query("SELECT count(*) FROM sync_streams_read WHERE stream = 'call'") == [(1,)]
    assert env.sync().status == "success"
    assert env.query("SELECT gong_opportunity_id FROM call_opportunities") == [("006A",)]


def test_verify_counts_distinct_keys(env: Env) -> None:
    b, d = env.bq, env.datasets
    insert(b, d, "call", [call("c1", OLD)])
    # The same link twice in Gong's context (two names): one pair here, and one in the count.
    insert(b, d, "call_context_integration", [
        _context("c1", "006A", OLD), _context("c1", "006A", OLD, name="Deal (renamed)"),
    ])  # fmt: skip
    assert env.sync().status == "success"
    result = env.cli("verify", "--json", "--source", "calls")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    (report,) = json.loads(result.stdout)["sources"]
    links = {t["target"]: t for t in report["targets"]}["call_opportunities"]
    assert (links["bigquery_rows"], links["postgres_rows"]) == (1, 1)


def _children(env: Env, cid: str) -> list[tuple[Any, ...]]:
    return env.query(
        "SELECT 'speaker', speaker_id FROM call_speakers WHERE gong_call_id = %s UNION ALL"
        " SELECT 'transcript', sequence_number::text FROM transcripts WHERE gong_call_id = %s"
        " UNION ALL SELECT 'link', gong_opportunity_id FROM call_opportunities"
        " WHERE gong_call_id = %s ORDER BY 1, 2",
        cid,
        cid,
        cid,
    )


def _land_call_with_children(
    env: Env, cid: str, call_synced: Any, children_synced: Any = OLD
) -> None:
    b, d, t = env.bq, env.datasets, children_synced
    insert(b, d, "call_speaker", [speaker(f"{cid}-s", cid, t)])
    insert(b, d, "transcript", [transcript(cid, 0, t), transcript(cid, 1, t)])
    insert(b, d, "call_context_integration", [_context(cid, "006A", t)])
    if call_synced is not None:
        insert(b, d, "call", [call(cid, call_synced)])


def _expected_children(cid: str) -> list[tuple[str, str]]:
    return [("link", "006A"), ("speaker", f"{cid}-s"), ("transcript", "0"), ("transcript", "1")]


# Ids that are words to Postgres's array syntax: a bare null, in any case, is read as NULL.
CALL_IDS = ["c1", "null", "Null"]


def _move_child_watermarks(env: Env, synced: Any) -> None:
    """Another call's children, later: the lookback of each child stream no longer re-reads
    OLD rows, so only the engine's own memory can bring a restored call's children back."""
    _land_call_with_children(env, "c9", synced, synced)


@pytest.mark.parametrize("cid", CALL_IDS)
def test_a_restored_call_brings_its_children_back(env: Env, cid: str) -> None:
    _land_call_with_children(env, cid, OLD)
    assert env.sync().status == "success"
    assert _children(env, cid) == _expected_children(cid)
    _move_child_watermarks(env, NEW)
    p, g = env.bq.project, env.datasets["gong"]
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = TRUE, _fivetran_synced = @t"
        " WHERE id = @cid", t=at(7200), cid=cid)  # fmt: skip
    assert env.sync().status == "success"
    assert _children(env, cid) == []  # they follow their call
    # Restored in Fivetran: only the call's row moves; its children's rows are as they were.
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = NULL, _fivetran_synced = @t"
        " WHERE id = @cid", t=at(14400), cid=cid)  # fmt: skip
    assert env.sync().status == "success"
    assert _children(env, cid) == _expected_children(cid)


@pytest.mark.parametrize("cid", CALL_IDS)
def test_a_call_a_resync_by_ids_deleted_comes_back_with_its_children(env: Env, cid: str) -> None:
    """Deleted in BigQuery without its cursor moving, then resynced by id: the call and its
    children go; restored later, it brings them back, as a call a page deleted does."""
    _land_call_with_children(env, cid, OLD)
    _move_child_watermarks(env, NEW)
    assert env.sync().status == "success"
    p, g = env.bq.project, env.datasets["gong"]
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = TRUE WHERE id = @cid", cid=cid)
    assert env.sync(ids=(cid,)).status == "success"
    assert _children(env, cid) == []
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = FALSE, _fivetran_synced = @t"
        " WHERE id = @cid", t=at(14400), cid=cid)  # fmt: skip
    assert env.sync().status == "success"
    assert _children(env, cid) == _expected_children(cid)
    assert env.query("SELECT count(*) FROM deleted_parents") == [(0,)]


@pytest.mark.parametrize("cid", CALL_IDS)
def test_children_removed_as_orphans_come_back_with_their_call(env: Env, cid: str) -> None:
    _land_call_with_children(env, cid, None)  # the children land first
    insert(env.bq, env.datasets, "call", [call("c0", NEW)])
    assert env.sync().status == "success"
    assert _children(env, cid) == _expected_children(cid)
    assert env.cli("verify", "--fix", "--source", "calls").returncode == 0
    assert _children(env, cid) == []
    insert(env.bq, env.datasets, "call", [call(cid, at(9000))])  # the call lands at last
    assert env.sync().status == "success"
    assert _children(env, cid) == _expected_children(cid)


def test_a_call_landing_while_verify_stages_keys_keeps_its_children(env: Env) -> None:
    """The children land first, so the verify's snapshot sees orphans; the call lands and is
    synced before the fix runs (staging takes hours at scale): its children are kept, where
    deleting them lost them until the next day's verify."""
    _land_call_with_children(env, "c1", None)
    _land_call_with_children(env, "c2", None)  # its call never lands: a true orphan
    insert(env.bq, env.datasets, "call", [call("c0", NEW)])
    assert env.sync().status == "success"
    report = env.verify("calls")
    assert {k[0] for t in report.targets for k in t.orphans} == {"c1", "c2"}
    insert(env.bq, env.datasets, "call", [call("c1", at(9000))])
    assert env.sync().status == "success"
    reader = BigQueryReader(env.bq, env.settings.bigquery)
    calls = sources.get("calls")
    verify.fix(calls, report, env.settings, reader, env.connect, PostgresDeadLetterSink)
    assert _children(env, "c1") == _expected_children("c1")
    assert _children(env, "c2") == []
    assert env.verify("calls").clean


def test_a_database_in_another_time_zone_stores_the_same_instants(env: Env) -> None:
    """Cloud SQL's `timezone` flag (or ALTER DATABASE … SET timezone) changes the session's
    zone; every timestamp this writes or compares carries its offset, so nothing moves."""
    env.execute(
        f'ALTER DATABASE "{env.settings.postgres.database}" SET timezone TO "Pacific/Chatham"'
    )
    assert env.query("SHOW timezone") == [("Pacific/Chatham",)]  # new sessions take it
    insert(env.bq, env.datasets, "call", [call("c1", OLD), call("c2", at(60))])
    insert(env.bq, env.datasets, "transcript", [transcript("c1", 0, OLD)])
    first = env.sync()
    assert (first.status, first.rows_upserted) == ("success", 3)
    got = env.query(
        "SELECT gong_call_id, started_at AT TIME ZONE 'UTC', source_synced_at AT TIME ZONE 'UTC'"
        " FROM calls ORDER BY 1"
    )
    assert got == [
        ("c1", at(-3500).replace(tzinfo=None), OLD.replace(tzinfo=None)),
        ("c2", at(-3500).replace(tzinfo=None), at(60).replace(tzinfo=None)),
    ]
    again = env.sync()  # the watermark and positions read back as the same instants
    assert (again.status, again.rows_upserted) == ("success", 0)


def _recipient(eid: str, address: str, kind: str, synced: Any) -> Any:
    return _person("email_recipient", "email_id", eid, address, synced, type=kind)


def test_an_address_loses_its_nul_before_recipients_are_ordered_and_the_sender_is_chosen(
    env: Env,
) -> None:
    """Emails strip NULs; an address's NUL goes before the order, the repeats and the MIN that
    depend on it, and a blank address (or one that was only a NUL) is no address."""
    b, d = env.bq, env.datasets
    insert(b, d, "email", [email("e1", OLD)])
    addresses = [("A@x.example", "to"), ("a\x00@x.example", "cc"), ("a\x00c@x.example", "cc"),
                 ("ab@x.example", "cc"), ("\x00", "to"), ("  ", "bcc")]  # fmt: skip
    insert(b, d, "email_recipient", [_recipient("e1", a, kind, OLD) for a, kind in addresses])
    insert(b, d, "email_sender", [
        _person("email_sender", "email_id", "e1", address, OLD)
        for address in ("b@x.example", "\x00z@x.example", "  ")
    ])  # fmt: skip
    assert env.sync("emails").status == "success"
    assert env.query(STORED["emails"]) == [
        ("e1", "b@x.example", ["a@x.example", "ab@x.example", "ac@x.example"])
    ]


def test_a_recipient_reaches_an_email_whose_new_version_is_a_dead_letter(env: Env) -> None:
    """The email's stored row is kept, not rewritten, so a touch in the same run still
    derives what it feeds (here its recipients)."""
    b, d = env.bq, env.datasets
    insert(b, d, "email", [email("e1", OLD)])
    insert(b, d, "email_recipient", [_recipient("e1", "a@x.example", "to", OLD)])
    assert env.sync("emails").status == "success"
    table = f"`{b.project}.{d['gong']}.email`"
    dml(b, f"UPDATE {table} SET sent_at = TIMESTAMP '0002-01-01 00:00:00+00',"
        " _fivetran_synced = @t WHERE id = 'e1'", t=at(100))  # fmt: skip
    insert(b, d, "email_recipient", [_recipient("e1", "b@x.example", "cc", NEW)])
    assert env.sync("emails").status == "success"
    assert env.query(STORED["emails"]) == [("e1", None, ["a@x.example", "b@x.example"])]
    assert env.query("SELECT reason FROM dead_letters") == [
        ("sent_at: timestamp 0002-01-01T00:00:00+00:00 is outside 1970..2099",)
    ]

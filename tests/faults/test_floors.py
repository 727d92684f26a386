"""Derivation floors: a parent's rows are read from the earliest cursor any of them carried.

The emulator does not prune, so these tests read what each derivation asked for (its SQL and
its @floor, through `BigQueryBilling`) and check every landing against the reference. Each
scenario is one way a floor could be too high and lose a row: a participant older than its
speakers, a stream passed over unread in a backfill, a deployment older than the floors.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import Env
from tests.factories import at, call, dml, insert, speaker
from tests.faults.bigquery_billing import BigQueryBilling, Job
from tests.faults.matrix import Scenario, model
from tests.faults.test_bigquery_cost import TABLE_BYTES, _through

DAY = 86_400


def _participant(pid: str, cid: str, sid: str, synced: datetime) -> dict[str, Any]:
    return {"id": pid, "call_id": cid, "user_id": None, "speaker_id": sid,
            "name": f"Person {pid}", "email_address": f"{pid}@client.example",
            "affiliation": "External", "title": "CFO", "phone_number": None,
            "_fivetran_synced": synced, "_fivetran_deleted": False}  # fmt: skip


def _landed(env: Env) -> dict[str, list[dict[str, Any]]]:
    """Call c1 (its participant synced an hour before its speaker) and cZ, ten days later.

    cZ moves both speaker tables' watermarks ten days on: c1 is old by the next run.
    """
    data = {
        "call": [call("c1", at(0)), call("cZ", at(10 * DAY))],
        "call_speaker": [speaker("s1", "c1", at(3600)), speaker("sZ", "cZ", at(10 * DAY))],
        "call_participant": [_participant("p1", "c1", "s1", at(0)),
                             _participant("pZ", "cZ", "sZ", at(10 * DAY))],
    }  # fmt: skip
    for table, rows in data.items():
        insert(env.bq, env.datasets, table, rows)
    return data


def _move_talk_time(env: Env, data: dict[str, list[dict[str, Any]]], synced: datetime) -> None:
    """s1 (c1's speaker) gets a new talk time: c1's speakers are derived again."""
    table = f"{env.bq.project}.{env.datasets['gong']}.call_speaker"
    dml(env.bq, f"UPDATE `{table}` SET talk_time = 90, _fivetran_synced = @t WHERE id = 's1'",
        t=synced)  # fmt: skip
    data["call_speaker"][0] = {**data["call_speaker"][0], "talk_time": 90.0,
                               "_fivetran_synced": synced}  # fmt: skip


def _speaker_derivations(billing: BigQueryBilling) -> list[Job]:
    return [j for j in billing.jobs if "IN UNNEST(@keys)" in j.sql and ".call_speaker`" in j.sql]


def _floor(job: Job) -> datetime:
    return datetime.fromisoformat(job.params["floor"].replace(" ", "T"))


def _sync(env: Env, **options: Any) -> BigQueryBilling:
    with BigQueryBilling(env.settings.bigquery.emulator_host or "", TABLE_BYTES) as billing:
        assert _through(env, billing).sync(**options).status == "success"
    return billing


def _names(env: Env) -> list[tuple[Any, ...]]:
    return env.query("SELECT speaker_id, name, talk_time_seconds FROM call_speakers ORDER BY 1")


def test_an_old_calls_speakers_are_read_from_its_oldest_row(env: Env, matrix: Scenario) -> None:
    """The backfill read speakers and passed over participants (swept): both recorded c1."""
    data = _landed(env)
    assert env.sync().status == "success"
    _move_talk_time(env, data, at(11 * DAY))
    billing = _sync(env)
    (job,) = _speaker_derivations(billing)
    # The participant's cursor, an hour before the speaker's: a floor from speakers alone
    # (a skipped stream left unrecorded) would drop p1, and its name with it.
    assert _floor(job) == at(0)
    assert "`_fivetran_synced` >= @floor" in job.sql
    assert _names(env) == [("s1", "Person p1", 90.0), ("sZ", "Person pZ", 60.0)]
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_a_new_calls_speakers_are_read_from_the_watermarks_on(env: Env, matrix: Scenario) -> None:
    """A call first seen now: its floor is the watermark less the lookback, not all of time."""
    data = _landed(env)
    assert env.sync().status == "success"
    new = {"call": [call("c9", at(10 * DAY + 7200))],
           "call_speaker": [speaker("s9", "c9", at(10 * DAY + 7200))],
           "call_participant": [_participant("p9", "c9", "s9", at(10 * DAY + 7000))]}  # fmt: skip
    for table, rows in new.items():
        insert(env.bq, env.datasets, table, rows)
        data[table] += rows
    billing = _sync(env)
    (job,) = _speaker_derivations(billing)
    lookback = timedelta(seconds=env.settings.lookback.total_seconds())
    assert _floor(job) == at(10 * DAY) - lookback  # unread rows are no older than that
    assert ("s9", "Person p9", 60.0) in _names(env)
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_floors_are_seeded_once_where_the_deployment_predates_them(
    env: Env, matrix: Scenario
) -> None:
    """Rows read before floors existed are found by one seed query, then never again."""
    data = _landed(env)
    assert env.sync().status == "success"
    env.execute("DELETE FROM derivation_floors")  # as an engine without floors left it
    env.execute("DELETE FROM derivation_floor_seeds")
    _move_talk_time(env, data, at(11 * DAY))
    billing = _sync(env)
    seeds = [j for j in billing.jobs if "MIN(IFNULL(c" in j.sql]
    assert len(seeds) == 1
    assert ".call_participant`" in seeds[0].sql
    assert ".call_speaker`" in seeds[0].sql
    (job,) = _speaker_derivations(billing)
    assert _floor(job) == at(0)
    assert _names(env)[0] == ("s1", "Person p1", 90.0)
    _move_talk_time(env, data, at(12 * DAY))
    again = _sync(env)
    assert not [j for j in again.jobs if "MIN(IFNULL(c" in j.sql]
    assert _floor(_speaker_derivations(again)[0]) == at(0)
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_a_repair_never_relies_on_floors(env: Env, matrix: Scenario) -> None:
    """Floors set too high (a table restored from a snapshot): an ids run or a full refresh
    reads all of time, and puts back what was lost."""
    data = _landed(env)
    assert env.sync().status == "success"
    env.execute("UPDATE derivation_floors SET floor = now()")
    env.execute("DELETE FROM call_speakers WHERE gong_call_id = 'c1'")
    billing = _sync(env, ids=["c1"])
    assert _speaker_derivations(billing)
    assert not [j for j in billing.jobs if "@floor" in j.sql]
    assert _names(env)[0] == ("s1", "Person p1", 60.0)
    env.execute("DELETE FROM call_speakers WHERE gong_call_id = 'c1'")
    refresh = _sync(env, full_refresh=True)
    assert not [j for j in refresh.jobs if "@floor" in j.sql]
    assert _names(env)[0] == ("s1", "Person p1", 60.0)
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_a_repair_by_ids_lowers_the_floor_so_the_next_derivation_keeps_it(
    env: Env, matrix: Scenario
) -> None:
    """A participant landing later than the lookback: no page reads it, its call's floor is
    its speaker's. verify --fix lands it by id; the next speaker change must not drop it."""
    data = _landed(env)
    table = f"{env.bq.project}.{env.datasets['gong']}.call_participant"
    dml(env.bq, f"DELETE FROM `{table}` WHERE id = 'p1'")  # not landed yet
    assert env.sync().status == "success"
    insert(env.bq, env.datasets, "call_participant", [_participant("p1", "c1", "s1", at(0))])
    assert env.sync().status == "success"  # p1 sits before every watermark's lookback
    assert _names(env)[0] == ("s1", None, 60.0)
    assert env.reconcile("calls").clean
    assert _names(env)[0] == ("s1", "Person p1", 60.0)
    _move_talk_time(env, data, at(11 * DAY))
    billing = _sync(env)
    assert _floor(_speaker_derivations(billing)[0]) == at(0)
    assert _names(env)[0] == ("s1", "Person p1", 90.0)
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_a_row_without_a_cursor_keeps_its_parent_read_whole(env: Env, matrix: Scenario) -> None:
    """A participant whose `_fivetran_synced` is NULL: no page reads it and no floor bounds it,
    so its call is derived from all of time, and keeps it."""
    data = _landed(env)
    data["call_participant"][0] = {**data["call_participant"][0], "_fivetran_synced": None}
    table = f"{env.bq.project}.{env.datasets['gong']}.call_participant"
    dml(env.bq, f"UPDATE `{table}` SET _fivetran_synced = NULL WHERE id = 'p1'")
    assert env.sync().status == "success"
    _move_talk_time(env, data, at(11 * DAY))
    billing = _sync(env)
    (job,) = _speaker_derivations(billing)
    assert "@floor" not in job.sql
    assert _names(env)[0] == ("s1", "Person p1", 90.0)
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_floors_are_seeded_again_when_a_stream_starts_naming_parents(
    env: Env, matrix: Scenario
) -> None:
    """Seeded before participants touched speakers: their rows were never recorded (here, c1's
    floor is its speaker's alone). The changed set of streams seeds the target again."""
    data = _landed(env)
    assert env.sync().status == "success"
    env.execute("UPDATE derivation_floor_seeds SET streams = 'call_speaker'")
    env.execute("UPDATE derivation_floors SET floor = %s WHERE parent = 'c1'", at(3600))
    _move_talk_time(env, data, at(11 * DAY))
    billing = _sync(env)
    seeds = [j.sql for j in billing.jobs if "MIN(IFNULL(c" in j.sql]
    assert len(seeds) == 1
    assert _floor(_speaker_derivations(billing)[0]) == at(0)
    assert _names(env)[0] == ("s1", "Person p1", 90.0)
    matrix.exact(env, model(**data), "calls", "call_speakers")


def test_floor_queries_are_recorded_a_page_at_a_time(env: Env, matrix: Scenario) -> None:
    """A seed or a backfill's skipped stream names every parent (a million calls), so its
    result is recorded a page at a time rather than held whole: every page must be."""
    data = _landed(env)
    more = {"call": [call("c2", at(50))], "call_speaker": [speaker("s2", "c2", at(5000))],
            "call_participant": [_participant("p2", "c2", "s2", at(100))]}  # fmt: skip
    for table, rows in more.items():
        insert(env.bq, env.datasets, table, rows)
        data[table] += rows
    env.settings = dataclasses.replace(env.settings, page_size=1)  # one parent a page
    assert env.sync().status == "success"  # the backfill passes over the participants
    floors = "SELECT parent, floor FROM derivation_floors WHERE target = 'call_speakers' ORDER BY 1"
    # c1's and c2's participants are older than their speakers: only the skipped stream's
    # floor query, whichever page holds them, gives their floors.
    want = [("c1", at(0)), ("c2", at(100)), ("cZ", at(10 * DAY))]
    assert env.query(floors) == want
    env.execute("DELETE FROM derivation_floors")  # as an engine without floors left it
    env.execute("DELETE FROM derivation_floor_seeds")
    assert env.sync().status == "success"  # seeded again, a page at a time
    assert env.query(floors) == want
    matrix.exact(env, model(**data), "calls", "call_speakers")

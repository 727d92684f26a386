"""The sync contract (DESIGN §4) against a real Postgres and the BigQuery emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gong_sync import pending, positions, state
from gong_sync.dead_letters import DeadLetter, PostgresDeadLetterSink
from tests.conftest import Env
from tests.factories import at, call, dml, insert, speaker, transcript

CALL_IDS = "SELECT gong_call_id FROM calls ORDER BY gong_call_id"


def ids(env: Env, sql: str = CALL_IDS) -> list[Any]:
    """The first column of a query, as a list."""
    return [r[0] for r in env.query(sql)]


def test_ties_on_the_cursor_are_neither_missed_nor_duplicated(env: Env) -> None:
    """20 rows share one cursor value across 3 pages of 7; later rows at that value still land."""
    tie = at(0)
    insert(env.bq, env.datasets, "call", [call(f"c{i:02d}", tie) for i in range(20)])
    first = env.sync()
    assert first.status == "success"
    assert ids(env) == [f"c{i:02d}" for i in range(20)]
    assert first.rows_upserted == 20

    # Fivetran commits more rows late with the very same _fivetran_synced.
    insert(env.bq, env.datasets, "call", [call(f"c{i:02d}", tie) for i in range(20, 25)])
    second = env.sync()
    assert ids(env) == [f"c{i:02d}" for i in range(25)]
    assert second.rows_upserted == 5
    assert second.rows_unchanged == 20  # the tie was read again and found unchanged
    assert env.query("SELECT count(*), count(DISTINCT gong_call_id) FROM calls") == [(25, 25)]


def test_watermark_keeps_microseconds(env: Env) -> None:
    """The stored watermark equals the newest cursor to the microsecond."""
    insert(env.bq, env.datasets, "call", [call("a", at(0.000001)), call("b", at(1.000123))])
    env.sync()
    conn = env.connect()
    assert state.watermarks(conn, "calls")["call"] == at(1.000123)
    conn.close()


def test_late_row_inside_lookback_is_picked_up(env: Env) -> None:
    """A row committed late with an older cursor lands if it is within the lookback."""
    insert(env.bq, env.datasets, "call", [call("a", at(0)), call("b", at(7200))])
    env.sync()
    # Committed after the run, stamped 30 min before the watermark (lookback is 1 h).
    insert(env.bq, env.datasets, "call", [call("late", at(7200 - 1800))])
    # Stamped 2 h before the watermark: beyond the lookback, left to reconciliation.
    insert(env.bq, env.datasets, "call", [call("too-late", at(7200 - 7200))])
    env.sync()
    assert ids(env) == ["a", "b", "late"]


def test_soft_delete_removes_the_row_and_its_children(env: Env) -> None:
    """A soft-deleted call takes its speakers and transcripts with it; child deletes work too."""
    # c1's children are older than the lookback by the time c1 is deleted, so only the
    # cascade (not a re-read of the children) can remove them.
    late = 7200
    insert(env.bq, env.datasets, "call", [call("c1", at(0)), call("c2", at(late))])
    insert(env.bq, env.datasets, "call_speaker", [
        speaker("s1", "c1", at(0), talk_time=30.0), speaker("s2", "c1", at(0), talk_time=90.0),
        speaker("s1", "c2", at(late)),
    ])  # fmt: skip
    insert(env.bq, env.datasets, "transcript", [
        transcript("c1", 0, at(0)), transcript("c1", 1, at(0)), transcript("c2", 0, at(late)),
    ])  # fmt: skip
    env.sync()
    assert env.query(
        "SELECT gong_call_id, speaker_id, round(talk_time_percentage, 2)::text FROM call_speakers"
        " ORDER BY 1, 2"
    ) == [("c1", "s1", "25.00"), ("c1", "s2", "75.00"), ("c2", "s1", "100.00")]
    assert len(env.query("SELECT 1 FROM transcripts")) == 3

    g = env.datasets["gong"]
    p = env.bq.project
    dml(
        env.bq,
        f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = TRUE, _fivetran_synced = @t"
        " WHERE id = 'c1'",
        t=at(late + 60),
    )
    dml(
        env.bq,
        f"UPDATE `{p}.{g}.transcript` SET _fivetran_deleted = TRUE, _fivetran_synced = @t"
        " WHERE call_id = 'c2'",
        t=at(late + 60),
    )
    stats = env.sync()
    assert ids(env) == ["c2"]
    assert env.query("SELECT gong_call_id, speaker_id FROM call_speakers") == [("c2", "s1")]
    assert env.query("SELECT gong_call_id FROM transcripts") == []
    assert stats.rows_deleted == 1 + 2 + 2 + 1  # call, its 2 speakers, its 2 monologues, c2's


def test_a_speaker_removed_from_a_call_leaves_the_set(env: Env) -> None:
    """Speakers are replaced as a set: a soft-deleted speaker goes, shares are recomputed."""
    insert(env.bq, env.datasets, "call", [call("c1", at(0))])
    insert(
        env.bq,
        env.datasets,
        "call_speaker",
        [
            speaker("s1", "c1", at(0), talk_time=30.0),
            speaker("s2", "c1", at(0), talk_time=90.0),
        ],
    )
    env.sync()
    g = env.datasets["gong"]
    dml(
        env.bq,
        f"UPDATE `{env.bq.project}.{g}.call_speaker` SET _fivetran_deleted = TRUE,"
        " _fivetran_synced = @t WHERE id = 's2'",
        t=at(10),
    )
    env.sync()
    shares = "SELECT speaker_id, round(talk_time_percentage, 2)::text FROM call_speakers"
    assert env.query(shares) == [("s1", "100.00")]


def test_bad_rows_become_dead_letters_and_the_rest_commits(env: Env) -> None:
    """NUL bytes, null keys and out-of-range timestamps are rejected with a reason."""
    insert(env.bq, env.datasets, "call", [
        call("good1", at(0)), call("nul", at(0), title="bad\x00title"), call(None, at(0)),
        call("", at(0)), call("ancient", at(0), started=at(0).replace(year=1)),
        call("good2", at(1)),
    ])  # fmt: skip
    insert(env.bq, env.datasets, "transcript", [
        transcript("good1", 0, at(0)), transcript(None, 1, at(0)),
        transcript("good1", None, at(0)),
        transcript("good1", 2, at(0), sentence=[{"start": 1, "end": 2, "text": "a\x00b"}]),
    ])  # fmt: skip
    stats = env.sync()
    assert stats.status == "success"
    assert ids(env) == ["good1", "good2"]
    assert env.query("SELECT gong_call_id, sequence_number FROM transcripts") == [("good1", 0)]
    letters = env.query(
        "SELECT target, record_key, reason FROM dead_letters ORDER BY target, record_key"
    )
    assert letters == [
        ("calls", '[""]', "gong_call_id: key is empty"),
        (
            "calls",
            '["ancient"]',
            "started_at: timestamp 0001-10-01T12:00:00.123457+00:00 is outside 1970..2099",
        ),
        ("calls", '["nul"]', "title: NUL byte in text (Postgres text cannot store it)"),
        ("calls", "[null]", "gong_call_id: key is null"),
        ("transcripts", '["good1", 2]', "text: NUL byte in text (Postgres text cannot store it)"),
        ("transcripts", '["good1", null]', "sequence_number: key is null"),
        ("transcripts", "[null, 1]", "gong_call_id: key is null"),
    ]
    assert stats.rows_failed == 7
    # The page committed past the bad rows: the watermark covers them.
    conn = env.connect()
    assert state.watermarks(conn, "calls")["call"] == at(1)
    conn.close()
    _rereads_add_no_letter(env, 7)


def _rereads_add_no_letter(env: Env, letters: int) -> None:
    """A re-read inside the lookback, or a re-import that only bumps the cursor, is not news."""
    env.sync()
    assert len(env.query("SELECT 1 FROM dead_letters")) == letters
    g, p = env.datasets["gong"], env.bq.project
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_synced = @t WHERE id = 'nul'", t=at(7200))
    env.sync()
    assert env.query("SELECT count(*), max(times_seen) FROM dead_letters WHERE target = 'calls'"
                     " AND record_key = '[\"nul\"]'") == [(1, 3)]  # fmt: skip


def test_two_concurrent_runs_never_both_process(env: Env) -> None:
    """While one run holds the source's lock, a second run of it is skipped."""
    insert(env.bq, env.datasets, "call", [call(f"c{i:02d}", at(i)) for i in range(10)])
    inside = threading.Event()
    release = threading.Event()

    class BlockingSink(PostgresDeadLetterSink):
        def publish(self, letters: Sequence[DeadLetter]) -> None:
            inside.set()
            assert release.wait(30)
            super().publish(letters)

    from gong_sync import sources
    from gong_sync.bigquery_reader import BigQueryReader
    from gong_sync.runs import RunStats
    from gong_sync.sync import run_source

    results: list[RunStats] = []

    def first() -> None:
        results.append(
            run_source(
                sources.get("calls"),
                env.settings,
                BigQueryReader(env.bq, env.settings.bigquery),
                env.connect,
                BlockingSink,
            )
        )

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(30)
    second = env.sync()
    release.set()
    worker.join(30)
    assert second.status == "skipped"
    assert second.rows_read == 0
    assert results[0].status == "success"
    assert len(ids(env)) == 10


def test_a_user_change_re_derives_the_speakers_that_use_it(env: Env) -> None:
    """Speakers take name/title from the participant, else the user; a user edit flows through."""
    insert(env.bq, env.datasets, "call", [call("c1", at(0)), call("c2", at(0))])
    ann = {"id": "u1", "email_address": "Ann@Acme.example", "first_name": "Ann",
           "last_name": "Lee", "title": "AE", "manager_id": None, "active": True,
           "_fivetran_synced": at(0), "_fivetran_deleted": False}  # fmt: skip
    insert(env.bq, env.datasets, "users", [ann])
    insert(env.bq, env.datasets, "call_speaker", [
        speaker("s1", "c1", at(0), user_id="u1"), speaker("s9", "c2", at(0), user_id="u1"),
        speaker("s2", "c1", at(0)),
    ])  # fmt: skip
    bo = {**_participant("p2", "c1", "s2", at(0), "CFO"), "name": "Bo Chen",
          "email_address": "bo@client.example"}  # fmt: skip
    insert(env.bq, env.datasets, "call_participant", [bo])
    # A later call's speaker and participant move both watermarks past the lookback of the
    # rows above: the next run reaches c1 and c2 through the user alone.
    insert(env.bq, env.datasets, "call_speaker", [speaker("sZ", "cZ", at(86_400))])
    insert(env.bq, env.datasets, "call_participant",
           [_participant("pZ", "cZ", "sZ", at(86_400), "CTO")])  # fmt: skip
    env.sync()
    speakers = (
        "SELECT gong_call_id, speaker_id, name, email, title, company_side"
        " FROM call_speakers WHERE gong_call_id != 'cZ' ORDER BY 1, 2"
    )
    assert env.query(speakers) == [
        ("c1", "s1", "Ann Lee", "ann@acme.example", "AE", "internal"),
        ("c1", "s2", "Bo Chen", "bo@client.example", "CFO", "external"),
        ("c2", "s9", "Ann Lee", "ann@acme.example", "AE", "internal"),
    ]
    # Two hours later (beyond the lookback) only the user row changes.
    g, p = env.datasets["gong"], env.bq.project
    dml(
        env.bq,
        f"UPDATE `{p}.{g}.users` SET title = 'Senior AE', _fivetran_synced = @t WHERE id = 'u1'",
        t=at(7200),
    )
    # Due at the day's end (midnight UTC): the user's calls span all of time, and deriving
    # them reads both speaker tables back to the oldest, once for the whole day's changes.
    assert env.sync().rows_upserted == 0
    assert [r[4] for r in env.query(speakers)] == ["AE", "CFO", "AE"]
    (due,) = {r[0] for r in env.query("SELECT due FROM pending_derivations")}
    assert (due.hour, due.minute, due.second) == (0, 0, 0)
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(days=1)
    assert not env.verify("calls").drift  # waiting, not drift (cZ is an orphan: no call)
    assert env.settle().rows_upserted == 2
    assert [r[4] for r in env.query(speakers)] == ["Senior AE", "CFO", "Senior AE"]
    assert not env.verify("calls").drift


@pytest.mark.parametrize("order", [("p1", "p2"), ("p2", "p1")])
def test_two_live_participants_of_one_speaker_count_its_talk_time_once(
    env: Env, order: tuple[str, str]
) -> None:
    """A speaker with two participants is one row: its share, and the same participant's name
    whichever BigQuery reads first (the first by user, name, email, title, side)."""
    insert(env.bq, env.datasets, "call", [call("c1", at(0))])
    insert(env.bq, env.datasets, "call_speaker", [speaker("s1", "c1", at(0)),
                                                 speaker("s2", "c1", at(0))])  # fmt: skip
    people = {"p1": {**_participant("p1", "c1", "s1", at(0), "CFO"), "name": "Pat"},
              "p2": {**_participant("p2", "c1", "s1", at(0), "CEO"), "name": "Bo"}}  # fmt: skip
    insert(env.bq, env.datasets, "call_participant", [people[pid] for pid in order])
    env.sync()
    assert env.query(
        "SELECT speaker_id, name, title, talk_time_percentage FROM call_speakers ORDER BY 1"
    ) == [("s1", "Bo", "CEO", Decimal(50)), ("s2", None, None, Decimal(50))]


def test_a_rejected_new_version_keeps_the_stored_row(env: Env) -> None:
    """Re-deriving a unit whose newest source row is bad keeps what is stored (no prune)."""
    insert(env.bq, env.datasets, "call", [call("c1", at(0)), call("c2", at(0))])
    env.sync()
    g, p = env.datasets["gong"], env.bq.project
    dml(env.bq, f"UPDATE `{p}.{g}.call` SET title = @bad, _fivetran_synced = @t"
                " WHERE id = 'c1'", t=at(7200), bad="x\x00")  # fmt: skip
    env.sync(ids=("c1", "c2"))  # the same path verify --fix takes
    assert ids(env) == ["c1", "c2"]
    assert env.query("SELECT title FROM calls WHERE gong_call_id = 'c1'") == [("Call c1",)]
    assert env.query("SELECT reason FROM dead_letters") == [
        ("title: NUL byte in text (Postgres text cannot store it)",)
    ]


def test_children_that_arrived_first_follow_a_parent_that_lands_deleted(env: Env) -> None:
    """Monologues synced before their call existed go when the call lands soft-deleted."""
    insert(env.bq, env.datasets, "transcript", [transcript("c1", 0, at(0))])
    env.sync()
    assert len(env.query("SELECT 1 FROM transcripts")) == 1
    insert(env.bq, env.datasets, "call", [call("c1", at(7200), _fivetran_deleted=True)])
    env.sync()
    assert env.query("SELECT 1 FROM transcripts") == []


def test_a_window_after_the_lookback_does_not_skip_the_gap(env: Env) -> None:
    """`since` later than watermark - lookback re-reads its window but leaves the watermark."""
    insert(env.bq, env.datasets, "call", [call("a", at(0))])
    env.sync()
    insert(env.bq, env.datasets, "call", [call("gap", at(3 * 3600)), call("w", at(6 * 3600))])
    env.sync(since=at(5 * 3600))
    assert ids(env) == ["a", "w"]
    conn = env.connect()
    assert state.watermarks(conn, "calls")["call"] == at(0)  # not moved past "gap"
    conn.close()
    env.sync()
    assert ids(env) == ["a", "gap", "w"]


def test_a_new_run_reads_streams_a_failed_chain_marked_done(env: Env) -> None:
    """Done flags belong to a continuation chain; a fresh run reads every stream again."""
    insert(env.bq, env.datasets, "call", [call("a", at(0))])
    env.sync()
    conn = env.connect()
    # As left by a chain that then failed.
    state.finish_stream(conn, "calls", "call", positions.finished().to_json())
    conn.close()
    insert(env.bq, env.datasets, "call", [call("b", at(60))])
    assert env.sync(resume=True).rows_read == 0  # a continuation honours the flag
    assert env.sync().rows_read >= 1  # a new run does not
    assert ids(env) == ["a", "b"]


def _participant(pid: str, cid: str, sid: str, synced: Any, title: str) -> dict[str, Any]:
    return {
        "id": pid,
        "call_id": cid,
        "user_id": None,
        "speaker_id": sid,
        "name": f"Person {pid}",
        "email_address": f"{pid}@client.example",
        "affiliation": "External",
        "title": title,
        "phone_number": None,
        "_fivetran_synced": synced,
        "_fivetran_deleted": False,
    }


def test_a_run_derives_each_speaker_set_once(env: Env) -> None:
    """Backfill and re-import write every row once; touches after a full read are not re-read."""
    calls = [f"c{i}" for i in range(3)]
    insert(env.bq, env.datasets, "call", [call(c, at(0)) for c in calls])
    insert(
        env.bq,
        env.datasets,
        "call_speaker",
        [speaker(f"s{n}", c, at(0)) for c in calls for n in range(2)],
    )
    insert(
        env.bq,
        env.datasets,
        "call_participant",
        [_participant(f"p{c}{n}", c, f"s{n}", at(0), "CFO") for c in calls for n in range(2)],
    )
    backfill = env.sync()
    # call + call_speaker only: call_participant and users touch nothing a full read of
    # call_speaker did not already derive.
    assert backfill.rows_read == 3 + 6
    assert backfill.rows_upserted == 3 + 6
    conn = env.connect()
    marks = state.watermarks(conn, "calls")
    conn.close()
    assert marks["call_participant"] == at(0)  # where reading it would have ended
    assert "users" not in marks  # empty: nothing to mark

    # A re-import: every row's cursor moves, nothing else.
    g, p = env.datasets["gong"], env.bq.project
    for table in ("call", "call_speaker", "call_participant"):
        dml(env.bq, f"UPDATE `{p}.{g}.{table}` SET _fivetran_synced = @t WHERE TRUE", t=at(7200))
    reimport = env.sync()
    assert reimport.rows_read == 3 + 6 + 6
    assert reimport.rows_upserted == 0
    assert reimport.rows_unchanged == 3 + 6  # not 3 + 12: each set derived once

    # Later, only a participant's title changes: its stream is read and the speaker follows.
    dml(
        env.bq,
        f"UPDATE `{p}.{g}.call_participant` SET title = 'CEO', _fivetran_synced = @t"
        " WHERE id = 'pc11'",
        t=at(14400),
    )
    env.sync()
    assert env.query("SELECT title FROM call_speakers WHERE speaker_id = 's1' ORDER BY 1") == [
        ("CEO",),
        ("CFO",),
        ("CFO",),
    ]


def test_an_invocation_past_its_budget_before_its_first_page_still_moves_on(env: Env) -> None:
    """Each invocation commits at least once: a chain whose set-up outlasts its budget ends."""
    calls = [call(f"c{i:02d}", at(i)) for i in range(20)]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "call_speaker", [speaker(f"s{i:02d}", f"c{i:02d}", at(i))
                                                  for i in range(20)])  # fmt: skip
    spent, invocations, resume = time.monotonic() - 1, 0, False
    while True:
        invocations += 1
        assert invocations < 20, "the chain never finished"
        stats = env.sync(deadline=spent, resume=resume)
        if stats.status == "success":
            break
        assert stats.status == "partial"
        assert stats.commits == 1  # one page, then the spent budget stops it
        resume = True
    assert invocations >= 3
    assert env.query("SELECT count(*) FROM calls") == [(20,)]
    assert env.query("SELECT count(*) FROM call_speakers") == [(20,)]


def _move(env: Env, table: str, row_id: str, call_id: str, synced: Any) -> None:
    """Gong moves a row to another call in place: same id, another call_id, a new cursor."""
    p, g = env.bq.project, env.datasets["gong"]
    dml(env.bq, f"UPDATE `{p}.{g}.{table}` SET call_id = @c, _fivetran_synced = @t WHERE id = @i",
        c=call_id, t=synced, i=row_id)  # fmt: skip


SPEAKERS = "SELECT gong_call_id, speaker_id, name, talk_time_percentage FROM call_speakers"


@pytest.mark.parametrize("full_refresh", [False, True])
def test_a_speaker_moved_to_another_call_leaves_the_one_it_left(
    env: Env, full_refresh: bool
) -> None:
    """Its key is its own id, so the move is an update in place; the call it left is found
    where it was stored (c9 moves the watermarks past the lookback of the old rows)."""
    insert(env.bq, env.datasets, "call", [call(c, at(0)) for c in ("c1", "c2", "c3")])
    insert(env.bq, env.datasets, "call", [call("c9", at(7200))])
    insert(env.bq, env.datasets, "call_speaker", [
        speaker("s0", "c1", at(0)), speaker("s1", "c1", at(0)), speaker("s3", "c3", at(0)),
        speaker("s9", "c9", at(7200)),
    ])  # fmt: skip
    env.sync()
    _move(env, "call_speaker", "s1", "c2", at(9000))
    _move(env, "call_speaker", "s3", "c2", at(9000))  # c3's only speaker
    env.sync(full_refresh=full_refresh)
    assert env.query(f"{SPEAKERS} ORDER BY 1, 2") == [
        ("c1", "s0", None, Decimal(100)), ("c2", "s1", None, Decimal(50)),
        ("c2", "s3", None, Decimal(50)), ("c9", "s9", None, Decimal(100)),
    ]  # fmt: skip


def test_a_participant_moved_to_another_call_no_longer_names_the_speaker_it_left(
    env: Env,
) -> None:
    """The speaker it fed is found by the speaker id it names, in the call it was in."""
    insert(env.bq, env.datasets, "call", [call("c1", at(0)), call("c2", at(0))])
    insert(env.bq, env.datasets, "call", [call("c9", at(7200))])
    insert(env.bq, env.datasets, "call_speaker", [speaker("s1", "c1", at(0)),
                                                 speaker("s9", "c9", at(7200))])  # fmt: skip
    pat = {**_participant("p1", "c1", "s1", at(0), "CFO"), "name": "Pat"}
    insert(env.bq, env.datasets, "call_participant", [pat])
    env.sync()
    assert env.query(f"{SPEAKERS} WHERE speaker_id = 's1'") == [("c1", "s1", "Pat", 100)]
    _move(env, "call_participant", "p1", "c2", at(9000))
    env.sync()
    assert env.query(f"{SPEAKERS} WHERE speaker_id = 's1'") == [("c1", "s1", None, 100)]


def test_a_deferred_touch_falls_due_at_the_next_boundary_of_its_period() -> None:
    """A day's touches share one derivation: due at the next midnight UTC, whatever the hour."""
    day = timedelta(days=1)
    midnight = datetime(2026, 12, 5, tzinfo=UTC)
    for now in (midnight - timedelta(hours=23), midnight - timedelta(microseconds=1)):
        assert pending.due(day, now) == midnight
    assert pending.due(day, midnight) == midnight + day  # noted at midnight: the next one
    assert pending.due(None, midnight) is None
    assert pending.due(timedelta(hours=6), midnight + timedelta(hours=7)) == midnight + 2 * (
        timedelta(hours=6)
    )

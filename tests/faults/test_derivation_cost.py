"""Touch derivations: batched per target per run, narrowed to the columns a touch feeds.

On-demand BigQuery bills every column a query names over the whole table, and a derivation
by parent key cannot be pruned by clustering on `_fivetran_synced`: its cost is the joined
tables' named columns, once per query. These tests count the jobs and read their SQL through
`BigQueryBilling`, and check every landing against the reference.
"""

from __future__ import annotations

import re
import time

import pytest

from gong_sync import pending, reconcile, sources, state
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.runs import RunHooks, RunOptions
from gong_sync.sync import run_source
from tests.conftest import Env
from tests.factories import (
    at,
    call,
    contact,
    dml,
    email,
    insert,
    insert_account_and_owner,
    opportunity,
    speaker,
    transcript,
)
from tests.faults.bigquery_billing import BigQueryBilling
from tests.faults.matrix import Scenario, model
from tests.faults.test_bigquery_cost import TABLE_BYTES, _chain, _through

GB = 10**9
EMAIL_BYTES = {"email": 10 * GB, "email_recipient": GB, "email_sender": GB}


def _derivations(billing: BigQueryBilling, table: str) -> list[str]:
    """The SQL of derivation jobs (by parent key) whose FROM starts at this table (read whole
    or from a floor)."""
    return [
        j.sql
        for j in billing.jobs
        if "IN UNNEST(@keys)" in j.sql
        and re.search(rf"FROM (\(SELECT [^()]* FROM )?`[^`]*\.{table}`", j.sql)
    ]


def test_a_backfill_derives_each_touched_target_once(env: Env, matrix: Scenario) -> None:
    """Speakers over many pages and continuations: one derivation query, at the chain's end."""
    calls = [call(f"c{i:02d}", at(i)) for i in range(12)]
    speakers = [speaker(f"s{i:02d}{k}", f"c{i:02d}", at(i), talk_time=10.0 + k)
                for i in range(12) for k in range(3)]  # fmt: skip
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "call_speaker", speakers)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        invocations = _chain(env, billing)
    assert invocations >= 3  # 48 rows in pages of 7, three pages an invocation
    # Today's engine derived call_speakers once per page of call_speaker (6 pages).
    assert len(_derivations(billing, "call_speaker")) == 1
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]
    matrix.exact(env, model(call=calls, call_speaker=speakers), "calls", "call_speakers")


class CrashOnCommit(RunHooks):
    """Fails the run at its n-th commit, as a killed instance would."""

    def __init__(
        self, n: int, message: str = "killed before the derivations committed", delay: float = 0
    ) -> None:
        """Crash at commit number n, after `delay` seconds (the run reads on meanwhile)."""
        self.n = n
        self.message = message
        self.delay = delay

    def before_commit(self, source: str) -> None:
        """Count commits; raise at the chosen one."""
        self.n -= 1
        if self.n == 0:
            time.sleep(self.delay)
            raise RuntimeError(self.message)


def test_touches_noted_before_a_crash_are_derived_by_the_next_run(
    env: Env, matrix: Scenario
) -> None:
    """The speaker page's position moved, and its parents waited in Postgres: none is lost."""
    calls = [call("c1", at(0)), call("c2", at(0)), call("cZ", at(86_400))]
    first = [speaker("s1", "c1", at(0)), speaker("s2", "c2", at(0))]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "call_speaker", first)
    env.sync()
    later = [speaker("s3", "c1", at(60), talk_time=180.0)]
    insert(env.bq, env.datasets, "call_speaker", later)
    reader = BigQueryReader(env.bq, env.settings.bigquery)
    # Commits: the call page (cZ, in its lookback), the speaker page (and its noted
    # parents), then the derivation.
    with pytest.raises(RuntimeError, match="killed"):
        run_source(
            sources.get("calls"), env.settings, reader, env.connect, PostgresDeadLetterSink,
            RunOptions(), CrashOnCommit(3),
        )  # fmt: skip
    conn = env.connect()
    try:
        marks = state.watermarks(conn, "calls")
        waiting = pending.take(conn, "calls", "call_speakers", 10)
        (shown,) = [i for i in state.status(conn) if i["source"] == "calls"]
    finally:
        conn.close()
    assert marks["call_speaker"] >= at(60)  # without the note, s3 would be lost for good
    assert [p.parent for p in waiting] == ["c1", "c2"]  # s2 was read again in the lookback
    assert shown["waiting_derivations"] == 2  # `gong-sync status` shows them
    assert env.query("SELECT count(*) FROM call_speakers WHERE speaker_id = 's3'") == [(0,)]
    assert env.sync().status == "success"
    matrix.exact(env, model(call=calls, call_speaker=[*first, *later]), "call_speakers")
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]


def _recipient(eid: str, address: str, synced: object, kind: str = "to") -> dict[str, object]:
    return {"email_id": eid, "type": kind, "email_address": address,
            "_fivetran_synced": synced, "_fivetran_deleted": False}  # fmt: skip


def _sender(eid: str, address: str, synced: object = None) -> dict[str, object]:
    return {"email_id": eid, "email_address": address, "_fivetran_synced": synced or at(0),
            "_fivetran_deleted": False}  # fmt: skip


def test_a_recipient_change_reads_no_email_body(env: Env, matrix: Scenario) -> None:
    """Recipients only: no body named, no sender joined; a deleted or unlanded email in full."""
    # eZ moves the email watermark past e1 and e2's lookback: no later run reads them again.
    emails = [email("e1", at(0)), email("e2", at(0)), email("eZ", at(86_400))]
    recipients = [_recipient("e1", "a@x.com", at(0)), _recipient("e2", "b@x.com", at(0))]
    insert(env.bq, env.datasets, "email", emails)
    insert(env.bq, env.datasets, "email_recipient", recipients)
    senders = [_sender("e1", "s@x.com"), _sender("eZ", "z@x.com", at(86_400))]
    insert(env.bq, env.datasets, "email_sender", senders)
    assert env.sync("emails").status == "success"
    # e2 is deleted without its cursor moving; e3 lands later than any lookback.
    table = f"{env.bq.project}.{env.datasets['gong']}.email"
    dml(env.bq, f"UPDATE `{table}` SET _fivetran_deleted = TRUE WHERE id = 'e2'")
    late = email("e3", at(-86_400))
    insert(env.bq, env.datasets, "email", [late])
    changed = [_recipient("e1", "c@x.com", at(60), "cc"), _recipient("e2", "d@x.com", at(60)),
               _recipient("e3", "e@x.com", at(60))]  # fmt: skip
    insert(env.bq, env.datasets, "email_recipient", changed)
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, EMAIL_BYTES) as billing:
        stats = _through(env, billing).sync("emails")
    assert stats.status == "success"
    narrow, *whole = _derivations(billing, "email")
    assert "body" not in narrow
    assert "email_sender" not in narrow
    assert "email_recipient" in narrow
    # Only e2 (deleted) and e3 (never landed) were derived whole, in one more query.
    assert len(whole) == 1
    emails[1]["_fivetran_deleted"] = True
    data = model(email=[*emails, late], email_recipient=[*recipients, *changed],
                 email_sender=senders)  # fmt: skip
    matrix.exact(env, data, "emails")
    assert env.query("SELECT recipients FROM emails WHERE gong_email_id = 'e1'") == [
        (["a@x.com", "c@x.com"],)
    ]


def test_a_sender_change_reaches_its_email_alone(env: Env, matrix: Scenario) -> None:
    """A new sender of an email no later run reads again: sender_email alone, no body."""
    # eZ moves the email watermark past e1's lookback: only the sender's touch reaches it.
    emails = [email("e1", at(0)), email("eZ", at(86_400))]
    insert(env.bq, env.datasets, "email", emails)
    insert(env.bq, env.datasets, "email_sender", [_sender("e1", "old@x.com")])
    assert env.sync("emails").status == "success"
    table = f"{env.bq.project}.{env.datasets['gong']}.email_sender"
    dml(env.bq, f"UPDATE `{table}` SET _fivetran_deleted = TRUE, _fivetran_synced = @t"
        " WHERE TRUE", t=at(60))  # fmt: skip
    insert(env.bq, env.datasets, "email_sender", [_sender("e1", "new@x.com", at(60))])
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, EMAIL_BYTES) as billing:
        assert _through(env, billing).sync("emails").status == "success"
    (narrow,) = _derivations(billing, "email")
    assert "body" not in narrow
    assert "email_recipient" not in narrow
    senders = [{**_sender("e1", "old@x.com", at(60)), "_fivetran_deleted": True},
               _sender("e1", "new@x.com", at(60))]  # fmt: skip
    matrix.exact(env, model(email=emails, email_sender=senders), "emails")
    assert env.query("SELECT sender_email FROM emails WHERE gong_email_id = 'e1'") == [
        ("new@x.com",)
    ]


def _salesforce(table: str, row_id: str, synced: object, **values: object) -> dict[str, object]:
    """A Salesforce account or user row, live."""
    base: dict[str, object] = {
        "account": {"name": "Acme", "is_deleted": False},
        "user": {"name": "Ann", "email": "Ann@Seller.example"},
    }[table]
    return {"id": row_id, **base, "_fivetran_synced": synced, "_fivetran_deleted": False,
            **values}  # fmt: skip


# What a change of each table sets, the column it feeds, and that column's value after.
_EDITS = {
    "account": ({"name": "Renamed"}, "account_name", "Renamed"),
    "user": ({"email": "Ann@New.example"}, "owner_email", "ann@new.example"),
}


@pytest.mark.parametrize("edited", ["account", "user"])
@pytest.mark.parametrize("source", ["opportunities", "contacts"])
def test_an_account_or_owner_change_reads_only_the_column_it_feeds(
    env: Env, matrix: Scenario, source: str, edited: str
) -> None:
    """A renamed account updates account_name alone, an owner's new email owner_email
    alone: the other table is not joined."""
    insert_account_and_owner(env.bq, env.datasets)
    other = "user" if edited == "account" else "account"
    later = _salesforce(other, "0Z", at(86_400))
    insert(env.bq, env.datasets, other, [later])  # its watermark moves on too: no touch
    table = {"opportunities": "opportunity", "contacts": "contact"}[source]
    # The second row moves the watermark past the first's lookback: only the touch reads it.
    make = opportunity if source == "opportunities" else contact
    rows = [make("0A", at(0)), make("0Z", at(86_400))]
    insert(env.bq, env.datasets, table, rows)
    assert env.sync(source).status == "success"
    values, column, after = _EDITS[edited]
    sets = ", ".join(f"{name} = '{value}'" for name, value in values.items())
    edited_table = f"{env.bq.project}.{env.datasets['salesforce']}.{edited}"
    dml(env.bq, f"UPDATE `{edited_table}` SET {sets}, _fivetran_synced = @t WHERE TRUE",
        t=at(3_600))  # fmt: skip
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, {}) as billing:
        assert _through(env, billing).sync(source).status == "success"
    found = _derivations(billing, table)
    assert len(found) == 1, "\n".join(j.sql for j in billing.jobs)
    assert f".{edited}`" in found[0]
    assert f".{other}`" not in found[0]
    ids = {"account": "001A", "user": "005A"}
    data = {edited: [_salesforce(edited, ids[edited], at(3_600), **values)],
            other: [_salesforce(other, ids[other], at(0)), later]}  # fmt: skip
    matrix.exact(env, model(**{table: rows, **data}), source)
    key = {"opportunities": "gong_opportunity_id", "contacts": "contact_id"}[source]
    assert env.query(f"SELECT {column} FROM {source} WHERE {key} = '0A'") == [(after,)]


def _user(uid: str, synced: object, **over: object) -> dict[str, object]:
    row = {"id": uid, "email_address": f"{uid}@seller.example", "first_name": "Ann",
           "last_name": "Lee", "title": "AE", "manager_id": None, "active": True,
           "_fivetran_synced": synced, "_fivetran_deleted": False}  # fmt: skip
    return {**row, **over}


def test_a_user_change_finds_its_calls_in_postgres(env: Env, matrix: Scenario) -> None:
    """No lookup job: the speaker rows derived with the user's id name its calls, and so do
    the rows the ledger holds as rejected for what the user carried (a NUL in a name)."""
    calls = [call("c1", at(0)), call("c2", at(0)), call("c3", at(0)), call("cZ", at(86_400))]
    # u2's name rejects s2's row; s3 is an external speaker (no user): no user reaches c3.
    users = [_user("u1", at(0)), _user("u2", at(0), first_name="B\x00b")]
    speakers = [speaker("s1", "c1", at(0), user_id="u1"), speaker("s2", "c2", at(0), user_id="u2"),
                speaker("s3", "c3", at(0)), speaker("sZ", "cZ", at(86_400))]  # fmt: skip
    # sZ moves the speakers' watermark past the others' lookback: only the users reach them.
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "users", users)
    insert(env.bq, env.datasets, "call_speaker", speakers)
    assert env.sync().status == "success"
    assert env.query("SELECT record_key FROM dead_letters") == [('["c2", "s2"]',)]
    table = f"{env.bq.project}.{env.datasets['gong']}.users"
    dml(env.bq, f"UPDATE `{table}` SET title = 'VP', first_name = 'Bob',"
        " _fivetran_synced = @t WHERE TRUE", t=at(90_000))  # fmt: skip
    upstream = env.settings.bigquery.emulator_host or ""
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        assert _through(env, billing).sync().status == "success"
    assert not [j.sql for j in billing.jobs if "@ids" in j.sql], "a lookup was queried"
    # Due at the day's end (Touch.every): s1 still carries the user as it was.
    assert env.query("SELECT name, title FROM call_speakers WHERE speaker_id = 's1'") == [
        ("Ann Lee", "AE")
    ]
    with BigQueryBilling(upstream, TABLE_BYTES) as billing:
        assert _through(env, billing).settle().status == "success"
    assert len(_derivations(billing, "call_speaker")) == 1
    users = [{**u, "title": "VP", "first_name": "Bob", "_fivetran_synced": at(90_000)}
             for u in users]  # fmt: skip
    matrix.exact(env, model(call=calls, users=users, call_speaker=speakers), "call_speakers")
    assert env.query("SELECT speaker_id, name, title FROM call_speakers ORDER BY 1") == [
        ("s1", "Bob Lee", "VP"),
        ("s2", "Bob Lee", "VP"),
        ("s3", None, None),
        ("sZ", None, None),
    ]


def test_the_daily_reconciliation_compares_keys_without_reading_values(
    env: Env, matrix: Scenario
) -> None:
    """sample 0 (the daily schedule) reads keys only; the weekly sample derives values."""
    calls = [call("c1", at(0)), call("c2", at(0))]
    transcripts = [transcript("c1", 0, at(0)), transcript("c2", 0, at(0))]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", transcripts)
    env.sync()
    upstream = env.settings.bigquery.emulator_host or ""
    jobs: dict[int, list[str]] = {}
    for sample in (0, 500):
        with BigQueryBilling(upstream, TABLE_BYTES) as billing:
            billed = _through(env, billing)
            reader = BigQueryReader(billed.bq, billed.settings.bigquery)
            outcome = reconcile.reconcile(
                sources.get("calls"), billed.settings, reader, env.connect,
                PostgresDeadLetterSink, True, sample,
            )  # fmt: skip
        assert outcome["fixed"] is False  # clean: nothing to repair
        jobs[sample] = [j.sql for j in billing.jobs]
    assert jobs[0]
    assert not [text for text in jobs[0] if "sentence" in text or "@keys" in text]
    assert [text for text in jobs[500] if "sentence" in text]
    matrix.exact(env, model(call=calls, transcript=transcripts), "calls", "transcripts")


def test_parents_noted_for_a_target_no_longer_declared_are_dropped(
    env: Env, matrix: Scenario
) -> None:
    """A declaration that lost a target does not wedge every later run on its notes."""
    calls = [call("c1", at(0))]
    insert(env.bq, env.datasets, "call", calls)
    conn = env.connect()
    try:
        pending.add(conn, "calls", "call_moods", ["c1"], pending.FULL, "call_mood")
        conn.commit()
    finally:
        conn.close()
    assert env.sync().status == "success"
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]
    matrix.exact(env, model(call=calls), "calls")


def test_a_call_waiting_for_the_day_is_derived_at_once_when_its_speakers_change(
    env: Env, matrix: Scenario
) -> None:
    """A user's calls wait for midnight, but a speaker change of one of them derives it now,
    with the user as it is by then; the other waits, and lands once the day ends."""
    calls = [call("c1", at(0)), call("c2", at(0)), call("cZ", at(86_400))]
    users = [_user("u1", at(0))]
    speakers = [speaker("s1", "c1", at(0), user_id="u1"), speaker("s2", "c2", at(0), user_id="u1"),
                speaker("sZ", "cZ", at(86_400))]  # fmt: skip
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "users", users)
    insert(env.bq, env.datasets, "call_speaker", speakers)
    assert env.sync().status == "success"
    gong = f"{env.bq.project}.{env.datasets['gong']}"
    dml(env.bq, f"UPDATE `{gong}.users` SET title = 'VP', _fivetran_synced = @t WHERE TRUE",
        t=at(90_000))  # fmt: skip
    assert env.sync().status == "success"
    waiting = "SELECT parent FROM pending_derivations WHERE due > now() ORDER BY 1"
    assert env.query(waiting) == [("c1",), ("c2",)]
    conn = env.connect()
    try:
        (shown,) = [i for i in state.status(conn) if i["source"] == "calls"]
    finally:
        conn.close()
    assert (shown["waiting_derivations"], shown["deferred_derivations"]) == (2, 2)
    dml(env.bq, f"UPDATE `{gong}.call_speaker` SET talk_time = 90, _fivetran_synced = @t"
        " WHERE id = 's1'", t=at(100_000))  # fmt: skip
    assert env.sync().status == "success"
    titles = "SELECT speaker_id, title, talk_time_seconds FROM call_speakers ORDER BY 1"
    assert env.query(titles) == [("s1", "VP", 90.0), ("s2", "AE", 60.0), ("sZ", None, 60.0)]
    assert env.query(waiting) == [("c2",)]
    assert env.settle().status == "success"
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]
    users = [{**u, "title": "VP", "_fivetran_synced": at(90_000)} for u in users]
    speakers[0] = {**speakers[0], "talk_time": 90.0, "_fivetran_synced": at(100_000)}
    matrix.exact(env, model(call=calls, users=users, call_speaker=speakers), "call_speakers")

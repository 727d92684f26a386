"""Bad input: each hostile value is a dead letter with its key and reason, or a rejected trigger,
and the rest of its batch still lands, exactly.

The reference (tests/reference.py) restates the dead-letter rules of the calls source only; for
emails and opportunities the model given to the exact check is the rows that must land, and the
dead-letter check names the others.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from google.cloud import bigquery

from gong_sync import sources, trigger
from gong_sync.bigquery_reader import make_client
from tests import reference
from tests.conftest import Cloud, Env
from tests.factories import at, call, email, insert, opportunity, speaker, transcript
from tests.faults.bigquery_fault_proxy import FaultProxy
from tests.faults.matrix import Scenario, model
from tests.pubsub_emulator import pull_all
from tests.test_functions import post, pubsub_event

# Quotes, comments, statement breaks, COPY's own escapes (\N, \., tab, newline), array-literal
# syntax, and the placeholder forms of pg8000 ($1, %s), BigQuery (@until) and the declarations
# ({call}). It starts and ends with a letter: BigQuery's TRIM and Python's strip() then agree.
INJECTION = (
    "x'); DROP TABLE calls; -- \" ` \\ ; SELECT pg_sleep(10) -- \\N \\. \t\n\r"
    ' {a,"b"} NULL $1 %s @until {call} y'
)
ALL_TARGETS = ("calls", "transcripts", "emails", "opportunities")
Letters = dict[tuple[str, tuple[Any, ...]], str]  # (target, key) -> reason


def _variant(env: Env, **changes: Any) -> Env:
    """The same database and datasets, read through other BigQuery settings."""
    bq = dataclasses.replace(env.settings.bigquery, **changes)
    client = make_client(bq) if "emulator_host" in changes else env.bq
    return Env(dataclasses.replace(env.settings, bigquery=bq), client)


def _land(env: Env, **tables: list[dict[str, Any]]) -> reference.Rows:
    """Land rows in BigQuery; return them as the reference's model of what BigQuery holds."""
    for table, rows in tables.items():
        insert(env.bq, env.datasets, table, rows)
    return model(**tables)


def _sync_all(env: Env) -> None:
    for source in sources.SOURCES:
        assert env.sync(source).status == "success"


def _without(rows: Iterable[dict[str, Any]], *ids: Any) -> list[dict[str, Any]]:
    """The rows that must land: all but the rejected ids."""
    return [r for r in rows if r["id"] not in ids]


def _letters(env: Env, matrix: Scenario, want: Letters) -> None:
    """Exactly these dead letters, each stored once, each with exactly this reason."""
    matrix.letters(env, list(want))
    got = env.query("SELECT target, record_key, reason FROM dead_letters")
    assert {(t, tuple(json.loads(k))): r for t, k, r in got} == want


def _speakers(env: Env, matrix: Scenario, data: reference.Rows) -> None:
    """call_speakers equals the reference (the matrix knows no speakers target)."""
    got = env.query(
        "SELECT gong_call_id, speaker_id, user_id, name, email, title, company_side,"
        " talk_time_seconds, talk_time_percentage FROM call_speakers"
    )
    matrix.compare("call_speakers", reference.speakers(data)[0].values(), got)


def test_null_and_blank_keys_in_every_source(env: Env, matrix: Scenario) -> None:
    calls = [call("c1", at(0)), call(None, at(0)), call("", at(0)), call("  ", at(0))]
    monologues = [transcript("c1", 0, at(0)), transcript(None, 1, at(0)),
                  transcript("c1", None, at(0)), transcript("", 2, at(0))]  # fmt: skip
    speakers = [speaker("s1", "c1", at(0)), speaker(None, "c1", at(0), talk_time=30.0)]
    emails = [email("e1", at(0)), email(None, at(0)), email("", at(0))]
    deals = [
        opportunity("o1", at(0)),
        {**opportunity("o", at(0)), "id": None},
        opportunity(" ", at(0)),
    ]
    data = _land(env, call=calls, transcript=monologues, call_speaker=speakers, email=emails,
                 opportunity=deals)  # fmt: skip
    _sync_all(env)
    _sync_all(env)  # re-read inside the lookback: the letters are not stored twice
    matrix.exact(env, data, *ALL_TARGETS)  # the reference leaves out blank keys itself
    _speakers(env, matrix, data)
    _letters(env, matrix, {
        ("calls", (None,)): "gong_call_id: key is null",
        ("calls", ("",)): "gong_call_id: key is empty",
        ("calls", ("  ",)): "gong_call_id: key is empty",
        ("transcripts", (None, 1)): "gong_call_id: key is null",
        ("transcripts", ("c1", None)): "sequence_number: key is null",
        ("transcripts", ("", 2)): "gong_call_id: key is empty",
        ("call_speakers", ("c1", None)): "speaker_id: key is null",
        ("emails", (None,)): "gong_email_id: key is null",
        ("emails", ("",)): "gong_email_id: key is empty",
        ("opportunities", (None,)): "gong_opportunity_id: key is null",
        ("opportunities", (" ",)): "gong_opportunity_id: key is empty",
    })  # fmt: skip


def test_nul_bytes_are_rejected_or_stripped_as_declared(env: Env, matrix: Scenario) -> None:
    """Rejected everywhere (a dead letter), except email text, which strips NUL by declaration."""
    calls = [call("c1", at(0)), call("k\x00ey", at(0)), call("m", at(0), custom_data={"k": "\x00"}),
             call("t", at(0), title="a\x00b")]  # fmt: skip
    monologues = [transcript("c1", 0, at(0)),
                  transcript("c1", 1, at(0), sentence=[{"start": 1, "end": 2, "text": "a\x00"}]),
                  transcript("c1", 2, at(0), topic="x\x00")]  # fmt: skip
    speakers = [speaker("s1", "c1", at(0)), speaker("s2", "c1", at(0), user_id="u\x00")]
    kept = email("e1", at(0), subject="Hel\x00lo", body="a\x00b", headers={"x": "y\x00"})
    emails = [kept, email("e\x00k", at(0))]
    deals = [opportunity("o1", at(0)), opportunity("o2", at(0), name="Deal\x00")]
    _land(env, call=calls, transcript=monologues, call_speaker=speakers, email=emails,
          opportunity=deals)  # fmt: skip
    _sync_all(env)
    data = model(call=calls, transcript=monologues, call_speaker=speakers,
                 email=[{**kept, "subject": "Hello", "headers": {"x": "y"}}],  # body: reference
                 opportunity=_without(deals, "o2"))  # fmt: skip
    matrix.exact(env, data, *ALL_TARGETS)
    _speakers(env, matrix, data)
    text = "NUL byte in text (Postgres text cannot store it)"
    _letters(env, matrix, {
        ("calls", ("k\x00ey",)): "gong_call_id: NUL byte in key",
        ("calls", ("m",)): "metadata: NUL byte inside JSON (Postgres jsonb cannot store it)",
        ("calls", ("t",)): f"title: {text}",
        ("transcripts", ("c1", 1)): f"text: {text}",
        ("transcripts", ("c1", 2)): f"topic: {text}",
        ("call_speakers", ("c1", "s2")): f"user_id: {text}",
        ("emails", ("e\x00k",)): "gong_email_id: NUL byte in key",
        ("opportunities", ("o2",)): f"name: {text}",
    })  # fmt: skip
    (record,) = env.query("SELECT record->>'title' FROM dead_letters WHERE record_key = '[\"t\"]'")
    assert record == ("a\u2400b",)  # the stored record shows where the NUL was


# What BigQuery cannot hold, injected into its answers: lone surrogates (as JSON escapes, also
# inside a JSON column's text), a valid surrogate pair (must land), and bytes that are not UTF-8.
REWRITE = {
    b"SUR_KEY": b"k\\ud800",
    b"SUR_TITLE": b"\\ud800",
    b"SUR_JSON": b"\\udfff",
    b"SUR_TEXT": b"\\udbff",
    b"SUR_SUBJECT": b"x\\ud800y",
    b"SUR_NAME": b"\\udc00",
    b"PAIR": b"\\ud83d\\ude00",
    b"NOT_UTF8": b"a\xff\xfeb",
}


def test_lone_surrogates_and_invalid_utf8_from_bigquery(env: Env, matrix: Scenario) -> None:
    """Surrogates are dead letters; bytes that are not UTF-8 reach gong-sync as U+FFFD.

    The client library decodes responses with errors="replace" before gong-sync sees a value,
    so invalid UTF-8 cannot be told from a real U+FFFD: it lands visibly marked, and nothing
    else in its batch is touched.
    """
    calls = [call("SUR_KEY", at(0)), call("c1", at(0), title="SUR_TITLE"),
             call("c2", at(0), custom_data={"k": "SUR_JSON"}), call("c3", at(0), title="PAIR"),
             call("c4", at(0), title="NOT_UTF8"), call("c5", at(0))]  # fmt: skip
    surrogate_text = [{"start": 1, "end": 2, "text": "SUR_TEXT"}]
    monologues = [transcript("c5", 0, at(0)), transcript("c5", 1, at(0), sentence=surrogate_text)]
    emails = [email("e1", at(0), subject="SUR_SUBJECT"), email("e2", at(0))]
    deals = [opportunity("o1", at(0), name="SUR_NAME"), opportunity("o2", at(0))]
    _land(env, call=calls, transcript=monologues, email=emails, opportunity=deals)
    with FaultProxy(env.settings.bigquery.emulator_host or "", match="/queries") as proxy:
        proxy.rewrite = REWRITE
        # REST's JSON is where these can appear: Arrow strings are UTF-8, and the Storage Read
        # path's invalid bytes are pinned in test_storage_read.
        _sync_all(_variant(env, emulator_host=proxy.host, read_api="rest"))
    landed = {"c3": {"title": "\U0001f600"}, "c4": {"title": "a\ufffd\ufffdb"}, "c5": {}}
    data = model(call=[{**c, **landed[c["id"]]} for c in calls if c["id"] in landed],
                 transcript=monologues[:1], email=emails[1:], opportunity=deals[1:])  # fmt: skip
    matrix.exact(env, data, *ALL_TARGETS)
    _letters(env, matrix, {
        ("calls", ("k\ufffd",)): "gong_call_id: lone surrogate in key (not valid Unicode)",
        ("calls", ("c1",)): "title: lone surrogate in text (not valid Unicode)",
        ("calls", ("c2",)): "metadata: lone surrogate inside JSON (not valid Unicode)",
        ("transcripts", ("c5", 1)): "text: lone surrogate in text (not valid Unicode)",
        ("emails", ("e1",)): "subject: lone surrogate in text (not valid Unicode)",
        ("opportunities", ("o1",)): "name: lone surrogate in text (not valid Unicode)",
    })  # fmt: skip


def _utc(year: int, month: int, day: int, *clock: int) -> datetime:
    """A UTC time, any year BigQuery allows."""
    return datetime(year, month, day, *clock, tzinfo=UTC)


def test_out_of_range_timestamps_in_every_source(env: Env, matrix: Scenario) -> None:
    """Outside 1970..2099 (Gong's 0001-01-01 and 9999-12-31 sentinels) is a dead letter."""
    first, last = _utc(1970, 1, 1), _utc(2099, 12, 31, 23, 59, 59, 999999)
    calls = [
        call("zero", at(0), scheduled=_utc(1, 1, 1)),
        call("nines", at(0), started=_utc(9999, 12, 31, 23, 59, 59, 999999)),
        call("before", at(0), scheduled=_utc(1969, 12, 31, 23, 59, 59, 999999)),
        call("after", at(0), started=_utc(2100, 1, 1)),
        call("edges", at(0), scheduled=first, started=last),
    ]
    emails = [email("e1", at(0), sent_at=_utc(1, 1, 1)), email("e2", at(0), sent_at=first),
              email("e3", at(0), sent_at=_utc(9999, 12, 31))]  # fmt: skip
    # A DATE is no timestamp: Salesforce's year 1 close date is a storable value.
    deals = [opportunity("o1", at(0), close_date=datetime(1, 1, 1).date()),
             opportunity("o2", at(0), system_modstamp=_utc(1969, 12, 31))]  # fmt: skip
    _land(env, call=calls, email=emails, opportunity=deals)
    _sync_all(env)
    data = model(call=calls, email=_without(emails, "e1", "e3"),
                 opportunity=_without(deals, "o2"))  # fmt: skip
    matrix.exact(env, data, "calls", "emails", "opportunities")
    outside = "is outside 1970..2099"
    _letters(env, matrix, {
        ("calls", ("zero",)): f"scheduled_at: timestamp 0001-01-01T00:00:00+00:00 {outside}",
        ("calls", ("nines",)): f"started_at: timestamp 9999-12-31T23:59:59.999999+00:00 {outside}",
        ("calls", ("before",)):
            f"scheduled_at: timestamp 1969-12-31T23:59:59.999999+00:00 {outside}",
        ("calls", ("after",)): f"started_at: timestamp 2100-01-01T00:00:00+00:00 {outside}",
        ("emails", ("e1",)): f"sent_at: timestamp 0001-01-01T00:00:00+00:00 {outside}",
        ("emails", ("e3",)): f"sent_at: timestamp 9999-12-31T00:00:00+00:00 {outside}",
        ("opportunities", ("o2",)):
            f"source_modified_at: timestamp 1969-12-31T00:00:00+00:00 {outside}",
    })  # fmt: skip


def test_a_non_numeric_amount_dead_letters_its_opportunity(env: Env, matrix: Scenario) -> None:
    """A customer whose Salesforce amount column is STRING: only clean numbers land."""
    full = f"{env.bq.project}.{env.datasets['salesforce']}.opportunity"
    schema = [
        bigquery.SchemaField(f.name, "STRING" if f.name == "amount" else f.field_type)
        for f in env.bq.get_table(full).schema
    ]
    env.bq.create_table(bigquery.Table(f"{full}_text", schema=schema))
    good = {"1250.50": Decimal("1250.50"), " 7 ": Decimal(7), "1e3": Decimal(1000), None: None}
    bad = {
        "n/a": "amount: not a number: 'n/a'",
        "": "amount: not a number: ''",
        "12,5": "amount: not a number: '12,5'",
        "1; DROP TABLE deals; --": "amount: not a number: '1; DROP TABLE deals; --'",
        "NaN": "amount: not a finite number: Decimal('NaN')",
        "-Infinity": "amount: not a finite number: Decimal('-Infinity')",
        "1e999999": "amount: Decimal('1E+999999') is out of range for Postgres numeric",
        "1.5e-16383": "amount: Decimal('1.5E-16383') is out of range for Postgres numeric",
    }  # fmt: skip
    rows = [opportunity(f"o{i}", at(i), amount=v) for i, v in enumerate([*good, *bad])]
    insert(env.bq, env.datasets, "opportunity", rows, real="opportunity_text")
    stats = _variant(env, table_overrides={"opportunity": "opportunity_text"}).sync("opportunities")
    assert (stats.status, stats.rows_failed) == ("success", len(bad))
    landed = [{**r, "amount": good[r["amount"]]} for r in rows if r["amount"] in good]
    matrix.exact(env, model(opportunity=landed), "opportunities")
    _letters(env, matrix, {
        ("opportunities", (f"o{i}",)): reason for i, reason in enumerate(bad.values(), len(good))
    })  # fmt: skip


def _hostile(field: str) -> str:
    """Injection-shaped text that still says which field it is in."""
    return f"{field} {INJECTION}"


def _land_hostile_rows(env: Env) -> reference.Rows:
    """One row in every table of every source, every text field injection-shaped."""
    i, h = INJECTION, _hostile
    user, account, owner = h("user"), h("account"), h("owner")
    texts = ("workspace_id", "title", "url", "direction", "scope", "media", "purpose", "system",
             "language", "primary_user_id", "meeting_url", "calendar_event_id",
             "client_unique_id")  # fmt: skip
    return _land(
        env,
        call=[call(i, at(0), custom_data={i: i}, **{k: h(k) for k in texts}), call("plain", at(0))],
        call_speaker=[speaker(i, i, at(0), user_id=user), speaker("s2", i, at(0))],
        call_participant=[{
            "id": h("participant"), "call_id": i, "user_id": user, "speaker_id": "s2",
            "name": h("name"), "email_address": h("Email"), "affiliation": "External",
            "title": h("title"), "phone_number": h("phone"),
            "_fivetran_synced": at(0), "_fivetran_deleted": False,
        }],
        users=[{
            "id": user, "email_address": h("Email"), "first_name": h("first"),
            "last_name": h("last"), "title": h("title"), "manager_id": h("manager"),
            "active": True, "_fivetran_synced": at(0), "_fivetran_deleted": False,
        }],
        transcript=[transcript(i, 0, at(0), speaker_id=i, topic=h("topic"),
                               sentence=[{"start": 0, "end": 5, "text": i}])],
        call_context_integration=[{
            "call_id": i, "object_type": "Opportunity", "object_id": i, "name": h("name"),
            "value": h("value"), "_fivetran_synced": at(0), "_fivetran_deleted": False,
        }],
        email=[email(i, at(0), subject=h("subject"), body=h("body"), thread_id=h("thread"),
                     direction=h("direction"), headers={i: i},
                     context=[{"objects": [{"objectType": "Opportunity", "objectId": i}]}])],
        email_sender=[{"email_id": i, "email_address": h("Sender"), "name": h("name"),
                       "_fivetran_synced": at(0), "_fivetran_deleted": False}],
        email_recipient=[{"email_id": i, "email_address": h(kind), "name": h("name"),
                          "type": kind, "_fivetran_synced": at(0), "_fivetran_deleted": False}
                         for kind in ("cc", "To", i)],
        opportunity=[opportunity(i, at(0), name=h("name"), account_id=account, owner_id=owner,
                                 stage_name=h("stage"))],
        account=[{"id": account, "name": h("name"), "is_deleted": False,
                  "_fivetran_synced": at(0), "_fivetran_deleted": False}],
        user=[{"id": owner, "name": h("name"), "email": h("Email"),
               "_fivetran_synced": at(0), "_fivetran_deleted": False}],
    )  # fmt: skip


def test_injection_shaped_text_lands_verbatim_in_every_text_field(
    env: Env, matrix: Scenario
) -> None:
    data = _land_hostile_rows(env)
    _sync_all(env)
    _sync_all(env)  # the stored text reads back equal: nothing is written again
    assert env.query("SELECT sum(rows_upserted), sum(rows_failed) FROM sync_status") == [(0, 0)]
    matrix.exact(env, data, *ALL_TARGETS)
    _speakers(env, matrix, data)
    links = env.query("SELECT gong_call_id, gong_opportunity_id FROM call_opportunities")
    matrix.compare("call_opportunities", reference.call_opportunities(data)[0], links)
    _letters(env, matrix, {})
    tables = ("calls", "call_speakers", "transcripts", "call_opportunities", "emails",
              "opportunities", "sync_status", "dead_letters")  # fmt: skip
    assert env.query("SELECT count(*) FROM pg_tables WHERE tablename = ANY(%s)", list(tables)) == [
        (len(tables),)
    ]
    assert len(list(env.bq.list_tables(env.datasets["gong"]))) == 9


def _trigger(raw: bytes | str) -> Any:
    """A Pub/Sub CloudEvent carrying exactly these data bytes (a str: the base64 text itself)."""
    event = pubsub_event(None, raw=raw if isinstance(raw, bytes) else b"")
    if isinstance(raw, str):
        event.data["message"]["data"] = raw
    return event


def _bodies(messages: Sequence[Any]) -> list[tuple[str, str, Any]]:
    """Kind, reason (less the parser's detail) and the original data of each dead letter."""
    return [(m.attributes.get("kind"), m.attributes.get("reason", "").split(" (")[0],
             json.loads(m.data).get("data")) for m in messages]  # fmt: skip


def test_bad_triggers_are_rejected_and_a_good_one_still_lands_everything(
    cloud: Cloud, matrix: Scenario
) -> None:
    """Through the real function: each bad message is acked (200) and dead-lettered with a
    reason naming the problem; nothing runs; the next good trigger lands everything."""
    env = cloud.env
    calls = [call("c1", at(0)), call("c2", at(0)), call("bad", at(0), title="x\x00y")]
    insert(env.bq, env.datasets, "call", calls)
    since = f"2026-11-01T00:00:00Z{INJECTION}"
    bad: list[tuple[bytes | str, str]] = [
        (b'{"sources": ["calls"], "mdoe": "full_refresh"}',
         f"mdoe: unknown field; allowed: {', '.join(trigger.FIELDS)}"),
        ("%%% not base64", "data: not valid base64"),
        (b'{"sources": ["calls"', "data: not valid JSON"),
        (b"\xff\xfe{}", "data: not valid JSON"),
        (b'["calls"]', "message: expected a JSON object, got list"),
        (json.dumps({"since": since}).encode(), f"since: {since!r} is not an RFC 3339 time"),
        (json.dumps({"sources": [INJECTION]}).encode(),
         f"sources: unknown source {INJECTION!r}; known: {', '.join(sources.SOURCES)}"),
        (json.dumps({"mode": INJECTION}).encode(),
         f"mode: {INJECTION!r} is not one of 'incremental', 'full_refresh', 'verify'"),
    ]  # fmt: skip
    for raw, _ in bad:
        assert post("sync_calls", _trigger(raw)).status_code == 200  # acked: never retried
    want = [("bad_trigger", reason.split(" (")[0],
             raw if isinstance(raw, str) else base64.b64encode(raw).decode())
            for raw, reason in bad]  # fmt: skip
    matrix.compare("rejected triggers", want, _bodies(pull_all(cloud.dead_letters, len(bad), 20)))
    matrix.exact(env, model(), "calls")  # nothing ran
    assert env.query("SELECT source FROM sync_status") == []

    assert post("sync_calls", pubsub_event({"sources": ["calls"]})).status_code == 200
    matrix.exact(env, model(call=calls), "calls")
    nul = "title: NUL byte in text (Postgres text cannot store it)"
    _letters(env, matrix, {("calls", ("bad",)): nul})
    (letter,) = pull_all(cloud.dead_letters, expect=1, timeout=20)
    assert (letter.attributes["kind"], letter.attributes["key"]) == ("bad_record", '["bad"]')

    # Injection-shaped ids are values: the call with that id lands, the other names nothing.
    hostile = call(INJECTION, at(0))
    insert(env.bq, env.datasets, "call", [hostile])
    by_ids = {"sources": ["calls"], "ids": [INJECTION, "c1' OR '1'='1"]}
    assert post("sync_calls", pubsub_event(by_ids)).status_code == 200
    matrix.exact(env, model(call=[*calls, hostile]), "calls")


def test_a_nul_in_the_last_key_of_a_page_does_not_stall_the_stream(
    env: Env, matrix: Scenario
) -> None:
    data = _land(env, call=[call("c1", at(0)), call("z\x00", at(0))])  # last in its page
    assert env.sync().status == "success"
    matrix.exact(env, data, "calls")
    _letters(env, matrix, {("calls", ("z\x00",)): "gong_call_id: NUL byte in key"})


def test_a_year_1_cursor_does_not_stall_the_stream(env: Env, matrix: Scenario) -> None:
    deals = [opportunity("o1", _utc(1, 1, 1))]  # the cursor (system_modstamp) is a sentinel
    insert(env.bq, env.datasets, "opportunity", deals)
    assert env.sync("opportunities").status == "success"
    late = opportunity("o2", at(0))
    insert(env.bq, env.datasets, "opportunity", [late])
    assert env.sync("opportunities").status == "success"
    matrix.exact(env, model(opportunity=[late]), "opportunities")
    _letters(env, matrix, {
        ("opportunities", ("o1",)):
            "source_modified_at: timestamp 0001-01-01T00:00:00+00:00 is outside 1970..2099",
    })  # fmt: skip


def test_a_key_too_long_to_index_is_a_dead_letter(env: Env, matrix: Scenario) -> None:
    """A btree entry holds 2704 bytes: a longer key fails its page unless it is turned away."""
    long_id = "".join(f"{n:x}" for n in range(2000))  # 6 KB, little to compress
    calls = [call(long_id, at(0)), call(f"{long_id[:3000]}\x00", at(0)), call("c1", at(1))]
    insert(env.bq, env.datasets, "call", calls)
    assert env.sync().status == "success"
    matrix.exact(env, model(call=calls[2:]), "calls")
    size = len(long_id)
    # The ledger's index is bounded too: a long key is kept there clipped, and says so.
    _letters(env, matrix, {
        ("calls", (f"{long_id[:300]}... ({size} bytes)",)):
            f"gong_call_id: key is {size} bytes; Postgres indexes at most 2000 here",
        ("calls", (f"{long_id[:300]}... (3001 bytes)",)): "gong_call_id: NUL byte in key",
    })  # fmt: skip


def test_a_parent_id_no_key_can_hold_is_a_dead_letter_not_a_stalled_touch(
    env: Env, matrix: Scenario
) -> None:
    """A speaker, participant or CRM link naming a call id with a NUL (or too long to index):
    noting that call failed its page on every run. Its own rows are dead letters of the page,
    the rest of every stream lands, and the next run reads on."""
    long_id = "".join(f"{n:x}" for n in range(1000))  # 2.9 KB
    data = _land(
        env,
        call=[call("c1", at(0))],
        call_speaker=[speaker("s1", "c1", at(0)), speaker("sN", "c\x00N", at(0)),
                      speaker("sL", long_id, at(0))],
        call_participant=[{"id": "pN", "call_id": "c\x00N", "speaker_id": "sN", "user_id": None,
                           "name": "N", "email_address": None, "affiliation": None,
                           "title": None, "phone_number": None, "_fivetran_synced": at(0),
                           "_fivetran_deleted": False}],
        users=[{"id": "u\x00", "email_address": None, "first_name": "U", "last_name": None,
                "title": None, "manager_id": None, "active": True, "_fivetran_synced": at(0),
                "_fivetran_deleted": False}],
    )  # fmt: skip
    assert env.sync().status == "success"  # a backfill: sweeps, no touch noted
    later = {"call_speaker": [speaker("sM", "c\x00N", at(60)), speaker("sK", long_id, at(60)),
                              speaker("s2", "c1", at(60))]}  # fmt: skip
    for table, rows in later.items():
        insert(env.bq, env.datasets, table, rows)
        data[table] += rows
    assert env.sync().status == "success"
    assert env.sync().status == "success"  # and the next run is not stuck on the page
    # The reference knows no key length: the long id's speakers are the letters below.
    data["call_speaker"] = [r for r in data["call_speaker"] if r["call_id"] != long_id]
    _speakers(env, matrix, data)
    size = len(long_id)
    letters = {(t, tuple(json.loads(k))) for t, k in
               env.query("SELECT target, record_key FROM dead_letters")}  # fmt: skip
    assert letters == {
        ("call_speakers", (call_id, sid))
        for call_id in ("c\x00N", f"{long_id[:300]}... ({size} bytes)")
        for sid in (("sN", "sM") if call_id == "c\x00N" else ("sL", "sK"))
    }
    assert env.query("SELECT count(*) FROM pending_derivations") == [(0,)]


def test_verify_draws_a_parent_id_no_key_can_hold_without_failing(
    env: Env, matrix: Scenario
) -> None:
    """The weekly sample draws parents in BigQuery: one with a NUL must not reach Postgres,
    whether it is the target's own key (an email) or a child's parent (a transcript's call)."""
    data = _land(env, email=[email("e1", at(0)), email("e\x00", at(0))])
    assert env.sync("emails").status == "success"
    report = env.verify("emails")
    assert not report.drift, [t.summary() for t in report.targets]
    matrix.exact(env, model(email=data["email"][:1]), "emails")
    lines = [transcript("c1", 0, at(0)), transcript("c\x00", 0, at(0))]
    calls = _land(env, call=[call("c1", at(0))], transcript=lines)
    assert env.sync().status == "success"
    report = env.verify("calls")
    assert not report.drift, [t.summary() for t in report.targets]
    calls["transcript"] = calls["transcript"][:1]
    matrix.exact(env, calls, "calls", "transcripts")

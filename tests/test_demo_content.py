"""The whole demo dataset, synced, equals the reference mapping row for row."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gong_sync import cli, sources, trigger
from gong_sync.local import demo_data
from gong_sync.local import demo_edge_cases as edge
from gong_sync.settings import PostgresSettings
from tests import reference
from tests.conftest import Env, make_env


@pytest.fixture(scope="module")
def demo() -> reference.Rows:
    """The scale-1 demo data as Python rows."""
    return demo_data.generate(scale=1)


@pytest.fixture(scope="module")
def synced(pg_server: PostgresSettings, bq_host: str, demo: reference.Rows) -> Env:
    """The demo seeded into datasets of this module's own and synced once, in pages of 50."""
    env = make_env(pg_server, bq_host)
    demo_data.seed_bigquery(env.bq, env.bq.project, env.datasets, demo)
    env.settings = dataclasses.replace(env.settings, page_size=50)
    stats = env.sync()
    assert stats.status == "success"
    assert stats.pages > 10  # small pages, so page boundaries fall inside cursor ties
    for other in sources.SOURCES:
        if other != "calls":
            assert env.sync(other).status == "success", other
    return env


def test_calls_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected, letters = reference.calls(demo)
    actual = synced.query(
        "SELECT gong_call_id, title, scheduled_at, started_at, duration_seconds, direction,"
        " scope, media, purpose, system, language, url, primary_user_id, metadata,"
        " source_synced_at FROM calls ORDER BY gong_call_id"
    )
    assert actual == [expected[k] for k in sorted(expected)]
    nasty = demo_data.NASTY
    assert nasty["soft_deleted_call"] not in expected
    assert {nasty["nul_title_call"], nasty["invalid_timestamp_call"], None} <= letters
    dead = {r[0] for r in synced.query("SELECT record_key FROM dead_letters WHERE target='calls'")}
    assert len(dead) == len(letters)


def test_speakers_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected, letters = reference.speakers(demo)
    actual = synced.query(
        "SELECT gong_call_id, speaker_id, user_id, name, email, title, company_side,"
        " talk_time_seconds, talk_time_percentage FROM call_speakers ORDER BY 1, 2"
    )
    want = [expected[k] for k in sorted(expected)]
    assert [r[:8] for r in actual] == [w[:8] for w in want]
    # Shares are rounded by BigQuery; allow its last-digit rounding to differ from Python's.
    for got, exp in zip(actual, want, strict=True):
        assert (got[8] is None) == (exp[8] is None)
        if got[8] is not None:
            assert abs(got[8] - exp[8]) <= Decimal("0.01"), (got, exp)
    dead = synced.query("SELECT count(*) FROM dead_letters WHERE target='call_speakers'")
    assert dead == [(len(letters),)]


def test_transcripts_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected, letters = reference.transcripts(demo)
    actual = synced.query(
        "SELECT gong_call_id, sequence_number, speaker_id, topic, timestamp_seconds,"
        " end_seconds, text, sentences, source_synced_at FROM transcripts ORDER BY 1, 2"
    )
    assert len(actual) == len(expected)
    assert actual == [expected[k] for k in sorted(expected)]
    nasty = demo_data.NASTY
    long_call = nasty["long_transcript_call"]
    assert sum(1 for r in actual if r[0] == long_call) == nasty["long_transcript_monologues"]
    dead = synced.query("SELECT count(*) FROM dead_letters WHERE target='transcripts'")
    assert dead == [(len(letters),)]


def test_call_opportunities_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected, letters = reference.call_opportunities(demo)
    actual = synced.query("SELECT gong_call_id, gong_opportunity_id FROM call_opportunities")
    assert len(actual) == len(expected) > 0
    assert set(actual) == expected
    dead = synced.query("SELECT count(*) FROM dead_letters WHERE target='call_opportunities'")
    assert dead == [(len(letters),)]
    links = {o for c, o in actual if c == edge.NULL_FLAG_CALL}
    # NULL flags are alive; links to opportunities deleted in Salesforce go; unknown ids stay.
    assert links == {edge.NULL_FLAG_OPPORTUNITY, edge.NEVER_LANDED_OPPORTUNITY}


def test_null_flags_are_alive_in_every_table_and_join(synced: Env) -> None:
    call = edge.NULL_FLAG_CALL
    assert synced.query("SELECT title FROM calls WHERE gong_call_id = %s", call) == [
        ("Flags unset",)
    ]
    assert synced.query(
        "SELECT speaker_id, name, email, title FROM call_speakers WHERE gong_call_id = %s"
        " ORDER BY 1",
        call,
    ) == [
        (edge.gong_id(11), "Nell Null", "nell.null@acme.example", "Account Executive"),
        (edge.gong_id(12), "Pat Null", "pat@customer.example", "CFO"),
    ]
    assert synced.query(
        "SELECT sequence_number FROM transcripts WHERE gong_call_id = %s ORDER BY 1", call
    ) == [(0,), (1,)]
    assert synced.query(
        "SELECT sender_email, recipients FROM emails WHERE gong_email_id = %s",
        edge.NULL_FLAG_EMAIL,
    ) == [("nell.null@acme.example", ["to@customer.example", "cc@customer.example"])]
    assert synced.query(
        "SELECT account_name, owner_email FROM opportunities WHERE gong_opportunity_id = %s",
        edge.NULL_FLAG_OPPORTUNITY,
    ) == [("Null Flag Co", "nell.null@acme.example")]
    assert synced.query(
        "SELECT account_name, owner_email, email FROM contacts WHERE contact_id = %s",
        demo_data.NASTY["null_flags_contact"],
    ) == [("Null Flag Co", "nell.null@acme.example", "nora.null@nullflag.example")]


def test_children_of_a_call_bigquery_lacks_are_kept_until_verify(synced: Env) -> None:
    orphan = edge.ORPHAN_CALL
    for table in ("call_speakers", "transcripts", "call_opportunities"):
        got = synced.query(f"SELECT count(*) FROM {table} WHERE gong_call_id = %s", orphan)
        assert got == [(1,)], table


def test_html_bodies_keep_only_visible_text(synced: Env) -> None:
    got = dict(
        synced.query(
            "SELECT gong_email_id, body_snippet FROM emails WHERE gong_email_id = ANY(%s)",
            list(edge.HTML_CASES),
        )
    )
    assert [got[k] for k in edge.HTML_CASES] == [
        "Bold move & more soon",
        "Seats 40 Term 2 yrs",
        "Visible",
        "Agenda Pricing & terms",
    ]


def test_emails_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected = reference.emails(demo)
    actual = synced.query(
        "SELECT gong_email_id, subject, sent_at, sender_email, recipients, body_snippet,"
        " opportunity_id, metadata, source_synced_at FROM emails ORDER BY 1"
    )
    assert actual == [expected[k] for k in sorted(expected)]
    nasty = demo_data.NASTY
    by_id = {r[0]: r for r in actual}
    assert nasty["deleted_email"] not in by_id
    # The same person as "to" and, in capitals, as "cc": one lower-case address, in "to" order.
    dup = by_id[nasty["duplicate_recipient_email"]][4]
    assert len(dup) == len(set(dup))
    assert all(a == a.lower() for a in dup)
    # 499 characters: the 500th is an "e" whose combining accent follows, so both stay out.
    snippet = by_id[nasty["multibyte_email"]][5]
    assert snippet == demo_data.MULTIBYTE_BODY[:499]
    assert by_id[nasty["html_email"]][5] == "Hi Zoë & team, Price: 5 € <net> one two Thanks Ana"
    assert "\x00" not in by_id[nasty["nul_body_email"]][5]
    assert sum(1 for r in actual if r[6]) > 20  # emails with an opportunity in their context


def test_opportunities_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected = reference.opportunities(demo)
    actual = synced.query(
        "SELECT gong_opportunity_id, name, account_id, account_name, owner_email, stage,"
        " close_date, amount, health_score, source_modified_at FROM opportunities ORDER BY 1"
    )
    assert actual == [expected[k] for k in sorted(expected)]
    nasty = demo_data.NASTY
    by_id = {r[0]: r for r in actual}
    assert by_id[nasty["null_amount_opportunity"]][6:8] == (None, None)
    # Its account is deleted: no name to show, but the id Salesforce holds is kept.
    assert by_id[nasty["opportunity_on_deleted_account"]][3] is None
    assert by_id[nasty["opportunity_on_deleted_account"]][2] is not None
    assert by_id[nasty["large_amount_opportunity"]][7] == nasty["large_amount"]
    assert nasty["is_deleted_opportunity"] not in by_id
    assert nasty["fivetran_deleted_opportunity"] not in by_id


def test_contacts_equal_the_reference(synced: Env, demo: reference.Rows) -> None:
    expected, letters = reference.contacts(demo)
    actual = synced.query(
        "SELECT contact_id, account_id, account_name, owner_email, name, first_name, last_name,"
        " email, title, phone, source_modified_at FROM contacts ORDER BY 1"
    )
    assert actual == [expected[k] for k in sorted(expected)]
    nasty = demo_data.NASTY
    by_id = {r[0]: r for r in actual}
    # The app matches participants and recipients by this address: trimmed, lower case.
    assert by_id[nasty["padded_email_contact"]][7] == "sam.rivera@rocketventures.example"
    assert by_id[nasty["no_email_contact"]][7] is None
    assert by_id[nasty["contact_on_deleted_account"]][2] is None
    # A NULL flag is alive; a TRUE one, either of the two, deletes.
    assert {nasty["null_is_deleted_contact"], nasty["null_fivetran_deleted_contact"]} <= set(by_id)
    assert nasty["is_deleted_contact"] not in by_id
    assert nasty["fivetran_deleted_contact"] not in by_id
    assert {nasty["nul_title_contact"], None} <= letters
    dead = synced.query("SELECT record_key FROM dead_letters WHERE target = 'contacts'")
    assert {json.loads(k)[0] for (k,) in dead} == letters


# The check of each target against the reference, by table; the cloud-local test reuses them.
REFERENCE_CHECKS: dict[str, Callable[[Env, reference.Rows], None]] = {
    "calls": test_calls_equal_the_reference,
    "call_speakers": test_speakers_equal_the_reference,
    "transcripts": test_transcripts_equal_the_reference,
    "call_opportunities": test_call_opportunities_equal_the_reference,
    "emails": test_emails_equal_the_reference,
    "opportunities": test_opportunities_equal_the_reference,
    "contacts": test_contacts_equal_the_reference,
}
TARGET_TABLES = [t.table for s in sources.SOURCES.values() for t in s.targets]


def test_every_registered_target_is_checked_against_the_reference() -> None:
    assert sorted(REFERENCE_CHECKS) == sorted(TARGET_TABLES)


def test_a_second_run_writes_nothing(synced: Env) -> None:
    before = synced.query(
        "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        TARGET_TABLES,
    )
    for source in sources.SOURCES:
        stats = synced.sync(source)
        assert stats.rows_upserted == 0
        assert stats.rows_deleted == 0
        assert stats.rows_unchanged > 0
    after = synced.query(
        "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        TARGET_TABLES,
    )
    assert before == after


def _readme_triggers() -> list[tuple[str, trigger.Trigger]]:
    """Every resync example in the README: `gong-sync resync …` and `--message '{…}'`."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    found: list[tuple[str, trigger.Trigger]] = []
    for line in text.splitlines():
        if line.startswith(".venv/bin/gong-sync resync "):  # the examples, not the synopsis
            words = shlex.split(line.removeprefix(".venv/bin/"))
            found.append((line, cli.resync_trigger(cli.parser().parse_args(words[1:]))))
        for message in re.findall(r"--message '(\{.*?\})'", line):
            if message != "{...}":
                found.append((line, trigger.parse(json.loads(message), list(sources.SOURCES))))
    return found


def test_the_readme_resync_examples_read_rows_of_the_demo(synced: Env) -> None:
    examples = _readme_triggers()
    assert len(examples) >= 5
    for line, wanted in examples:
        for name in wanted.sources or sources.SOURCES:
            if wanted.mode == "full_refresh":
                continue  # reads everything: true of any data; the others must match the demo
            stats = synced.sync(name, since=wanted.since, until=wanted.until, ids=wanted.ids)
            assert stats.rows_read > 0, line
            assert not stats.ids_not_found, line

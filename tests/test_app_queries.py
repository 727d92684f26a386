"""The sales-coaching app's reads, at volume, each served by an index (not a full scan).

The app analyses a call (its transcript, speakers and opportunities) and a rep's history
(their calls by date, an opportunity's emails, an account's opportunities). These are its
queries; the migrations hold the indexes they need.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Env

CALLS, SPEAKERS, LINES, EMAILS, OPPORTUNITIES = 50_000, 150_000, 400_000, 50_000, 10_000

# Postgres fills each table with data shaped like the demo: many reps, calls spread over a
# year, a transcript of several lines a call, emails spread over opportunities.
FILL = [
    f"INSERT INTO calls (gong_call_id, started_at, primary_user_id, title)"
    f" SELECT 'c' || i, now() - (i % 365) * interval '1 day', 'u' || (i % 200), 't'"
    f" FROM generate_series(1, {CALLS}) AS i",
    f"INSERT INTO call_speakers (gong_call_id, speaker_id, user_id)"
    f" SELECT 'c' || (i / 3 + 1), 's' || i, 'u' || (i % 200)"
    f" FROM generate_series(0, {SPEAKERS - 1}) AS i",
    f"INSERT INTO transcripts (gong_call_id, sequence_number, text)"
    f" SELECT 'c' || (i / 8 + 1), i % 8, 'words' FROM generate_series(0, {LINES - 1}) AS i",
    f"INSERT INTO opportunities (gong_opportunity_id, account_id, account_name, stage)"
    f" SELECT 'o' || i, 'a' || (i % 2000), 'account ' || (i % 2000), 'stage ' || (i % 7)"
    f" FROM generate_series(1, {OPPORTUNITIES}) AS i",
    f"INSERT INTO call_opportunities (gong_call_id, gong_opportunity_id)"
    f" SELECT 'c' || i, 'o' || (i % {OPPORTUNITIES} + 1) FROM generate_series(1, {CALLS}) AS i",
    f"INSERT INTO emails (gong_email_id, sent_at, opportunity_id, subject)"
    f" SELECT 'e' || i, now() - (i % 365) * interval '1 day', 'o' || (i % {OPPORTUNITIES} + 1),"
    f" 's' FROM generate_series(1, {EMAILS}) AS i",
    f"INSERT INTO contacts (contact_id, email, account_id)"
    f" SELECT 'k' || i, 'person' || i || '@client.example', 'a' || (i % 2000)"
    f" FROM generate_series(1, {CALLS}) AS i",
]

# (name, query, the table that must not be scanned in full)
QUERIES = [
    ("a rep's calls in a date range",
     "SELECT * FROM calls WHERE primary_user_id = 'u7'"
     " AND started_at >= now() - interval '90 days' ORDER BY started_at DESC LIMIT 50",
     "calls"),
    ("a call's transcript in order",
     "SELECT * FROM transcripts WHERE gong_call_id = 'c123' ORDER BY sequence_number",
     "transcripts"),
    ("a call's speakers", "SELECT * FROM call_speakers WHERE gong_call_id = 'c123'",
     "call_speakers"),
    ("a call's opportunities",
     "SELECT o.* FROM call_opportunities l JOIN opportunities o USING (gong_opportunity_id)"
     " WHERE l.gong_call_id = 'c123'", "call_opportunities"),
    ("an opportunity's calls",
     "SELECT c.* FROM call_opportunities l JOIN calls c USING (gong_call_id)"
     " WHERE l.gong_opportunity_id = 'o42'", "call_opportunities"),
    ("an opportunity's emails in order",
     "SELECT * FROM emails WHERE opportunity_id = 'o42' ORDER BY sent_at DESC", "emails"),
    ("emails in a date range",
     "SELECT * FROM emails WHERE sent_at >= now() - interval '2 days' ORDER BY sent_at",
     "emails"),
    ("an account's opportunities by stage",
     "SELECT * FROM opportunities WHERE account_id = 'a17' AND stage = 'stage 3'",
     "opportunities"),
    ("opportunities of an account found by its name",
     "SELECT * FROM opportunities WHERE account_name = 'account 17' ORDER BY stage",
     "opportunities"),
    ("a participant's contact",
     "SELECT * FROM contacts WHERE email = lower('Person7@Client.example')", "contacts"),
]  # fmt: skip


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


@pytest.fixture(scope="module")
def plans(pg_server: Any, bq_host: str) -> dict[str, list[dict[str, Any]]]:
    """Each query's plan over the filled tables, statistics fresh."""
    from tests.conftest import make_env

    env: Env = make_env(pg_server, bq_host)
    conn = env.connect()
    try:
        cur = conn.cursor()
        for statement in FILL:
            cur.execute(statement)
        conn.commit()
        cur.execute("ANALYZE")
        out = {}
        for name, query, _ in QUERIES:
            cur.execute(f"EXPLAIN (FORMAT JSON) {query}")
            (raw,) = cur.fetchone()
            out[name] = list(_nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]))
        return out
    finally:
        conn.close()


@pytest.mark.parametrize(("name", "query", "table"), QUERIES, ids=[q[0] for q in QUERIES])
def test_each_read_of_the_app_uses_an_index(
    plans: dict[str, list[dict[str, Any]]], name: str, query: str, table: str
) -> None:
    nodes = plans[name]
    on_table = [n for n in nodes if n.get("Relation Name") == table]
    assert on_table, f"{name}: the plan does not read {table}"
    scans = {n["Node Type"] for n in on_table}
    assert "Seq Scan" not in scans, f"{name}: {table} scanned in full ({scans})"
    assert scans <= {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, scans

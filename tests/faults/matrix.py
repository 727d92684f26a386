"""The fault matrix's exact check: Postgres content against the reference, with the counts."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests import reference
from tests.conftest import Env

SAMPLES = 5  # missing and extra rows shown when a check fails

# The columns each target is compared on, in the reference's order. source_synced_at is
# bookkeeping: a re-import that only bumps it writes nothing, by design.
CONTENT = {
    "calls": "SELECT gong_call_id, title, scheduled_at, started_at, duration_seconds, direction,"
    " scope, media, purpose, system, language, url, primary_user_id, metadata FROM calls",
    "transcripts": "SELECT gong_call_id, sequence_number, speaker_id, topic, timestamp_seconds,"
    " end_seconds, text, sentences FROM transcripts",
    "call_speakers": "SELECT gong_call_id, speaker_id, user_id, name, email, title,"
    " company_side, talk_time_seconds, talk_time_percentage FROM call_speakers",
    "emails": "SELECT gong_email_id, subject, sent_at, sender_email, recipients, body_snippet,"
    " opportunity_id, metadata FROM emails",
    "opportunities": "SELECT gong_opportunity_id, name, account_id, account_name, owner_email,"
    " stage, close_date, amount, health_score FROM opportunities",
    "contacts": "SELECT contact_id, account_id, account_name, owner_email, name, first_name,"
    " last_name, email, title, phone FROM contacts",
}


def model(**tables: list[dict[str, Any]]) -> reference.Rows:
    """What BigQuery holds, for the reference: the given tables, every other one empty."""
    return defaultdict(list, tables)


def expected(target: str, data: reference.Rows, orphans: bool = True) -> list[tuple[Any, ...]]:
    """The reference's rows of a target, on the compared columns; orphans=False as after fix."""
    rows: dict[Any, tuple[Any, ...]]
    if target == "call_speakers":  # no bookkeeping column to leave out
        return list(reference.speakers(data)[0].values())
    if target == "calls":
        rows = reference.calls(data)[0]
    elif target == "transcripts":
        rows = dict(reference.transcripts(data)[0])
        rows = rows if orphans else reference.without_orphans(rows, data)
    elif target == "emails":
        rows = dict(reference.emails(data))
    elif target == "opportunities":
        rows = dict(reference.opportunities(data))
    elif target == "contacts":
        rows = reference.contacts(data)[0]
    else:
        raise ValueError(f"no reference for {target}")
    return [row[:-1] for row in rows.values()]  # the last column is source_synced_at


def _hashable(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


# The teardown report property that carries a scenario to the summary (tests/conftest.py).
SUMMARY_PROPERTY = "fault_scenario"


@dataclass
class Scenario:
    """One fault scenario's line in the summary, summed over its exact checks."""

    name: str
    checks: int = 0
    checked: int = 0  # rows compared (every row that must be there, dead letters included)
    lost: int = 0  # rows that must be there and are not
    duplicated: int = 0  # rows there beyond what must be: duplicates and extras
    outcome: str = "passed"
    note: str = ""

    def compare(
        self, what: str, want: Iterable[Sequence[Any]], got: Iterable[Sequence[Any]]
    ) -> None:
        """Count rows compared, missing and extra (as multisets); then require none of either."""
        wanted = Counter(tuple(_hashable(v) for v in row) for row in want)
        found = Counter(tuple(_hashable(v) for v in row) for row in got)
        missing, extra = wanted - found, found - wanted
        self.checks += 1
        self.checked += wanted.total()
        self.lost += missing.total()
        self.duplicated += extra.total()
        if missing or extra:
            raise AssertionError(
                f"{what}: {missing.total()} lost, {extra.total()} duplicated or extra;"
                f" lost e.g. {sorted(missing, key=repr)[:SAMPLES]},"
                f" extra e.g. {sorted(extra, key=repr)[:SAMPLES]}"
            )

    def exact(self, env: Env, data: reference.Rows, *targets: str, orphans: bool = True) -> None:
        """Each target in Postgres equals the reference for what BigQuery holds (data)."""
        for target in targets:
            self.compare(target, expected(target, data, orphans), env.query(CONTENT[target]))

    def letters(self, env: Env, want: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """The dead letters are exactly these (target, key) records, each stored once."""
        got = env.query("SELECT target, record_key FROM dead_letters")
        self.compare(
            "dead letters",
            [(target, tuple(key)) for target, key in want],
            [(target, tuple(json.loads(key))) for target, key in got],
        )

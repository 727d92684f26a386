"""A Fivetran-shaped Gong + Salesforce dataset at benchmark scale, loaded with load jobs."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from google.cloud import bigquery

from gong_sync.local import fivetran_schemas
from gong_sync.local.demo_data import to_json_row

# Rows stamped over the last 30 days, all in the past, so an incremental run finds nothing new.
SPAN = timedelta(days=30)
# Load jobs of about this many rows: the emulator takes a whole file in memory per job.
LOAD_ROWS = 200_000
WORDS = (
    "pricing", "renewal", "budget", "timeline", "security", "review", "pilot", "rollout",
    "integration", "champion", "procurement", "legal", "discount", "seats", "onboarding",
    "roadmap", "competitor", "migration", "quarter",
)  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """How many calls and transcript rows; everything else is proportional to calls."""

    calls: int
    transcripts: int

    @property
    def users(self) -> int:
        """Gong users (the people who speak on calls)."""
        return max(10, self.calls // 100)

    @property
    def emails(self) -> int:
        """Gong emails: one for every two calls."""
        return max(1, self.calls // 2)

    @property
    def opportunities(self) -> int:
        """Salesforce opportunities: one for every twenty calls."""
        return max(1, self.calls // 20)

    @property
    def accounts(self) -> int:
        """Salesforce accounts."""
        return max(1, self.calls // 50)

    @property
    def sf_users(self) -> int:
        """Salesforce users (opportunity owners)."""
        return max(1, self.calls // 200)


class _Generator:
    """Deterministic rows, table by table, generated as they are loaded."""

    def __init__(self, scale: Scale, seed: int, now: datetime) -> None:
        self.scale = scale
        self.rng = random.Random(seed)
        self.start = now - SPAN

    def synced(self) -> datetime:
        return self.start + timedelta(
            microseconds=self.rng.randrange(int(SPAN.total_seconds())) * 10**6
        )

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(n))

    def base(self) -> dict[str, Any]:
        return {"_fivetran_synced": self.synced(), "_fivetran_deleted": False}

    def call(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.calls):
            started = self.start + timedelta(minutes=i % 40_000)
            yield {
                "id": f"{7_000_000_000_000 + i}",
                "workspace_id": "ws-1",
                "title": f"Call {i}: {self.words(4)}",
                "url": f"https://app.gong.io/call?id={i}",
                "scheduled": started,
                "started": started + timedelta(seconds=self.rng.randrange(300)),
                "duration": self.rng.randrange(300, 3600),
                "direction": self.rng.choice(("Inbound", "Outbound", "Conference")),
                "scope": self.rng.choice(("External", "Internal")),
                "media": "Video",
                "purpose": None,
                "system": "Zoom",
                "language": "eng",
                "primary_user_id": f"u{i % self.scale.users}",
                "is_private": False,
                "meeting_url": f"https://zoom.us/j/{i}",
                "custom_data": {"crm": {"stage": self.rng.choice(WORDS)}, "tags": [i % 7]},
                "calendar_event_id": f"cal-{i}",
                "client_unique_id": None,
                **self.base(),
            }

    def call_speaker(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.calls):
            for s in range(2):
                yield {
                    "id": f"sp{i}-{s}",
                    "call_id": f"{7_000_000_000_000 + i}",
                    "user_id": f"u{(i + s) % self.scale.users}" if s == 0 else None,
                    "talk_time": float(self.rng.randrange(60, 1800)),
                    **self.base(),
                }

    def call_participant(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.calls):
            for s in range(2):
                yield {
                    "id": f"pa{i}-{s}",
                    "call_id": f"{7_000_000_000_000 + i}",
                    "user_id": f"u{(i + s) % self.scale.users}" if s == 0 else None,
                    "speaker_id": f"sp{i}-{s}",
                    "name": None if s == 0 else f"Buyer {i}",
                    "email_address": None if s == 0 else f"buyer{i}@example.com",
                    "affiliation": "Internal" if s == 0 else "External",
                    "title": None if s == 0 else "VP Sales",
                    "phone_number": None,
                    **self.base(),
                }

    def transcript(self) -> Iterator[dict[str, Any]]:
        calls, total = self.scale.calls, self.scale.transcripts
        for n in range(total):
            call, index = n % calls, n // calls  # spread monologues evenly over the calls
            t = 1000 * (index * 30)
            yield {
                "call_id": f"{7_000_000_000_000 + call}",
                "index": index,
                "speaker_id": f"sp{call}-{index % 2}",
                "topic": self.rng.choice(WORDS),
                "sentence": [
                    {"start": t + 9000 * k, "end": t + 9000 * k + 8000, "text": self.words(9)}
                    for k in range(3)
                ],
                **self.base(),
            }

    def users(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.users):
            yield {
                "id": f"u{i}",
                "email_address": f"rep{i}@seller.example",
                "first_name": f"Rep{i}",
                "last_name": "Seller",
                "title": "Account Executive",
                "manager_id": None,
                "active": True,
                **self.base(),
            }

    def call_context_integration(self) -> Iterator[dict[str, Any]]:
        for i in range(0, self.scale.calls, 2):
            yield {
                "call_id": f"{7_000_000_000_000 + i}",
                "object_type": "Opportunity",
                "object_id": f"006{i % self.scale.opportunities:015d}",
                "name": "Opportunity",
                "value": None,
                **self.base(),
            }

    def email(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.emails):
            yield {
                "id": f"em{i}",
                "subject": f"Re: {self.words(5)}",
                "sent_at": self.start + timedelta(minutes=i % 40_000),
                "body": "<html><body><p>" + self.words(120) + "</p></body></html>",
                "thread_id": f"th{i // 3}",
                "direction": "Outbound",
                "headers": {"message-id": f"<{i}@mail.example>"},
                "context": [
                    {
                        "system": "Salesforce",
                        "objects": [
                            {
                                "objectType": "Opportunity",
                                "objectId": f"006{i % self.scale.opportunities:015d}",
                            }
                        ],
                    }
                ],
                **self.base(),
            }

    def email_sender(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.emails):
            yield {"email_id": f"em{i}", "email_address": f"rep{i % 97}@seller.example",
                   "name": "Rep", **self.base()}  # fmt: skip

    def email_recipient(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.emails):
            for kind in ("to", "cc"):
                yield {"email_id": f"em{i}", "email_address": f"{kind}{i}@buyer.example",
                       "name": None, "type": kind, **self.base()}  # fmt: skip

    def opportunity(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.opportunities):
            modified = self.synced()
            yield {
                "id": f"006{i:015d}",
                "name": f"Deal {i}",
                "account_id": f"001{i % self.scale.accounts:015d}",
                "owner_id": f"005{i % self.scale.sf_users:015d}",
                "stage_name": self.rng.choice(("Prospecting", "Negotiation", "Closed Won")),
                "close_date": date(2026, 12, 1) + timedelta(days=i % 90),
                "amount": Decimal(self.rng.randrange(1000, 500_000)) / 100,
                "probability": 50.0,
                "is_closed": False,
                "is_won": False,
                "is_deleted": False,
                "last_modified_date": modified,
                "system_modstamp": modified,
                **self.base(),
            }

    def account(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.accounts):
            yield {"id": f"001{i:015d}", "name": f"Account {i}", "is_deleted": False,
                   **self.base()}  # fmt: skip

    def user(self) -> Iterator[dict[str, Any]]:
        for i in range(self.scale.sf_users):
            yield {"id": f"005{i:015d}", "name": f"Owner {i}",
                   "email": f"Owner{i}@Seller.example", **self.base()}  # fmt: skip


def _files(rows: Iterator[dict[str, Any]], table: str) -> Iterator[tuple[bytes, int]]:
    """Newline-delimited JSON in load-job-sized pieces."""
    buf = io.StringIO()
    count = 0
    for row in rows:
        buf.write(json.dumps(to_json_row(table, row), ensure_ascii=False))
        buf.write("\n")
        count += 1
        if count == LOAD_ROWS:
            yield buf.getvalue().encode(), count
            buf, count = io.StringIO(), 0
    if count:
        yield buf.getvalue().encode(), count


def load(
    client: bigquery.Client, datasets: dict[str, str], scale: Scale, seed: int = 11
) -> dict[str, int]:
    """Create every source table and fill it; returns rows per table."""
    fivetran_schemas.create_tables(client, client.project, datasets)
    gen = _Generator(scale, seed, datetime.now(UTC) - timedelta(hours=2))
    counts: dict[str, int] = {}
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )
    for table in fivetran_schemas.TABLES:
        full_id = fivetran_schemas.table_id(client.project, datasets, table)
        counts[table] = 0
        rows = getattr(gen, table, None)
        if rows is None:  # a source the benchmark does not measure reads an empty table
            continue
        for data, n in _files(rows(), table):
            client.load_table_from_file(io.BytesIO(data), full_id, job_config=config).result()
            counts[table] += n
    return counts


def reimport(client: bigquery.Client, datasets: dict[str, str]) -> None:
    """What a Fivetran re-sync does: every row's `_fivetran_synced` moves, nothing else."""
    for table in fivetran_schemas.TABLES:
        full_id = fivetran_schemas.table_id(client.project, datasets, table)
        client.query(
            f"UPDATE `{full_id}` SET _fivetran_synced = CURRENT_TIMESTAMP() WHERE TRUE"
        ).result()

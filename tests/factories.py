"""Small hand-made Fivetran rows for tests that need exact control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from google.api_core.retry import Retry
from google.cloud import bigquery

from gong_sync.local import demo_data, fivetran_schemas

T0 = datetime(2026, 10, 1, 12, 0, 0, 123457, tzinfo=UTC)
_RETRY = Retry(initial=0.2, maximum=1.0, timeout=15)


def at(seconds: float) -> datetime:
    """A cursor value `seconds` after T0 (microsecond precision kept)."""
    return T0 + timedelta(seconds=seconds)


def call(cid: str | None, synced: datetime, **over: Any) -> dict[str, Any]:
    """A Gong call row."""
    row: dict[str, Any] = {
        "id": cid,
        "workspace_id": "ws1",
        "title": f"Call {cid}",
        "url": f"https://gong/{cid}",
        "scheduled": at(-3600),
        "started": at(-3500),
        "duration": 1800,
        "direction": "Outbound",
        "scope": "External",
        "media": "Video",
        "purpose": "Discovery",
        "system": "Zoom",
        "language": "eng",
        "primary_user_id": "u1",
        "is_private": False,
        "meeting_url": "https://zoom/x",
        "custom_data": {"k": cid},
        "calendar_event_id": None,
        "client_unique_id": None,
        "_fivetran_synced": synced,
        "_fivetran_deleted": False,
    }
    row.update(over)
    return row


def speaker(sid: str | None, cid: str, synced: datetime, **over: Any) -> dict[str, Any]:
    """A Gong call_speaker row."""
    row: dict[str, Any] = {
        "id": sid,
        "call_id": cid,
        "user_id": None,
        "talk_time": 60.0,
        "_fivetran_synced": synced,
        "_fivetran_deleted": False,
    }
    row.update(over)
    return row


def transcript(cid: str | None, index: int | None, synced: datetime, **over: Any) -> dict[str, Any]:
    """A Gong transcript row (one monologue)."""
    row: dict[str, Any] = {
        "call_id": cid,
        "index": index,
        "speaker_id": "s1",
        "topic": "Pricing",
        "sentence": [
            {"start": 1000 * (index or 0) + 250, "end": 1000 * (index or 0) + 900, "text": "Hi."},
            {"start": 1000 * (index or 0) + 900, "end": 1000 * (index or 0) + 990, "text": "Ok"},
        ],
        "_fivetran_synced": synced,
        "_fivetran_deleted": False,
    }
    row.update(over)
    return row


def email(eid: str | None, synced: datetime, **over: Any) -> dict[str, Any]:
    """A Gong email row."""
    row: dict[str, Any] = {
        "id": eid,
        "subject": f"Subject {eid}",
        "sent_at": at(-60),
        "body": f"Body of {eid}",
        "thread_id": "t1",
        "direction": "Inbound",
        "headers": {"x-mailer": "gong"},
        "context": None,
        "_fivetran_synced": synced,
        "_fivetran_deleted": False,
    }
    row.update(over)
    return row


def opportunity(oid: str, modstamp: Any, **over: Any) -> dict[str, Any]:
    """A Salesforce opportunity row."""
    row: dict[str, Any] = {
        "id": oid, "name": f"Deal {oid}", "account_id": "001A", "owner_id": "005A",
        "stage_name": "Discovery", "close_date": None, "amount": Decimal("1200.50"),
        "probability": 0.2, "is_closed": False, "is_won": False, "is_deleted": False,
        "last_modified_date": modstamp, "system_modstamp": modstamp,
        "_fivetran_synced": modstamp, "_fivetran_deleted": False,
    }  # fmt: skip
    row.update(over)
    return row


def contact(cid: str | None, modstamp: Any, **over: Any) -> dict[str, Any]:
    """A Salesforce contact row."""
    row: dict[str, Any] = {
        "id": cid, "account_id": "001A", "owner_id": "005A", "first_name": "Pat",
        "last_name": f"Buyer {cid}", "name": f"Pat Buyer {cid}",
        "email": f"Pat.{cid}@Buyer.example",
        "title": "CFO", "phone": None, "mobile_phone": None, "is_deleted": False,
        "last_modified_date": modstamp, "system_modstamp": modstamp,
        "_fivetran_synced": modstamp, "_fivetran_deleted": False,
    }  # fmt: skip
    row.update(over)
    return row


def insert_account_and_owner(client: bigquery.Client, datasets: dict[str, str]) -> None:
    """Salesforce account 001A (Acme) and user 005A (Ann), both live: what rows join to."""
    insert(client, datasets, "account", [
        {"id": "001A", "name": "Acme", "is_deleted": False, "_fivetran_synced": at(0),
         "_fivetran_deleted": False},
    ])  # fmt: skip
    insert(client, datasets, "user", [
        {"id": "005A", "name": "Ann", "email": "Ann@Seller.example", "_fivetran_synced": at(0),
         "_fivetran_deleted": False},
    ])  # fmt: skip


def insert(
    client: bigquery.Client,
    datasets: dict[str, str],
    table: str,
    rows: list[dict[str, Any]],
    real: str | None = None,
) -> None:
    """Land rows in a Fivetran table (or the customer's `real` one), failing fast on a bad row."""
    role, _ = fivetran_schemas.TABLES[table]
    errors = client.insert_rows_json(
        f"{client.project}.{datasets[role]}.{real or table}",
        [demo_data.to_json_row(table, r) for r in rows],
        retry=_RETRY,
        timeout=30,
    )
    assert not errors, errors


def dml(client: bigquery.Client, sql: str, **params: Any) -> None:
    """Run a DML statement in the emulator (a Fivetran update or soft delete)."""
    qp = [
        bigquery.ScalarQueryParameter(k, "TIMESTAMP" if isinstance(v, datetime) else "STRING", v)
        for k, v in params.items()
    ]
    client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=qp)).result()

"""BigQuery schemas of the Fivetran-landed Gong and Salesforce source tables."""

from __future__ import annotations

import logging
from typing import Final

from google.cloud import bigquery

logger = logging.getLogger(__name__)

GONG: Final = "gong"
SALESFORCE: Final = "salesforce"
ROLES: Final[tuple[str, ...]] = (GONG, SALESFORCE)

FIVETRAN_SYNCED: Final = "_fivetran_synced"
FIVETRAN_DELETED: Final = "_fivetran_deleted"


def _schema(*columns: tuple[str, str]) -> list[bigquery.SchemaField]:
    """Build a NULLABLE schema from (name, type) pairs plus the Fivetran bookkeeping columns."""
    # Everything is NULLABLE: Fivetran does not enforce keys, and the demo data
    # deliberately contains NULL keys that a REQUIRED mode would reject.
    cols = [*columns, (FIVETRAN_SYNCED, "TIMESTAMP"), (FIVETRAN_DELETED, "BOOL")]
    return [bigquery.SchemaField(name, field_type, mode="NULLABLE") for name, field_type in cols]


TABLES: Final[dict[str, tuple[str, list[bigquery.SchemaField]]]] = {
    "call": (
        GONG,
        _schema(
            ("id", "STRING"),
            ("workspace_id", "STRING"),
            ("title", "STRING"),
            ("url", "STRING"),
            ("scheduled", "TIMESTAMP"),
            ("started", "TIMESTAMP"),
            ("duration", "INT64"),
            ("direction", "STRING"),
            ("scope", "STRING"),
            ("media", "STRING"),
            ("purpose", "STRING"),
            ("system", "STRING"),
            ("language", "STRING"),
            ("primary_user_id", "STRING"),
            ("is_private", "BOOL"),
            ("meeting_url", "STRING"),
            ("custom_data", "JSON"),
            ("calendar_event_id", "STRING"),
            ("client_unique_id", "STRING"),
        ),
    ),
    "call_speaker": (
        GONG,
        _schema(
            ("id", "STRING"),
            ("call_id", "STRING"),
            ("user_id", "STRING"),
            ("talk_time", "FLOAT64"),
        ),
    ),
    "call_participant": (
        GONG,
        _schema(
            ("id", "STRING"),
            ("call_id", "STRING"),
            ("user_id", "STRING"),
            ("speaker_id", "STRING"),
            ("name", "STRING"),
            ("email_address", "STRING"),
            ("affiliation", "STRING"),
            ("title", "STRING"),
            ("phone_number", "STRING"),
        ),
    ),
    "transcript": (
        GONG,
        _schema(
            ("call_id", "STRING"),
            ("index", "INT64"),
            ("speaker_id", "STRING"),
            ("topic", "STRING"),
            ("sentence", "JSON"),
        ),
    ),
    "users": (
        GONG,
        _schema(
            ("id", "STRING"),
            ("email_address", "STRING"),
            ("first_name", "STRING"),
            ("last_name", "STRING"),
            ("title", "STRING"),
            ("manager_id", "STRING"),
            ("active", "BOOL"),
        ),
    ),
    "call_context_integration": (
        GONG,
        _schema(
            ("call_id", "STRING"),
            ("object_type", "STRING"),
            ("object_id", "STRING"),
            ("name", "STRING"),
            ("value", "STRING"),
        ),
    ),
    "email": (
        GONG,
        _schema(
            ("id", "STRING"),
            ("subject", "STRING"),
            ("sent_at", "TIMESTAMP"),
            ("body", "STRING"),
            ("thread_id", "STRING"),
            ("direction", "STRING"),
            ("headers", "JSON"),
            # Gong's CRM context (systems and their objects); absent in some customers' schema.
            ("context", "JSON"),
        ),
    ),
    "email_sender": (
        GONG,
        _schema(
            ("email_id", "STRING"),
            ("email_address", "STRING"),
            ("name", "STRING"),
        ),
    ),
    "email_recipient": (
        GONG,
        _schema(
            ("email_id", "STRING"),
            ("email_address", "STRING"),
            ("name", "STRING"),
            ("type", "STRING"),
        ),
    ),
    "opportunity": (
        SALESFORCE,
        _schema(
            ("id", "STRING"),
            ("name", "STRING"),
            ("account_id", "STRING"),
            ("owner_id", "STRING"),
            ("stage_name", "STRING"),
            ("close_date", "DATE"),
            ("amount", "NUMERIC"),
            ("probability", "FLOAT64"),
            ("is_closed", "BOOL"),
            ("is_won", "BOOL"),
            ("is_deleted", "BOOL"),
            ("last_modified_date", "TIMESTAMP"),
            ("system_modstamp", "TIMESTAMP"),
        ),
    ),
    "account": (
        SALESFORCE,
        _schema(
            ("id", "STRING"),
            ("name", "STRING"),
            ("is_deleted", "BOOL"),
        ),
    ),
    "user": (
        SALESFORCE,
        _schema(
            ("id", "STRING"),
            ("name", "STRING"),
            ("email", "STRING"),
        ),
    ),
    "contact": (
        SALESFORCE,
        _schema(
            ("id", "STRING"),
            ("account_id", "STRING"),
            ("owner_id", "STRING"),
            ("first_name", "STRING"),
            ("last_name", "STRING"),
            ("name", "STRING"),
            ("email", "STRING"),
            ("title", "STRING"),
            ("phone", "STRING"),
            ("mobile_phone", "STRING"),
            ("is_deleted", "BOOL"),
            ("last_modified_date", "TIMESTAMP"),
            ("system_modstamp", "TIMESTAMP"),
        ),
    ),
}


def column_types(table: str) -> dict[str, str]:
    """Return column name → BigQuery type for one logical table."""
    _, schema = TABLES[table]
    return {field.name: field.field_type for field in schema}


def table_id(project: str, datasets: dict[str, str], table: str) -> str:
    """Return the fully qualified `project.dataset.table` id of a logical table."""
    role, _ = TABLES[table]
    try:
        dataset = datasets[role]
    except KeyError:
        raise ValueError(f"no dataset for role {role!r} (table {table!r})") from None
    return f"{project}.{dataset}.{table}"


def create_tables(client: bigquery.Client, project: str, datasets: dict[str, str]) -> None:
    """Create the role datasets and all source tables through the API (idempotent)."""
    missing = [role for role in ROLES if role not in datasets]
    if missing:
        raise ValueError(f"datasets is missing roles: {', '.join(missing)}")
    # Two roles may share one dataset; create each distinct dataset once.
    distinct = list(dict.fromkeys(datasets[role] for role in ROLES))
    for dataset in distinct:
        client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"), exists_ok=True)
    # API creation rather than DDL: the emulator's DDL path loses NUMERIC precision.
    for name, (_, schema) in TABLES.items():
        full_id = table_id(project, datasets, name)
        client.create_table(bigquery.Table(full_id, schema=schema), exists_ok=True)
        logger.debug("ensured table %s", full_id)
    logger.info("ensured %d source tables in %s.%s", len(TABLES), project, "+".join(distinct))

"""The `emails` source: Gong emails with their sender and recipients.

This part of the Gong schema varies by customer, so every table and column it reads is in
this one declaration; table names can also be remapped with GONG_SYNC_TABLES.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from gong_sync.declarations import Column, Source, Stream, Target, Touch, deleted, live
from gong_sync.html_text import plain_text

SNIPPET_CHARS = 500


def snippet(body: str | None, limit: int = SNIPPET_CHARS) -> str | None:
    """The first `limit` characters of the plain text, never splitting a character."""
    if body is None:
        return None
    text = plain_text(body, limit)
    if len(text) <= limit:
        return text
    cut = limit
    # Python counts code points, so no multi-byte character is split; also keep a combining
    # accent with the letter it belongs to.
    while cut > 0 and unicodedata.combining(text[cut]):
        cut -= 1
    return text[:cut]


def first_opportunity(context: Any) -> str | None:
    """The first Salesforce Opportunity id in Gong's CRM context of an email, if any."""
    if not isinstance(context, list):
        return None
    for system in context:
        objects = system.get("objects") if isinstance(system, Mapping) else None
        for obj in objects if isinstance(objects, list) else []:
            if isinstance(obj, Mapping) and obj.get("objectType") == "Opportunity":
                object_id = obj.get("objectId")
                if isinstance(object_id, str) and object_id.strip():
                    return object_id.strip()
    return None


def email_fields(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """Snippet, recipients (first occurrence kept) and opportunity of one email."""
    addresses = row.get("recipients") or []
    return {
        "body_snippet": snippet(row.get("body")),
        "recipients": list(dict.fromkeys(a for a in addresses if a)),
        "opportunity_id": first_opportunity(row.get("context")),
    }


# An address as stored: lower-cased and trimmed, a blank one is none, and its NULs are gone
# here, before the order, the repeats and the MIN that depend on them (the target strips
# NULs, but only as it writes, after all three).
_ADDRESS = "NULLIF(LOWER(TRIM(REPLACE(email_address, CODE_POINTS_TO_STRING([0]), ''))), '')"
# Recipients in to, cc, bcc order, then alphabetically. Python removes repeats.
_RECIPIENTS = (
    f"SELECT email_id, ARRAY_AGG({_ADDRESS} IGNORE NULLS"
    " ORDER BY CASE LOWER(type) WHEN 'to' THEN 0 WHEN 'cc' THEN 1 WHEN 'bcc' THEN 2 ELSE 3 END,"
    f" {_ADDRESS}) AS addresses"
    f" FROM {{email_recipient}} WHERE {live('_fivetran_deleted')} GROUP BY email_id"
)
_SENDER = (
    f"SELECT email_id, MIN({_ADDRESS}) AS address"
    f" FROM {{email_sender}} WHERE {live('_fivetran_deleted')} GROUP BY email_id"
)

EMAILS = Target(
    table="emails",
    key=("gong_email_id",),
    parent="gong_email_id",
    columns=(
        Column("gong_email_id", "text", "e.id"),
        Column("subject", "text", "e.subject"),
        Column("sent_at", "timestamptz", "e.sent_at"),
        Column("sender_email", "text", "snd.address"),
        Column("recipients", "text[]"),
        Column("body_snippet", "text"),
        Column("opportunity_id", "text"),
        Column("source_synced_at", "timestamptz", "e._fivetran_synced", compare=False),
    ),
    from_sql=(
        f"{{email}} AS e LEFT JOIN ({_SENDER}) AS snd ON snd.email_id = e.id"
        f" LEFT JOIN ({_RECIPIENTS}) AS rcpt ON rcpt.email_id = e.id"
    ),
    deleted_sql=deleted("e._fivetran_deleted"),
    metadata_alias="e",  # body, headers, thread_id, direction, and any new column
    transform=email_fields,
    inputs=(
        Column("body", "text", "e.body"),
        Column("recipients", "text[]", "rcpt.addresses"),
        Column("context", "jsonb", "e.context", optional=True),
    ),
    # Mail bodies carry stray NULs from pasted PDFs; dropping them loses nothing readable.
    nul="strip",
)

SOURCE = Source(
    name="emails",
    streams=(
        Stream(table="email", alias="e", key=("id",), drives="emails"),
        Stream(
            table="email_sender",
            alias="es",
            key=("email_id", "email_address"),
            # Only the sender: re-deriving the whole email would read (and bill) every body.
            touches=(Touch("emails", column="email_id", feeds=("sender_email",)),),
        ),
        Stream(
            table="email_recipient",
            alias="er",
            key=("email_id", "type", "email_address"),
            touches=(Touch("emails", column="email_id", feeds=("recipients",)),),
        ),
    ),
    targets=(EMAILS,),
    datasets={"email": "gong", "email_sender": "gong", "email_recipient": "gong"},
)

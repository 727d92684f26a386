"""The `emails` source: Gong emails with their sender and recipients.

This part of the Gong schema varies by customer, so every table and column it reads is in
this one declaration; table names can also be remapped with GONG_SYNC_TABLES.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from gong_sync.declarations import Column, Source, Stream, Target, Touch

SNIPPET_CHARS = 500
_HTML_TAG = re.compile(r"<(?:html|body|div|p|br|span|table|a|b|i|ul|ol|li|h[1-6])\b[^>]*>", re.I)
_BLOCK_TAGS = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol"}


class _TextExtractor(HTMLParser):
    """Collect an HTML document's visible text (entities decoded, scripts and styles skipped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def plain_text(body: str) -> str:
    """The body as one line of plain text: HTML reduced to its text, whitespace collapsed."""
    body = body.replace("\x00", "")
    if _HTML_TAG.search(body):
        parser = _TextExtractor()
        parser.feed(body)
        parser.close()
        body = "".join(parser.parts)
    return " ".join(body.split())


def snippet(body: str | None, limit: int = SNIPPET_CHARS) -> str | None:
    """The first `limit` characters of the plain text, never splitting a character."""
    if body is None:
        return None
    text = plain_text(body)
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


# Recipients in to, cc, bcc order, then alphabetically; lower-cased. Python removes repeats.
_RECIPIENTS = (
    "SELECT email_id, ARRAY_AGG(LOWER(TRIM(email_address)) IGNORE NULLS"
    " ORDER BY CASE LOWER(type) WHEN 'to' THEN 0 WHEN 'cc' THEN 1 WHEN 'bcc' THEN 2 ELSE 3 END,"
    " LOWER(TRIM(email_address))) AS addresses"
    " FROM {email_recipient} WHERE NOT _fivetran_deleted GROUP BY email_id"
)
_SENDER = (
    "SELECT email_id, MIN(LOWER(TRIM(email_address))) AS address"
    " FROM {email_sender} WHERE NOT _fivetran_deleted GROUP BY email_id"
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
    deleted_sql="e._fivetran_deleted",
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
            touches=(Touch("emails", column="email_id"),),
        ),
        Stream(
            table="email_recipient",
            alias="er",
            key=("email_id", "type", "email_address"),
            touches=(Touch("emails", column="email_id"),),
        ),
    ),
    targets=(EMAILS,),
    datasets={"email": "gong", "email_sender": "gong", "email_recipient": "gong"},
)

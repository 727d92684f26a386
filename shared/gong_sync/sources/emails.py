"""The `emails` source: Gong emails with their sender and recipients.

This part of the Gong schema varies by customer, so every table and column it reads is in
this one declaration; table names can also be remapped with GONG_SYNC_TABLES.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from typing import Any

from gong_sync.declarations import Column, Source, Stream, Target, Touch, deleted, live

SNIPPET_CHARS = 500
# Reading stops once the snippet is full, so a 10 MB body costs what a short one does.
_CHUNK_CHARS = 4096
# A body is HTML when its start holds a doctype, a comment, or a tag of an HTML element.
_DETECT_CHARS = 65536


# Every element of the WHATWG HTML standard, plus the obsolete ones mail clients still send.
def _names(text: str) -> frozenset[str]:
    """Tag names from a space-separated list."""
    return frozenset(text.split())


_HTML_ELEMENTS = _names(
    "a abbr address area article aside audio b base bdi bdo big blockquote body br button"
    " canvas caption center cite code col colgroup data datalist dd del details dfn dialog div"
    " dl dt em embed fieldset figcaption figure font footer form h1 h2 h3 h4 h5 h6 head header"
    " hgroup hr html i iframe img input ins kbd label legend li link main map mark menu meta"
    " meter nav noscript object ol optgroup option output p picture pre progress q rp rt ruby s"
    " samp script search section select slot small source span strike strong style sub summary"
    " sup table tbody td template textarea tfoot th thead time title tr track tt u ul var video"
    " wbr"
)
_MARKUP = re.compile(r"<(?:!doctype\s+html|!--|/?([a-z][a-z0-9]*)(?=[\s/>]))", re.I)
# Text inside these is not what a reader sees.
_HIDDEN = frozenset({"script", "style", "title", "head"})
# What may stand in <head>: any other start tag opens the body, as a browser does.
_HEAD_CONTENT = frozenset(
    {"base", "link", "meta", "noscript", "script", "style", "template", "title"}
)
# Tags that run on within a line; every other tag separates words.
_INLINE = _names(
    "a abbr b bdi bdo big cite code data dfn em font i kbd mark q s samp small span strike"
    " strong sub sup time tt u var"
)


def is_html(body: str) -> bool:
    """Whether the body's start holds HTML markup (a doctype, a comment or an element tag)."""
    for found in _MARKUP.finditer(body, 0, _DETECT_CHARS):
        name = found.group(1)
        if name is None or name.lower() in _HTML_ELEMENTS:
            return True
    return False


class _TextExtractor(HTMLParser):
    """Collect an HTML document's visible text, entities decoded, hidden elements skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._open: list[str] = []  # hidden elements we are inside, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._open == ["head"] and tag not in _HEAD_CONTENT:
            self._open.clear()  # an unclosed <head>: its content ends where the body starts
        if tag in _HIDDEN:
            self._open.append(tag)
        elif tag not in _INLINE:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE:  # <br/>: a separator, never a hidden element left open
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]
        elif tag not in _INLINE:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._open:
            self.parts.append(data)


def _chunks(body: str) -> Iterator[str]:
    for start in range(0, len(body), _CHUNK_CHARS):
        yield body[start : start + _CHUNK_CHARS].replace("\x00", "")


def plain_text(body: str, limit: int | None = None) -> str:
    """The body as one line of plain text: HTML reduced to its visible text, spaces collapsed.

    With a limit, reading stops once more than `limit` characters of text are known.
    """
    parser = _TextExtractor() if is_html(body) else None
    parts: list[str] = parser.parts if parser else []
    text = ""
    for chunk in _chunks(body):
        if parser:
            parser.feed(chunk)
        else:
            parts.append(chunk)
        if limit is not None and sum(map(len, parts)) > limit:
            text = " ".join("".join(parts).split())
            if len(text) > limit:  # the text so far is a prefix of the whole text
                return text
    if parser:
        parser.close()
    return " ".join("".join(parts).split())


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


# Recipients in to, cc, bcc order, then alphabetically; lower-cased. Python removes repeats.
_RECIPIENTS = (
    "SELECT email_id, ARRAY_AGG(LOWER(TRIM(email_address)) IGNORE NULLS"
    " ORDER BY CASE LOWER(type) WHEN 'to' THEN 0 WHEN 'cc' THEN 1 WHEN 'bcc' THEN 2 ELSE 3 END,"
    " LOWER(TRIM(email_address))) AS addresses"
    f" FROM {{email_recipient}} WHERE {live('_fivetran_deleted')} GROUP BY email_id"
)
_SENDER = (
    "SELECT email_id, MIN(LOWER(TRIM(email_address))) AS address"
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

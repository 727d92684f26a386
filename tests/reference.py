"""An independent, plain-Python statement of what Postgres must hold for given source rows.

It restates the mapping rules from the README rather than reusing engine code, so a bug in
the engine's SQL or mapping shows up as a difference.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Rows = dict[str, list[dict[str, Any]]]
LO, HI = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

CALL_MAPPED = (
    "id", "title", "scheduled", "started", "duration", "direction", "scope", "media", "purpose",
    "system", "language", "url", "primary_user_id",
)  # fmt: skip


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _bad_time(value: datetime | None) -> bool:
    return value is not None and not LO <= value < HI


def _gone(row: dict[str, Any]) -> bool:
    """A row is deleted only when a deletion flag is TRUE: NULL is alive."""
    return row.get("_fivetran_deleted") is True or row.get("is_deleted") is True


def deleted_calls(data: Rows) -> set[str]:
    """Ids of soft-deleted calls."""
    return {c["id"] for c in data["call"] if _gone(c) and c["id"] is not None}


def live_calls(data: Rows) -> set[str]:
    """Ids of the calls BigQuery holds and has not deleted: the parents children need."""
    return {c["id"] for c in data["call"] if not _gone(c) and not _blank(c["id"])}


def without_orphans(rows: dict[Any, Any], data: Rows) -> dict[Any, Any]:
    """Child rows (keyed by call id first) whose call is live: what verify --fix leaves."""
    calls = live_calls(data)
    return {k: v for k, v in rows.items() if k[0] in calls}


def calls(data: Rows) -> tuple[dict[str, tuple[Any, ...]], set[Any]]:
    """gong_call_id -> expected calls row, and the keys that must be dead letters."""
    out: dict[str, tuple[Any, ...]] = {}
    letters: set[Any] = set()
    for c in sorted(data["call"], key=lambda r: r["_fivetran_synced"]):
        if _gone(c) and not _blank(c["id"]):
            out.pop(c["id"], None)
            continue
        metadata = {
            k: v for k, v in c.items() if k not in CALL_MAPPED and not k.startswith("_fivetran")
        }
        if (
            _blank(c["id"])
            or any(_has_nul(c[k]) for k in CALL_MAPPED)
            or _has_nul(metadata)
            or _bad_time(c["scheduled"])
            or _bad_time(c["started"])
        ):
            letters.add(c["id"])
            continue
        out[c["id"]] = (
            c["id"], c["title"], c["scheduled"], c["started"], c["duration"], c["direction"],
            c["scope"], c["media"], c["purpose"], c["system"], c["language"], c["url"],
            c["primary_user_id"], metadata, c["_fivetran_synced"],
        )  # fmt: skip
    return out, letters


def _carries(p: dict[str, Any]) -> tuple[tuple[bool, str], ...]:
    """A participant's order among those of one speaker: by these columns, NULLs last."""
    cols = ("user_id", "name", "email_address", "title", "affiliation")
    return tuple((p.get(c) is None, p.get(c) or "") for c in cols)


def speakers(data: Rows) -> tuple[dict[tuple[str, str], tuple[Any, ...]], set[Any]]:
    """(call, speaker) -> expected call_speakers row, and dead-lettered keys."""
    gone = deleted_calls(data)
    live = [s for s in data["call_speaker"] if not _gone(s) and s["call_id"] not in gone]
    total: dict[str, float] = defaultdict(float)
    for s in live:
        total[s["call_id"]] += s["talk_time"] or 0.0
    participants: dict[tuple[str, str], dict[str, Any]] = {}
    for p in data["call_participant"]:  # one a speaker: the first by what it carries
        if _gone(p) or p["speaker_id"] is None:
            continue
        pair = (p["call_id"], p["speaker_id"])
        if pair not in participants or _carries(p) < _carries(participants[pair]):
            participants[pair] = p
    users = {u["id"]: u for u in data["users"] if not _gone(u)}
    out: dict[tuple[str, str], tuple[Any, ...]] = {}
    letters: set[Any] = set()
    for s in live:
        if _blank(s["id"]) or _blank(s["call_id"]):
            letters.add((s["call_id"], s["id"]))
            continue
        p = participants.get((s["call_id"], s["id"]), {})
        uid = s["user_id"] or p.get("user_id")
        u = users.get(uid, {})
        full = f"{u.get('first_name') or ''} {u.get('last_name') or ''}".strip()
        name = p.get("name") or full or None
        email = p.get("email_address") or u.get("email_address")
        title = p.get("title") if p.get("title") is not None else u.get("title")
        side = (p.get("affiliation") or "").lower()
        if side not in ("internal", "external"):
            side = "internal" if uid else "unknown"
        share = None
        if total[s["call_id"]]:
            exact = Decimal(repr(100 * s["talk_time"] / total[s["call_id"]]))
            share = exact.quantize(Decimal("0.01"), ROUND_HALF_UP)
        row = (s["call_id"], s["id"], uid, name, email and email.lower(), title, side,
               s["talk_time"], share)  # fmt: skip
        if any(_has_nul(v) for v in row):
            letters.add((s["call_id"], s["id"]))
            continue
        out[(s["call_id"], s["id"])] = row
    return out, letters


def transcripts(data: Rows) -> tuple[dict[tuple[str, int], tuple[Any, ...]], set[Any]]:
    """(call, index) -> expected transcripts row (one per monologue), and dead-lettered keys."""
    gone = deleted_calls(data)
    out: dict[tuple[str, int], tuple[Any, ...]] = {}
    letters: set[Any] = set()
    for t in data["transcript"]:
        key = (t["call_id"], t["index"])
        if _blank(t["call_id"]) or t["index"] is None:
            letters.add(key)  # read from its own stream: even a deleted row needs its key
            continue
        if _gone(t) or t["call_id"] in gone:
            continue
        sentences = t["sentence"]
        text = " ".join(s["text"] for s in sentences)
        if (
            _blank(t["call_id"])
            or t["index"] is None
            or _has_nul([text, t["topic"], t["speaker_id"], sentences])
        ):
            letters.add(key)
            continue
        out[key] = (
            t["call_id"], t["index"], t["speaker_id"], t["topic"],
            Decimal(sentences[0]["start"]) / 1000, Decimal(sentences[-1]["end"]) / 1000,
            text, sentences, t["_fivetran_synced"],
        )  # fmt: skip
    return out, letters


def call_opportunities(data: Rows) -> tuple[set[tuple[str, str]], set[Any]]:
    """(call, opportunity) links from Gong's call context, and dead-lettered keys.

    A link to an opportunity deleted in Salesforce goes; one Salesforce never had stays.
    """
    gone = deleted_calls(data)
    deleted_opportunities = {o["id"] for o in data["opportunity"] if _gone(o)}
    links: set[tuple[str, str]] = set()
    letters: set[Any] = set()
    for x in data["call_context_integration"]:
        if (
            _gone(x)
            or x["object_type"] != "Opportunity"
            or x["call_id"] in gone
            or x["object_id"] in deleted_opportunities
        ):
            continue
        if _blank(x["call_id"]) or _blank(x["object_id"]):
            letters.add((x["call_id"], x["object_id"]))
        else:
            links.add((x["call_id"], x["object_id"]))
    return links, letters


# The README's rule for HTML bodies, restated with regular expressions and the standard
# library's html module: none of the product's detection or parsing is reused.
_ELEMENTS = set(
    " ".join(
        [
            "a b i p q s u br dd dl dt em h1 h2 h3 h4 h5 h6 hr li ol rp rt td th tr tt ul",
            "bdi bdo big col del dfn div img ins kbd map nav pre sub sup var wbr",
            "abbr area base body cite code data font form head html link main mark menu meta",
            "ruby samp slot span time aside audio embed input label meter small style table",
            "tbody tfoot thead title section track video",
            "button canvas center dialog figure footer header hgroup iframe legend object",
            "option output script search select source strike strong summary",
            "address article caption details picture progress template textarea colgroup",
            "datalist fieldset noscript optgroup blockquote figcaption",
        ]
    ).split()
)
_INLINE_NAMES = (
    "a|abbr|b|bdi|bdo|big|cite|code|data|dfn|em|font|i|kbd|mark|q|s|samp|small|span|strike"
    "|strong|sub|sup|time|tt|u|var"
)


def _looks_like_html(body: str) -> bool:
    start = body[:65536]
    if re.search(r"<!doctype\s+html|<!--", start, re.I):
        return True
    names = re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)[\s/>]", start)
    return any(n.lower() in _ELEMENTS for n in names)


def email_text(body: str) -> str:
    """Plain text of a body: for HTML, the visible text only; whitespace collapsed."""
    body = body.replace("\x00", "")
    if _looks_like_html(body):
        flags = re.I | re.S
        body = re.sub(r"<!--.*?(?:-->|\Z)", "", body, flags=re.S)
        body = re.sub(r"<![^>]*>", "", body)
        body = re.sub(r"<head\b[^>]*>.*?(?:</head\s*>|(?=<body\b)|\Z)", "", body, flags=flags)
        body = re.sub(r"<(script|style|title)\b[^>]*>.*?(?:</\1\s*>|\Z)", "", body, flags=flags)
        body = re.sub(rf"</?(?:{_INLINE_NAMES})\b[^>]*>", "", body, flags=re.I)
        body = html.unescape(re.sub(r"</?[a-zA-Z][^>]*>", " ", body))
    return " ".join(body.split())


def _first_500(text: str | None) -> str | None:
    """500 characters, backing off so a combining accent stays with its letter."""
    import unicodedata

    if text is None or len(text) <= 500:
        return text
    cut = 500
    while cut and unicodedata.combining(text[cut]):
        cut -= 1
    return text[:cut]


def _address(raw: str | None) -> str:
    """An email address as stored: NULs stripped, trimmed, lower-cased ('' is none)."""
    return (raw or "").replace("\x00", "").strip().lower()


def emails(data: Rows) -> dict[str, tuple[Any, ...]]:
    """gong_email_id -> expected emails row."""
    rank = {"to": 0, "cc": 1, "bcc": 2}
    recipients: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in data["email_recipient"]:
        if not _gone(r) and (address := _address(r["email_address"])):
            recipients[r["email_id"]].append((rank.get((r["type"] or "").lower(), 3), address))
    senders: dict[str, list[str]] = defaultdict(list)
    for s in data["email_sender"]:
        if not _gone(s) and (address := _address(s["email_address"])):
            senders[s["email_id"]].append(address)
    out: dict[str, tuple[Any, ...]] = {}
    for e in data["email"]:
        if _gone(e) or _blank(e["id"]):
            continue
        ordered = list(dict.fromkeys(a for _, a in sorted(recipients[e["id"]])))
        text = email_text(e["body"]) if e["body"] is not None else None
        opportunity = None
        for system in e.get("context") or []:
            for obj in system["objects"]:
                if opportunity is None and obj["objectType"] == "Opportunity":
                    opportunity = obj["objectId"]
        metadata = {
            "body": e["body"].replace("\x00", "") if e["body"] else e["body"],
            "thread_id": e["thread_id"],
            "direction": e["direction"],
            "headers": e["headers"],
            "context": e.get("context"),
        }
        out[e["id"]] = (
            e["id"], e["subject"], e["sent_at"], min(senders[e["id"]], default=None), ordered,
            _first_500(text), opportunity, metadata, e["_fivetran_synced"],
        )  # fmt: skip
    return out


def opportunities(data: Rows) -> dict[str, tuple[Any, ...]]:
    """gong_opportunity_id -> expected opportunities row."""
    accounts = {a["id"]: a for a in data["account"] if not _gone(a)}
    users = {u["id"]: u for u in data["user"] if not _gone(u)}
    out: dict[str, tuple[Any, ...]] = {}
    for o in data["opportunity"]:
        if _gone(o) or _blank(o["id"]):
            continue
        owner = users.get(o["owner_id"], {}).get("email")
        out[o["id"]] = (
            o["id"], o["name"], o["account_id"], accounts.get(o["account_id"], {}).get("name"),
            owner and owner.lower(), o["stage_name"], o["close_date"], o["amount"], None,
            o["system_modstamp"],
        )  # fmt: skip
    return out


def contacts(data: Rows) -> tuple[dict[str, tuple[Any, ...]], set[Any]]:
    """contact_id -> expected contacts row, and the keys that must be dead letters."""
    accounts = {a["id"]: a for a in data["account"] if not _gone(a)}
    users = {u["id"]: u for u in data["user"] if not _gone(u)}
    out: dict[str, tuple[Any, ...]] = {}
    letters: set[Any] = set()
    for c in data["contact"]:
        if _blank(c["id"]):
            letters.add(c["id"])  # read from its own stream: even a deleted row needs its key
            continue
        if _gone(c):
            continue
        owner = users.get(c["owner_id"], {}).get("email")
        email = c["email"]
        row = (
            c["id"], c["account_id"], accounts.get(c["account_id"], {}).get("name"),
            owner and owner.lower(), c["name"], c["first_name"], c["last_name"],
            email and email.strip().lower(), c["title"], c["phone"], c["system_modstamp"],
        )  # fmt: skip
        if any(_has_nul(v) for v in row) or _bad_time(c["system_modstamp"]):
            letters.add(c["id"])
            continue
        out[c["id"]] = row
    return out, letters

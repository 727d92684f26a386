"""The trigger message contract (DESIGN §4): decode, validate, and name the field at fault."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Mode = Literal["incremental", "full_refresh", "verify"]
MODES: tuple[Mode, ...] = ("incremental", "full_refresh", "verify")
FIELDS = ("sources", "mode", "since", "until", "ids", "fix", "sample")
MAX_IDS = 10_000
MAX_SAMPLE = 10_000


# A message for one source names it in this attribute, and each source's subscription lets
# through only the messages for it or for every source. Without it, every source's function
# received every continuation: with Cloud Run's instance limit, the busy ones answered 429,
# and each 429 spent a delivery attempt of a trigger meant for another source.
SOURCE_ATTRIBUTE = "source"


def subscription_filter(source: str) -> str:
    """The Pub/Sub subscription filter of a source's function (Pub/Sub's filter syntax)."""
    return f'NOT attributes:{SOURCE_ATTRIBUTE} OR attributes.{SOURCE_ATTRIBUTE} = "{source}"'


def attributes_for(sources: Sequence[str] | None) -> dict[str, str]:
    """The attributes of a trigger message: its one source, so only that function sees it."""
    return {SOURCE_ATTRIBUTE: sources[0]} if sources and len(sources) == 1 else {}


class BadMessage(ValueError):
    """A trigger that can never succeed; acked and dead-lettered, never retried."""


@dataclass(frozen=True)
class Trigger:
    """A validated trigger: which sources, and what kind of run."""

    sources: tuple[str, ...] | None = None  # None: every source
    mode: Mode = "incremental"
    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[str, ...] = ()
    fix: bool = False  # of a verify: repair the drift it finds
    # Of a verify: parents per table whose values are compared (None: the default). Keys
    # are always compared in full; values cost a scan of every column a target reads.
    sample: int | None = None

    def names(self, source: str) -> bool:
        """Whether this trigger asks for the given source."""
        return self.sources is None or source in self.sources

    def to_json(self) -> dict[str, Any]:
        """The message body that produces this trigger."""
        body: dict[str, Any] = {"mode": self.mode}
        if self.sources is not None:
            body["sources"] = list(self.sources)
        if self.since:
            body["since"] = self.since.isoformat()
        if self.until:
            body["until"] = self.until.isoformat()
        if self.ids:
            body["ids"] = list(self.ids)
        if self.fix:
            body["fix"] = True
        if self.sample is not None:
            body["sample"] = self.sample
        return body


def _time(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise BadMessage(f"{name}: expected an RFC 3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadMessage(f"{name}: {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise BadMessage(f"{name}: {value!r} has no UTC offset; add Z or +00:00")
    return parsed


def _sample(value: Any, mode: str) -> int:
    if mode != "verify":
        raise BadMessage('sample: only a verify samples values; add "mode": "verify"')
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAMPLE:
        raise BadMessage(f"sample: expected a whole number from 0 to {MAX_SAMPLE}, got {value!r}")
    return value


def _strings(name: str, value: Any, limit: int | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BadMessage(f"{name}: expected a list of non-empty strings")
    if limit is not None and len(value) > limit:
        raise BadMessage(f"{name}: at most {limit} entries, got {len(value)}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def parse(body: Mapping[str, Any] | Any, known_sources: Sequence[str]) -> Trigger:
    """Validate a decoded JSON message body."""
    if not isinstance(body, Mapping):
        raise BadMessage(f"message: expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadMessage(f"{unknown[0]}: unknown field; allowed: {', '.join(FIELDS)}")
    sources = None
    if "sources" in body:
        sources = _strings("sources", body["sources"])
        bad = [s for s in sources if s not in known_sources]
        if bad:
            raise BadMessage(
                f"sources: unknown source {bad[0]!r}; known: {', '.join(known_sources)}"
            )
    mode = body.get("mode", "incremental")
    if mode not in MODES:
        raise BadMessage(f"mode: {mode!r} is not one of {', '.join(map(repr, MODES))}")
    fix = body.get("fix", False)
    if not isinstance(fix, bool):
        raise BadMessage(f"fix: expected true or false, got {fix!r}")
    if fix and mode != "verify":
        raise BadMessage('fix: only a verify repairs; add "mode": "verify"')
    if mode == "verify" and any(f in body for f in ("since", "until", "ids")):
        raise BadMessage("mode: a verify compares whole tables; drop since, until and ids")
    sample = _sample(body["sample"], mode) if "sample" in body else None
    since = _time("since", body["since"]) if "since" in body else None
    until = _time("until", body["until"]) if "until" in body else None
    if since and until and since > until:
        raise BadMessage("since: must not be after until")
    ids = _strings("ids", body["ids"], MAX_IDS) if "ids" in body else ()
    if ids and (sources is None or len(sources) != 1):
        raise BadMessage("ids: name exactly one source in sources, since ids belong to one")
    return Trigger(sources, mode, since, until, ids, fix, sample)


# Real Pub/Sub leaves `data` out of a push body for a message with attributes only, and
# functions-framework then answers 400 before any code of ours runs (its
# event_conversion._is_raw_pubsub_payload requires message.data), so such a message is
# retried and dead-lettered by the platform. The emulator pushes "data": "" instead. Both are
# rejected, so the two paths end alike: one dead letter that says what to publish.
EMPTY = "data: the message is empty (attributes only); publish a JSON object, '{}' for an"
EMPTY += " incremental run of every source"


def decode(data: str | bytes | None, known_sources: Sequence[str]) -> Trigger:
    """Decode a Pub/Sub message's base64 data and validate it."""
    if data is None or data in ("", b""):
        raise BadMessage(EMPTY)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("data: not valid base64") from None
    if not raw.strip():
        raise BadMessage(EMPTY)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"data: not valid JSON ({exc})") from None
    return parse(body, known_sources)


def reporter(
    data: str | bytes | None, attributes: Mapping[str, str], known_sources: Sequence[str]
) -> str:
    """The one source whose function dead-letters a malformed message.

    Every source's function receives every trigger; were each to reject it, one bad message
    would give one dead letter (and one alert) per source. The source the message is for
    reports it: its `source` attribute, else the first known source its body names, else the
    first source.
    """
    if attributes.get(SOURCE_ATTRIBUTE) in known_sources:
        return attributes[SOURCE_ATTRIBUTE]
    try:
        body = json.loads(base64.b64decode(data or "", validate=True))
    except (binascii.Error, ValueError):
        body = None
    named = body.get("sources") if isinstance(body, Mapping) else None
    for name in named if isinstance(named, list) else []:
        if name in known_sources:
            return str(name)
    return known_sources[0]


def message_of(event: Any) -> tuple[Any, dict[str, str]]:
    """The Pub/Sub message a push CloudEvent carries: its data (base64) and attributes."""
    data = event.data if isinstance(event.data, Mapping) else {}
    message = data.get("message") or {}
    return message.get("data"), dict(message.get("attributes") or {})

"""Rejected records: what they are, and where they go."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gong_sync.postgres import Connection
from gong_sync.row_mapping import json_default, map_strings

log = logging.getLogger(__name__)

# Neither Postgres (text, jsonb) nor Pub/Sub (UTF-8 attributes) can hold a NUL or a surrogate
# code point; a record rejected for holding one must still be storable, visibly marked.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The ledger's unique index takes at most 2704 bytes an entry: a long key or reason failed the
# page's transaction on every run. The record itself keeps every value whole.
_KEY_VALUE_BYTES = 300
_REASON_BYTES = 600


def record_key(values: Sequence[Any]) -> str:
    """A row's key as a dead letter records it; verify matches BigQuery keys on this form."""
    return json.dumps(list(values), default=str, ensure_ascii=False)


def printable(value: Any) -> Any:
    """The value with NUL shown as U+2400 (␀) and surrogates as U+FFFD (�), keys included."""
    return map_strings(
        value,
        lambda text: _UNSTORABLE.sub(lambda m: "\u2400" if m.group() == "\x00" else "\ufffd", text),
    )


def _clip(text: str, limit: int) -> str:
    """The text cut to at most `limit` UTF-8 bytes, saying so when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return f"{data[:limit].decode('utf-8', 'ignore')}... ({len(data)} bytes)"


def _clip_key(key: str) -> str:
    """A JSON key with each long value clipped; a key that needs none is returned as is."""
    if len(key) * 4 <= _KEY_VALUE_BYTES:  # 4 bytes a character at most
        return key
    try:
        values = json.loads(key)
    except ValueError:
        return _clip(key, _KEY_VALUE_BYTES)
    if not isinstance(values, list):
        return _clip(key, _KEY_VALUE_BYTES)
    clipped = [_clip(v, _KEY_VALUE_BYTES) if isinstance(v, str) else v for v in values]
    # Unchanged keys keep their exact text: the ledger matches re-reads on it.
    return key if clipped == values else json.dumps(clipped, ensure_ascii=False)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be synced, with its key and the reason."""

    source: str
    stream: str
    target: str
    key: str  # JSON of the source key values, so a null key is still shown
    reason: str
    record: Mapping[str, Any]
    # Identifies the record's content; bookkeeping (sync times, cursors) is left out, so a
    # Fivetran re-import of a still-bad row is not news.
    fingerprint: str = ""
    run_id: str = ""  # the run that rejected it: its log lines carry the same label

    def __post_init__(self) -> None:
        # The key and reason may quote the bad value; every sink must be able to carry them.
        object.__setattr__(self, "key", _clip_key(printable(self.key)))
        object.__setattr__(self, "reason", _clip(printable(self.reason), _REASON_BYTES))

    def record_json(self) -> str:
        """The record as JSON that Postgres jsonb and Pub/Sub both accept."""
        return json.dumps(printable(self.record), default=json_default, sort_keys=True)


class DeadLetterSink(Protocol):
    """Where rejected records go; called before the page's transaction commits."""

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Hand over a batch of dead letters."""


class PostgresDeadLetterSink:
    """The local sink: rows in `dead_letters`, written in the page's own transaction."""

    def __init__(self, conn: Connection) -> None:
        """Write through this connection, so letters commit or roll back with the page."""
        self.conn = conn

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Insert the letters; a letter seen before only bumps its count."""
        self.record(letters)

    def record(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Insert the letters and return those never seen before (re-reads are not news)."""
        if not letters:
            return []
        cur = self.conn.cursor()
        new: list[DeadLetter] = []
        for letter in letters:
            record = letter.record_json()
            cur.execute(
                "INSERT INTO dead_letters"
                " (source, stream, target, record_key, reason, record, record_sha)"
                " VALUES (%s, %s, %s, %s, %s, CAST(%s AS jsonb), %s)"
                " ON CONFLICT (source, target, record_key, reason, record_sha)"
                " DO UPDATE SET last_seen = now(), times_seen = dead_letters.times_seen + 1"
                " RETURNING times_seen",
                (
                    letter.source,
                    letter.stream,
                    letter.target,
                    letter.key,
                    letter.reason,
                    record,
                    letter.fingerprint or hashlib.sha256(record.encode()).hexdigest(),
                ),
            )
            row = cur.fetchone()
            if row is not None and row[0] == 1:
                new.append(letter)
        log.warning(
            "%d record(s) dead-lettered, %d of them new",
            len(letters),
            len(new),
            extra={"fields": {"dead_letters": len(letters), "first_reason": letters[0].reason}},
        )
        return new

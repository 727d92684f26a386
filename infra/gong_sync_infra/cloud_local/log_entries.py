"""A stand-in for Cloud Logging: a JSON line becomes a LogEntry, and a metric reads entries.

What Cloud Logging does with a JSON line on a Cloud Run revision's stderr (its "Structured
logging" page): `severity` becomes the entry's severity, `logging.googleapis.com/labels` its
labels, every other field stays in `jsonPayload`. The filters are the subset of the logging
query language our log-based metrics use: `a.b="v"`, `a.b:*` (present), `severity>=LEVEL`,
joined by AND; the extractors are `EXTRACT(a.b)`.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT",
               "EMERGENCY"]  # fmt: skip
_LABELS = "logging.googleapis.com/labels"
_TERM = re.compile(r'^([\w.]+)(?:="([^"]*)"|:\*|>=(\w+))$')


def entry(line: str) -> dict[str, Any]:
    """The LogEntry Cloud Logging makes of one JSON line a gen2 function wrote."""
    payload = json.loads(line)
    severity = str(payload.pop("severity", "DEFAULT")).upper()
    return {
        "resource": {"type": "cloud_run_revision"},
        "severity": severity,
        "labels": payload.pop(_LABELS, {}),
        "jsonPayload": payload,
    }


def _field(log_entry: dict[str, Any], path: str) -> Any:
    value: Any = log_entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def matches(query: str, log_entry: dict[str, Any]) -> bool:
    """Whether an entry passes a filter of the subset above."""
    for term in query.split(" AND "):
        found = _TERM.match(term.strip())
        if found is None:
            raise ValueError(f"unsupported filter term {term!r}")
        path, text, level = found.groups()
        value = _field(log_entry, path)
        if level is not None:
            if _SEVERITIES.index(str(value)) < _SEVERITIES.index(level):
                return False
        elif text is not None:
            if value is None or str(value) != text:
                return False
        elif value is None:
            return False
    return True


def extract(extractor: str, log_entry: dict[str, Any]) -> Any:
    """The value of `EXTRACT(path)` for an entry."""
    found = re.fullmatch(r"EXTRACT\(([\w.]+)\)", extractor)
    if found is None:
        raise ValueError(f"unsupported extractor {extractor!r}")
    return _field(log_entry, found[1])

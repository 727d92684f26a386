"""The registry of sources, by name."""

from __future__ import annotations

from gong_sync.declarations import Source
from gong_sync.sources import calls, contacts, emails, opportunities

SOURCES: dict[str, Source] = {
    s.name: s for s in (calls.SOURCE, emails.SOURCE, opportunities.SOURCE, contacts.SOURCE)
}


def get(name: str) -> Source:
    """The source called name, or a ValueError listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None

"""Encoding values for Postgres COPY in text format."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_ARRAY_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def field(text: str | None) -> str:
    """Escape one field's text form (None becomes NULL)."""
    return NULL if text is None else text.translate(_ESCAPES)


def array_literal(items: Sequence[str | None]) -> str:
    """A Postgres array literal for text[] with every element quoted."""
    parts = ("NULL" if i is None else '"' + i.translate(_ARRAY_ESCAPES) + '"' for i in items)
    return "{" + ",".join(parts) + "}"


def line(fields: Sequence[str]) -> str:
    """Join already-escaped fields into one COPY line."""
    return "\t".join(fields) + "\n"


def chunks(lines: Iterable[str], size: int = 2000) -> Iterator[bytes]:
    """Group lines into byte chunks so the client formats while the server parses."""
    batch: list[str] = []
    for text in lines:
        batch.append(text)
        if len(batch) >= size:
            yield "".join(batch).encode("utf-8")
            batch.clear()
    if batch:
        yield "".join(batch).encode("utf-8")

"""A target cut down to the columns one touch feeds, reading only the tables those need.

BigQuery on-demand bills every column a query names, over the whole table: deriving an
email again because a recipient changed must not name (and pay for) every email body.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Sequence

from gong_sync.declarations import Target

_JOIN = re.compile(r"\b(LEFT\s+)?JOIN\b", re.IGNORECASE)
_ALIAS = re.compile(r"^\s*(?:\{\w+\}|\(.*\))\s+AS\s+(\w+)\s+ON\b", re.IGNORECASE | re.DOTALL)
_ALIAS_REF = re.compile(r"\b(\w+)\.`?\w")


def _depth(text: str, end: int) -> int:
    return text.count("(", 0, end) - text.count(")", 0, end)


def _segments(from_sql: str) -> list[str] | None:
    """The FROM clause split before each top-level LEFT JOIN; None if it has another join."""
    cuts: list[int] = []
    for found in _JOIN.finditer(from_sql):
        if _depth(from_sql, found.start()) != 0:
            continue
        if not found.group(1):
            return None  # an inner join filters rows: it can never be left out
        cuts.append(found.start())
    bounds = [0, *cuts, len(from_sql)]
    return [from_sql[a:b] for a, b in itertools.pairwise(bounds)]


def _aliases_in(texts: Iterable[str]) -> set[str]:
    return {alias for text in texts for alias in _ALIAS_REF.findall(text)}


def prune(from_sql: str, uses: Iterable[str]) -> str:
    """from_sql without the LEFT JOINs that neither `uses` nor a kept join's ON refers to."""
    segments = _segments(from_sql)
    if segments is None or len(segments) == 1:
        return from_sql
    joins: dict[str, str] = {}
    for segment in segments[1:]:
        found = _ALIAS.match(_JOIN.sub("", segment, count=1))
        if found is None:
            return from_sql  # a join we cannot read is kept, with everything else
        joins[found.group(1)] = segment
    needed = _aliases_in(uses)
    while True:  # a kept join's ON may name another alias (speakers' users by participant)
        more = _aliases_in(joins[a] for a in needed if a in joins) - needed
        if not more:
            break
        needed |= more
    kept = [segments[0], *(seg for alias, seg in joins.items() if alias in needed)]
    return " ".join(seg.strip() for seg in kept)


def narrowed(target: Target, feeds: Sequence[str]) -> Target:
    """The target reduced to its key and the fed columns, with the joins they need."""
    names = {c.name for c in target.columns}
    unknown = [f for f in feeds if f not in names or f in target.key]
    if unknown or target.key != (target.parent,) or target.children:
        raise ValueError(
            f"target {target.table} cannot be derived narrowly for {', '.join(feeds)}: a touch"
            " feeds non-key columns of a target with one row per parent and no children"
        )
    columns = tuple(c for c in target.columns if c.name in target.key or c.name in feeds)
    inputs = tuple(c for c in target.inputs if c.name in feeds)
    uses = [c.sql for c in (*columns, *inputs) if c.sql] + [target.deleted_sql]
    return dataclasses.replace(
        target,
        columns=columns,
        inputs=inputs,
        from_sql=prune(target.from_sql, uses),
        metadata_alias=None,
        # A transform only runs for a fed column it supplies, on the inputs named like it.
        transform=target.transform if any(c.sql is None for c in columns) else None,
    )

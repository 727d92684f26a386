"""A page's target rows, grouped into the units they replace in Postgres, and their rejects."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gong_sync import bigquery_sql as sql
from gong_sync.arrow_lines import page_fields
from gong_sync.arrow_rows import ArrowRows, Row, column
from gong_sync.dead_letters import DeadLetter, record_key
from gong_sync.declarations import RowError, Target
from gong_sync.row_mapping import RowMapper

Unit = tuple[str, ...]


@dataclass
class Batch:
    """Target rows for a set of units, ready to replace in Postgres.

    A unit is a row's own key, or a parent whose whole set of rows is replaced at once.
    """

    target: Target
    unit_cols: tuple[str, ...]
    lines: dict[Unit, str] = field(default_factory=dict)  # key -> COPY line
    units: set[Unit] = field(default_factory=set)
    kept: set[Unit] = field(default_factory=set)  # units not to prune (bad rows)
    # In a set replaced per parent: the keys of bad rows, whose stored rows stay as they are
    # while the rest of the set is replaced (a sibling that is gone is still deleted).
    kept_keys: set[Unit] = field(default_factory=set)

    def replaced_units(self) -> list[Unit]:
        """The units whose stored rows this batch replaces: all but those it must keep."""
        return [u for u in self.units if u not in self.kept]


def fill(batch: Batch, mapper: RowMapper, rows: Sequence[Row]) -> list[tuple[Row, str]]:
    """Map rows into the batch; deleted rows only name their unit. Returns the rejected rows.

    A row is looked at (converted, where the page was read as Arrow) only when Arrow could
    not encode it whole: its key, its line or its rejection are the mapper's.
    """
    target = batch.target
    by_parent = batch.unit_cols != target.key
    parent_at = target.key.index(target.parent)
    rejected: list[tuple[Row, str]] = []
    page = page_fields(target, rows)  # None: the mapper encodes every row
    keys = page.keys if page is not None else None
    flags = _deleted_flags(rows)
    for i in range(len(rows)):
        try:
            key = (keys[i] if keys is not None else None) or mapper.key_of(rows[i])
            unit = (key[parent_at],) if by_parent else key
            if flags[i]:
                batch.units.add(unit)
                batch.lines.pop(key, None)
                continue
            if page is not None and page.clean[i]:
                line = mapper.map_page_row(rows, page, i)
            else:
                key, line = mapper.map(rows[i])
        except RowError as exc:
            row = rows[i]
            rejected.append((row, str(exc)))
            # Keep what is stored for this row rather than prune a row whose newest version
            # we could not read. Only that row: keeping its whole set kept siblings that are
            # gone (a link to an opportunity deleted in Salesforce stayed for good).
            with contextlib.suppress(RowError):  # no key: nothing stored to keep
                (batch.kept_keys if by_parent else batch.kept).add(mapper.key_of(row))
            if not by_parent and row.get(target.parent) is not None:
                batch.kept.add((str(row[target.parent]),))
            continue
        batch.units.add(unit)
        # Later rows win: pages are in cursor order, so this keeps the newest version.
        batch.lines[key] = line
    return rejected


def _deleted_flags(rows: Sequence[Row]) -> Sequence[Any]:
    """Each row's deletion flag (a page without the column has none deleted)."""
    if isinstance(rows, ArrowRows):
        if sql.DELETED not in rows.table.column_names:
            return [None] * len(rows)
        return column(rows, sql.DELETED)
    return [row.get(sql.DELETED) for row in rows]


def dead_letter(
    source: str, stream: str, target: Target, row: Row, reason: str, run_id: str
) -> DeadLetter:
    """A rejected row as a dead letter: its key, the reason, and a fingerprint of its content.

    The fingerprint leaves out bookkeeping, so the same bad content re-read on a later run
    is recognised (and alerted on once).
    """
    key = record_key([row.get(k) for k in target.key])
    record = {k: v for k, v in row.items() if not k.startswith(sql.KEY_PREFIX)}
    bookkeeping = {c.name for c in target.columns if not c.compare} | {sql.CURSOR, sql.DELETED}
    content = {k: v for k, v in record.items() if k not in bookkeeping}
    fingerprint = hashlib.sha256(
        json.dumps(content, default=str, sort_keys=True).encode()
    ).hexdigest()
    return DeadLetter(source, stream, target.table, key, reason, record, fingerprint, run_id=run_id)

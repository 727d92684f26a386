"""Replace sets of target rows fast: COPY into a temp table, one guarded upsert, one delete."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from gong_sync import copy_text
from gong_sync.declarations import Target
from gong_sync.errors import sqlstate
from gong_sync.postgres import Connection


def ident(name: str) -> str:
    """Quote an identifier that comes from a declaration (never from data)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"refusing unusual identifier {name!r}")
    return f'"{name}"'


def _cols(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + ident(n) for n in names)


@dataclass
class WriteStats:
    """What one replace did."""

    upserted: int = 0
    unchanged: int = 0
    deleted: int = 0


class TargetWriter:
    """Writes one target table; `units` name the sets (keys or parents) being replaced."""

    def __init__(
        self,
        conn: Connection,
        target: Target,
        children: Sequence[Target],
        stage_suffix: str = "",
    ) -> None:
        """Prepare the SQL for a target and the children that follow its deletes.

        A writer of some columns only (a narrowed target) needs a stage of its own: the suffix.
        """
        self.conn = conn
        self._units_ready: set[str] = set()
        self._stage_ready = False
        # None until the first write checks: COPY straight into a table that was empty.
        self._direct: bool | None = None
        # What this writer has put in the table since: the greatest parent whose set it wrote,
        # and whether it wrote rows by their own keys (those can belong to any parent).
        self._top_set: tuple[str, ...] | None = None
        self._wrote_keys = False
        self.target = target
        self.children = children
        t = target
        self.columns = t.column_names
        self.stage = ident(f"_stage_{t.table}{stage_suffix}")
        table = ident(t.table)
        updatable = [c for c in self.columns if c not in t.key]
        compared = [c.name for c in t.columns if c.compare and c.name not in t.key] + (
            ["metadata"] if t.metadata_alias else []
        )
        self.create_stage = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} AS"
            f" SELECT {_cols(self.columns)} FROM {table} WITH NO DATA"
        )
        self.compared = compared
        insert = (
            f"INSERT INTO {table} AS t ({_cols(self.columns)})"
            f" SELECT {_cols(self.columns)} FROM {self.stage} ON CONFLICT ({_cols(t.key)})"
        )
        if not updatable:  # a link table: the key is the whole row
            self.upsert = f"{insert} DO NOTHING"
        else:
            self.upsert = (
                f"{insert} DO UPDATE SET "
                + ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for c in updatable)
                # The guard: a re-import that changes nothing writes no tuple at all.
                + f" WHERE ({_cols(compared, 't.')}) IS DISTINCT FROM"
                f" ({_cols(compared, 'EXCLUDED.')})"
            )

    def _stage(self, lines: Sequence[str]) -> None:
        cur = self.conn.cursor()
        if not self._stage_ready:
            cur.execute(self.create_stage)
            self._stage_ready = True
        cur.execute(f"TRUNCATE {self.stage}")
        if lines:
            cur.execute(
                f"COPY {self.stage} ({_cols(self.columns)}) FROM STDIN",
                stream=copy_text.chunks(lines),
            )

    def _copy_direct(self, lines: Sequence[str]) -> bool:
        """COPY rows straight into a table this run found empty; False if a key repeats.

        Bare COPY is about twice as fast as staging plus an upsert. It is safe while the
        keys are new, and a repeated key (unique violation) rolls back to the savepoint and
        switches this writer to the upsert for good.
        """
        cur = self.conn.cursor()
        table = ident(self.target.table)
        if self._direct is None:
            cur.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})")
            self._direct = bool(cur.fetchall()[0][0])
        if not self._direct:
            return False
        cur.execute("SAVEPOINT direct_copy")
        try:
            cur.execute(
                f"COPY {table} ({_cols(self.columns)}) FROM STDIN",
                stream=copy_text.chunks(lines),
            )
        except Exception as exc:
            if sqlstate(exc) != "23505":  # unique_violation
                raise
            cur.execute("ROLLBACK TO SAVEPOINT direct_copy")
            self._direct = False
            return False
        cur.execute("RELEASE SAVEPOINT direct_copy")
        return True

    def changed(self, lines: Sequence[str]) -> list[tuple[str, ...]]:
        """Keys whose stored row differs from `lines` in any compared column; writes nothing."""
        self._stage(lines)
        if not self.compared:
            return []
        match = " AND ".join(f"s.{ident(c)} = t.{ident(c)}" for c in self.target.key)
        cur = self.conn.cursor()
        cur.execute(
            f"SELECT {_cols(self.target.key, 's.')} FROM {self.stage} AS s"
            f" JOIN {ident(self.target.table)} AS t ON {match}"
            f" WHERE ({_cols(self.compared, 's.')}) IS DISTINCT FROM ({_cols(self.compared, 't.')})"
        )
        return [tuple(str(v) for v in row) for row in cur.fetchall()]

    def update(
        self, lines: Mapping[tuple[str, ...], str]
    ) -> tuple[WriteStats, set[tuple[str, ...]]]:
        """Set this writer's columns of the stored rows to `lines`; never inserts a row.

        Returns the keys with no stored row to update.
        """
        self._stage(list(lines.values()))
        if not lines:
            return WriteStats(), set()
        key, table = self.target.key, ident(self.target.table)
        match = " AND ".join(f"s.{ident(c)} = t.{ident(c)}" for c in key)
        cur = self.conn.cursor()
        cur.execute(
            f"SELECT {_cols(key, 's.')} FROM {self.stage} AS s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {match})"
        )
        missing = {tuple(str(v) for v in row) for row in cur.fetchall()}
        fed = [c for c in self.columns if c not in key]
        cur.execute(
            f"UPDATE {table} AS t SET "
            + ", ".join(f"{ident(c)} = s.{ident(c)}" for c in fed)
            + f" FROM {self.stage} AS s WHERE {match}"
            f" AND ({_cols(fed, 't.')}) IS DISTINCT FROM ({_cols(fed, 's.')})"
        )
        updated = max(cur.rowcount, 0)
        return WriteStats(updated, len(lines) - len(missing) - updated), missing

    def _units_table(self, unit_cols: Sequence[str]) -> str:
        name = ident(f"_units_{self.target.table}_{len(unit_cols)}")
        if name not in self._units_ready:
            self.conn.cursor().execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {name} AS"
                f" SELECT {_cols(unit_cols)} FROM {ident(self.target.table)} WITH NO DATA"
            )
            self._units_ready.add(name)
        return name

    def replace(
        self,
        lines: Mapping[tuple[str, ...], str],
        units: Sequence[tuple[str, ...]],
        unit_cols: Sequence[str],
        keep: Collection[tuple[str, ...]] = (),
    ) -> WriteStats:
        """Make the rows of every unit exactly `lines` (key -> COPY line); the caller commits.

        Stored rows with a key in `keep` (rows that could not be read) stay as they are.
        """
        by_key = tuple(unit_cols) == self.target.key
        if by_key:
            # A unit that is its own live row has nothing to delete or cascade; leaving it
            # out spares a backfill page the whole delete pass.
            units = [u for u in units if u not in lines]
            self._wrote_keys = self._wrote_keys or bool(lines)
        elif lines and self._new_sets(units) and self._copy_direct(list(lines.values())):
            self._top_set = max(units)
            return WriteStats(upserted=len(lines))
        elif units:
            top = max(units)
            self._top_set = top if self._top_set is None else max(self._top_set, top)
        stats = self._write(lines, by_key, bool(units), keep)
        units_table = self._key_table(unit_cols, units)
        if not units:
            return stats
        cur = self.conn.cursor()
        table = ident(self.target.table)
        match_units = " AND ".join(f"t.{ident(c)} = u.{ident(c)}" for c in unit_cols)
        match_stage = " AND ".join(f"s.{ident(c)} = t.{ident(c)}" for c in self.target.key)
        cur.execute(
            f"DELETE FROM {table} AS t USING {units_table} AS u WHERE {match_units}"
            f" AND NOT EXISTS (SELECT 1 FROM {self.stage} AS s WHERE {match_stage})"
        )
        stats.deleted = max(cur.rowcount, 0)
        # Also when nothing was deleted here: children synced before their (now deleted)
        # parent ever arrived must follow it too; NOT EXISTS protects live parents.
        if self.children and self.target.parent in unit_cols:
            stats.deleted += self._cascade(units_table)
        return stats

    def _new_sets(self, units: Sequence[tuple[str, ...]]) -> bool:
        """Whether no stored row can belong to these parents, once the table was found empty.

        Then their sets need no stage, upsert or delete: a sweep writes parents in order, each
        once, so every batch of it is past the greatest parent this writer wrote before. A
        target with children still needs its cascade, which only the delete pass runs.
        """
        if self.children or self._wrote_keys or not units or self._direct is False:
            return False
        return self._top_set is None or min(units) > self._top_set

    def _write(
        self,
        lines: Mapping[tuple[str, ...], str],
        by_key: bool,
        deletes: bool,
        keep: Collection[tuple[str, ...]],
    ) -> WriteStats:
        """Upsert the rows (or COPY them into a table found empty); stage what stays."""
        stats = WriteStats()
        rows = list(lines.values())
        # Only where each unit is its own row: a set replaced per parent needs the stage.
        if rows and by_key and self._copy_direct(rows):
            stats.upserted = len(rows)
            if deletes:
                self._stage([])  # the delete that follows must not see an earlier page's rows
            return stats
        self._stage(rows)
        keep = [k for k in keep if k not in lines]  # a good row of the same key wins
        if keep:
            self._stage_stored(keep)
        if rows:
            cur = self.conn.cursor()
            cur.execute(self.upsert)
            stats.upserted = max(cur.rowcount, 0)
            stats.unchanged = len(rows) - stats.upserted
        return stats

    def _key_table(self, cols: Sequence[str], keys: Sequence[tuple[str, ...]]) -> str:
        """The temp table of key tuples over these columns, holding exactly `keys`."""
        table = self._units_table(cols)
        cur = self.conn.cursor()
        cur.execute(f"TRUNCATE {table}")
        if keys:
            cur.execute(
                f"COPY {table} ({_cols(cols)}) FROM STDIN",
                stream=copy_text.chunks(
                    copy_text.line([copy_text.field(v) for v in key]) for key in keys
                ),
            )
        return table

    def stored(self, keys: Sequence[tuple[str, ...]]) -> set[tuple[str, ...]]:
        """Those of these keys (as text) that have a row in the table."""
        if not keys:
            return set()
        keys_table = self._key_table(self.target.key, keys)
        match = " AND ".join(f"t.{ident(c)} = k.{ident(c)}" for c in self.target.key)
        cur = self.conn.cursor()
        cur.execute(
            f"SELECT {_cols(self.target.key, 'k.')} FROM {keys_table} AS k"
            f" WHERE EXISTS (SELECT 1 FROM {ident(self.target.table)} AS t WHERE {match})"
        )
        return {tuple(str(v) for v in row) for row in cur.fetchall()}

    def _stage_stored(self, keys: Sequence[tuple[str, ...]]) -> None:
        """Add the stored rows of these keys to the stage, so the delete spares them."""
        keys_table = self._key_table(self.target.key, keys)
        cur = self.conn.cursor()
        match = " AND ".join(f"t.{ident(c)} = k.{ident(c)}" for c in self.target.key)
        cur.execute(
            f"INSERT INTO {self.stage} ({_cols(self.columns)})"
            f" SELECT {_cols(self.columns, 't.')} FROM {ident(self.target.table)} AS t"
            f" JOIN {keys_table} AS k ON {match}"
        )

    def _cascade(self, units_table: str) -> int:
        """Delete children whose parent row no longer exists."""
        parent = ident(self.target.parent)
        deleted = 0
        cur = self.conn.cursor()
        for child in self.children:
            cur.execute(
                f"DELETE FROM {ident(child.table)} AS c USING {units_table} AS u"
                f" WHERE c.{ident(child.parent)} = u.{parent}"
                f" AND NOT EXISTS (SELECT 1 FROM {ident(self.target.table)} AS p"
                f" WHERE p.{parent} = c.{ident(child.parent)})"
            )
            deleted += max(cur.rowcount, 0)
        return deleted

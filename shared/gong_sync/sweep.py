"""A touched target derived for all its parents by one read in parent order, after a full read.

A backfill reads every row of call_speaker, so it notes every call as a parent of
call_speakers. Deriving those DERIVE_BATCH at a time costs a query per 10,000 calls, and on
BigQuery each bills a scan of every table the derivation joins: a hundred scans at a million
calls. Once the touching stream has been read in full in this run, every parent is waiting,
so reading the whole target once, in parent order, gives the same sets from one query per
`page_size * pages_per_query` rows. A set is still replaced whole: rows are cut into batches
only between parents, and a parent that a query's LIMIT cuts short is read again by the next.
Parents with no live row left (and a NULL parent) stay noted for the keyed derivation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from gong_sync import arrow_rows, pending
from gong_sync import bigquery_sql as sql
from gong_sync.arrow_rows import Row
from gong_sync.bigquery_reader import OutOfTime
from gong_sync.dead_letters import DeadLetter
from gong_sync.declarations import Source, Stream, Target
from gong_sync.write_behind import WriteBehind

if TYPE_CHECKING:
    from gong_sync.derivations import Derivations
    from gong_sync.engine import SourceRun

log = logging.getLogger(__name__)

Start = tuple[Literal[">=", ">"], str] | None  # where the next query starts: after which parent


def base_stream(source: Source, target: Target) -> Stream | None:
    """The stream a touched target's rows come from (call_speaker for call_speakers), if any."""
    for stream in source.streams:
        if stream.table == target.base_table and stream.names_parents_of(target.table):
            return stream
    return None


def sweeping_stream(run: SourceRun, target: Target) -> Stream | None:
    """That stream, if this run read it in full: then every parent of target is waiting."""
    return base_stream(run.source, target) if target.table in run.complete else None


def sweep(
    derivations: Derivations, target: Target, stream: Stream, batch_parents: int, job: str
) -> bool:
    """Derive every parent of target with rows, batch_parents to a commit; False if out of time.

    job labels the queries and counts their cost, as the keyed derivation's.
    """
    run = derivations.run
    limit = run.settings.page_size * run.settings.pages_per_query
    start: Start = None
    with WriteBehind() as writes:  # a batch of sets is written while the next one maps
        sink = _Sink(derivations, target, stream, writes)
        while True:
            if run.out_of_time():
                return False
            rows = _query(run, target, start, limit, job)
            got, start = _commit_sets(sink, rows, batch_parents, limit)
            if got < limit:
                return True


def _query(
    run: SourceRun, target: Target, start: Start, limit: int, job: str
) -> Iterator[Sequence[Row]]:
    """The pages of one sweep query, from start on."""
    params: list[Any] = [sql.scalar("sweep_limit", "INT64", limit)]
    if start is not None:
        params.append(sql.scalar("parent", "STRING", start[1]))
    text = sql.sweep_query(target, run.tables, None if start is None else start[0])
    return (page.rows for page in run.query_pages(text, params, job, job))


class _Sink:
    """Where a sweep's whole sets go: mapped here, committed behind (pending.done included)."""

    def __init__(
        self, derivations: Derivations, target: Target, stream: Stream, writes: WriteBehind
    ) -> None:
        """Bind to the sweep's target, the stream its dead letters name, and its writer."""
        self.derivations = derivations
        self.target = target
        self.stream = stream
        self.writes = writes

    def commit(self, rows: Sequence[Row], parents: Sequence[str], *, budgeted: bool) -> None:
        """Replace these parents' sets by their rows and forget them, in one transaction.

        Budgeted, not once the time budget has run out (OutOfTime); committed sets stay
        derived. The budget is judged once the write before has committed, as a stream's is.
        """
        if not parents:
            return
        run = self.derivations.run
        letters: list[DeadLetter] = []
        batch = self.derivations.whole_sets(self.target, rows, parents, self.stream.table, letters)
        table = self.target.table
        self.writes.wait()
        if budgeted and run.out_of_time():
            raise OutOfTime(f"the time budget ran out deriving {table}")

        def write() -> None:
            pending.done(run.conn, run.source.name, table, parents)
            run.commit_page([batch], letters, None, None)

        self.writes.submit(write)


def _commit_sets(
    sink: _Sink, pages: Iterator[Sequence[Row]], batch_parents: int, limit: int
) -> tuple[int, Start]:
    """Commit the whole sets of one query's rows; its row count, and where the next starts.

    Rows are held as slices of their pages (Arrow stays Arrow), cut between parents.
    """
    target = sink.target
    got, sets = 0, 0
    held: list[Sequence[Row]] = []  # slices of the rows of the sets not committed yet
    parents: list[str] = []  # their parents, in order
    for rows in pages:
        got += len(rows)
        start = 0
        for i, value in enumerate(str(v) for v in arrow_rows.column(rows, target.parent)):
            if not parents or parents[-1] != value:
                if len(parents) >= batch_parents:  # a set boundary: all before it is whole
                    held.append(rows[start:i])
                    sink.commit(arrow_rows.joined(held), parents, budgeted=True)
                    held, parents, start = [], [], i
                parents.append(value)
                sets += 1
        held.append(rows[start:])
    rows = arrow_rows.joined(held)
    if got < limit:  # the result ended before its LIMIT: the last set is whole too
        sink.commit(rows, parents, budgeted=False)
        return got, None
    last = parents.pop()  # the LIMIT may have cut the last set short: read it again, whole
    values = arrow_rows.column(rows, target.parent)
    cut = len(values)
    while cut and str(values[cut - 1]) == last:  # its rows end the result
        cut -= 1
    sink.commit(rows[:cut], parents, budgeted=False)
    if sets > 1:
        return got, (">=", last)
    # One set filled the whole result: too large to sweep; the keyed derivation takes it.
    log.warning("%s: parent %r has %d rows or more; derived on its own", target.table, last, got)
    return got, (">", last)

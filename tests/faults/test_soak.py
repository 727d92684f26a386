"""Soak: many incremental runs while BigQuery changes at random underneath; exact every time."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from tests import reference
from tests.conftest import Env
from tests.factories import at, call, dml, insert, transcript
from tests.faults.matrix import CONTENT, Scenario, expected, model

RUNS = int(os.environ.get("GONG_SYNC_SOAK_RUNS", "50"))


@contextlib.contextmanager
def _replayable(run: int, seed: int) -> Iterator[None]:
    """Name the run and the seed in a failed check, so it can be replayed."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"run {run}, seed {seed}: {exc}") from None


def test_soak_of_random_mutations(env: Env, matrix: Scenario, capsys: Any) -> None:
    seed = int(os.environ.get("GONG_SYNC_SOAK_SEED", random.randrange(10**6)))
    matrix.note = f"seed {seed}, {RUNS} runs"  # shown on the summary line, to replay a failure
    with capsys.disabled():
        print(f"\nsoak: seed {seed} (replay with GONG_SYNC_SOAK_SEED={seed}), {RUNS} runs")
    rng = random.Random(seed)
    world = model()  # what BigQuery holds, kept in step with every mutation
    clock = at(0)
    next_id = 0
    hard_deleted: set[str] = set()  # since the last reconcile
    for run in range(RUNS):
        clock += timedelta(minutes=rng.choice((1, 5, 30, 90)))
        tie = clock  # several changes per run share one cursor value on purpose
        next_id = _land(env, rng, world, tie, next_id)
        _mutate(env, rng, world, tie, hard_deleted)
        assert env.sync().status == "success", f"run {run}, seed {seed}"
        with _replayable(run, seed):
            _exact_but_for_hard_deletes(env, matrix, world, hard_deleted)
        # Reconcile, as the scheduled verify --fix would: it catches the hard deletes.
        env.reconcile("calls", sample=0)
        hard_deleted.clear()
        with _replayable(run, seed):
            matrix.exact(env, world, "calls", "transcripts", orphans=False)


def _land(env: Env, rng: random.Random, world: reference.Rows, tie: Any, next_id: int) -> int:
    """New calls with monologues (some orphaned), all stamped `tie`; returns the next id."""
    new_calls, new_monologues = [], []
    for _ in range(rng.randint(1, 4)):
        cid = f"c{next_id:04d}"
        next_id += 1
        # A NULL flag is alive, as Fivetran leaves it in a flag column added later.
        flag = rng.choice((False, None))
        new_calls.append(call(cid, tie, title=f"title {rng.random():.6f}", _fivetran_deleted=flag))
        new_monologues += [
            transcript(cid, i, tie, _fivetran_deleted=rng.choice((False, None)))
            for i in range(rng.randint(0, 3))
        ]
    if rng.random() < 0.2:  # monologues of a call that never lands: orphans
        new_monologues.append(transcript(f"never{next_id:04d}", 0, tie))
    insert(env.bq, env.datasets, "call", new_calls)
    world["call"] += new_calls
    if new_monologues:
        insert(env.bq, env.datasets, "transcript", new_monologues)
        world["transcript"] += new_monologues
    return next_id


def _mutate(
    env: Env, rng: random.Random, world: reference.Rows, tie: Any, hard_deleted: set[str]
) -> None:
    """Up to three changes to live calls: edits, deletes of each kind, re-imports."""
    g, p = env.datasets["gong"], env.bq.project
    live = [c for c in world["call"] if c["_fivetran_deleted"] is not True]
    for _ in range(rng.randint(0, 3)):
        if not live:
            break
        victim = rng.choice(live)
        vid = victim["id"]
        kind = rng.choice(("update", "soft_delete", "hard_delete", "reimport", "null_flag"))
        if kind == "update":
            title = f"edited {rng.random():.6f}"
            dml(env.bq, f"UPDATE `{p}.{g}.call` SET title = @x, _fivetran_synced = @t"
                        " WHERE id = @id", x=title, t=tie, id=vid)  # fmt: skip
            victim.update(title=title, _fivetran_synced=tie)
        elif kind == "soft_delete":
            dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = TRUE,"
                        " _fivetran_synced = @t WHERE id = @id", t=tie, id=vid)  # fmt: skip
            victim.update(_fivetran_deleted=True, _fivetran_synced=tie)
        elif kind == "hard_delete":  # the cursor cannot see this one
            dml(env.bq, f"DELETE FROM `{p}.{g}.call` WHERE id = @id", id=vid)
            world["call"].remove(victim)
            hard_deleted.add(vid)
        elif kind == "null_flag":  # the flag column emptied: still alive
            dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = NULL,"
                        " _fivetran_synced = @t WHERE id = @id", t=tie, id=vid)  # fmt: skip
            victim.update(_fivetran_deleted=None, _fivetran_synced=tie)
        else:  # a Fivetran re-import: only _fivetran_synced moves
            dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_synced = @t WHERE id = @id",
                t=tie, id=vid)  # fmt: skip
            victim.update(_fivetran_synced=tie)
        live = [c for c in world["call"] if c["_fivetran_deleted"] is not True]


def _exact_but_for_hard_deletes(
    env: Env, matrix: Scenario, world: reference.Rows, hard_deleted: set[str]
) -> None:
    """The run alone is exact, but for the hard deletes: only reconcile can see those."""
    got = [row for row in env.query(CONTENT["calls"]) if row[0] not in hard_deleted]
    matrix.compare("calls before reconcile", expected("calls", world), got)
    # Orphans (monologues of hard-deleted calls) are kept until a reconcile removes them,
    # and a re-read may store them again: compare the rest.
    live = reference.live_calls(world)
    matrix.compare(
        "transcripts before reconcile",
        expected("transcripts", world, orphans=False),
        [row for row in env.query(CONTENT["transcripts"]) if row[0] in live],
    )

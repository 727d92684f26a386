"""Soak: many incremental runs while BigQuery changes at random underneath; exact every time."""

from __future__ import annotations

import os
import random
from datetime import timedelta
from typing import Any

from gong_sync import sources, verify
from gong_sync.bigquery_reader import BigQueryReader
from gong_sync.dead_letters import PostgresDeadLetterSink
from tests import reference
from tests.conftest import Env
from tests.factories import at, call, dml, insert, transcript

RUNS = int(os.environ.get("GONG_SYNC_SOAK_RUNS", "50"))


def _empty() -> reference.Rows:
    tables = ("call", "call_speaker", "call_participant", "users", "transcript",
              "call_context_integration")  # fmt: skip
    return {t: [] for t in tables}


def test_soak_of_random_mutations(env: Env, capsys: Any) -> None:
    seed = int(os.environ.get("GONG_SYNC_SOAK_SEED", random.randrange(10**6)))
    with capsys.disabled():
        print(f"\nsoak: seed {seed} (replay with GONG_SYNC_SOAK_SEED={seed}), {RUNS} runs")
    rng = random.Random(seed)
    model = _empty()  # what BigQuery holds, kept in step with every mutation
    g, p = env.datasets["gong"], env.bq.project
    clock = at(0)
    next_id = 0
    reader = BigQueryReader(env.bq, env.settings.bigquery)
    source = sources.get("calls")
    checked = 0
    for run in range(RUNS):
        clock += timedelta(minutes=rng.choice((1, 5, 30, 90)))
        tie = clock  # several changes per run share one cursor value on purpose
        new_calls, new_monologues = [], []
        for _ in range(rng.randint(1, 4)):
            cid = f"c{next_id:04d}"
            next_id += 1
            new_calls.append(call(cid, tie, title=f"title {rng.random():.6f}"))
            new_monologues += [transcript(cid, i, tie) for i in range(rng.randint(0, 3))]
        insert(env.bq, env.datasets, "call", new_calls)
        model["call"] += new_calls
        if new_monologues:
            insert(env.bq, env.datasets, "transcript", new_monologues)
            model["transcript"] += new_monologues
        live = [c for c in model["call"] if not c["_fivetran_deleted"]]
        for _ in range(rng.randint(0, 3)):
            if not live:
                break
            victim = rng.choice(live)
            kind = rng.choice(("update", "soft_delete", "hard_delete", "reimport"))
            if kind == "update":
                title = f"edited {rng.random():.6f}"
                dml(env.bq, f"UPDATE `{p}.{g}.call` SET title = @x, _fivetran_synced = @t"
                            " WHERE id = @id", x=title, t=tie, id=victim["id"])  # fmt: skip
                victim.update(title=title, _fivetran_synced=tie)
            elif kind == "soft_delete":
                dml(
                    env.bq,
                    f"UPDATE `{p}.{g}.call` SET _fivetran_deleted = TRUE,"
                    " _fivetran_synced = @t WHERE id = @id",
                    t=tie,
                    id=victim["id"],
                )
                victim.update(_fivetran_deleted=True, _fivetran_synced=tie)
            elif kind == "hard_delete":  # the cursor cannot see this one
                dml(env.bq, f"DELETE FROM `{p}.{g}.call` WHERE id = @id", id=victim["id"])
                model["call"].remove(victim)
            else:  # a Fivetran re-import: only _fivetran_synced moves
                dml(env.bq, f"UPDATE `{p}.{g}.call` SET _fivetran_synced = @t WHERE id = @id",
                    t=tie, id=victim["id"])  # fmt: skip
                victim.update(_fivetran_synced=tie)
            live = [c for c in model["call"] if not c["_fivetran_deleted"]]

        assert env.sync().status == "success", f"run {run}, seed {seed}"
        # Reconcile, as the scheduled verify --fix would: it catches the hard deletes.
        conn = env.connect()
        try:
            report = verify.verify_source(source, env.settings, reader, conn, sample=0)
        finally:
            conn.close()
        if report.drift:
            verify.fix(source, report, env.settings, reader, env.connect, PostgresDeadLetterSink)

        want, _ = reference.calls(model)
        got = env.query("SELECT gong_call_id, title FROM calls ORDER BY 1")
        assert got == [(k, want[k][1]) for k in sorted(want)], f"run {run}, seed {seed}"
        monologues, _ = reference.transcripts(model)
        got_t = env.query("SELECT gong_call_id, sequence_number FROM transcripts ORDER BY 1, 2")
        assert got_t == sorted(monologues), f"run {run}, seed {seed}"
        checked += len(got) + len(got_t)
    with capsys.disabled():
        print(f"soak: {RUNS} runs, {checked} rows checked, lost 0, duplicated 0")

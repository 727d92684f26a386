"""No value is ever formatted into SQL: every statement sent carries values as parameters or
COPY data. Checked on the wire, from Postgres's statement log and BigQuery's job list."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Env
from tests.factories import at, call, insert, transcript

SENTINEL = "sentinel-4f2a9c"


def test_no_value_reaches_the_text_of_any_sql_statement(env: Env) -> None:
    env.execute(f"ALTER DATABASE \"{env.settings.postgres.database}\" SET log_statement = 'all'")
    (data_dir,) = env.query("SHOW data_directory")[0]
    log = Path(data_dir) / "server.log"
    start = log.stat().st_size
    key = f"{SENTINEL}-call"
    insert(
        env.bq,
        env.datasets,
        "call",
        [call(key, at(0), title=f"{SENTINEL} title"), call("bad", at(0), title=f"{SENTINEL}\x00")],
    )
    insert(env.bq, env.datasets, "transcript", [transcript(key, 0, at(0))])
    stats = env.sync()
    assert stats.rows_upserted >= 2
    assert stats.rows_failed == 1
    env.sync(ids=(key,))  # the by-id path too

    with log.open(encoding="utf-8", errors="replace") as f:
        f.seek(start)
        lines = f.read().splitlines()
    statements = [x for x in lines if "LOG:  statement:" in x or "LOG:  execute" in x]
    assert any('INSERT INTO "calls"' in x for x in statements)  # the log really holds them
    assert [x for x in statements if SENTINEL in x] == []

    jobs = [j for j in env.bq.list_jobs(max_results=500) if getattr(j, "query", None)]
    ours = [j.query for j in jobs if env.datasets["gong"] in j.query]
    assert any("@since" in q or "@until" in q for q in ours)
    assert any("UNNEST(@keys)" in q for q in ours)
    assert [q for q in ours if SENTINEL in q] == []

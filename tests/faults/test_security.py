"""Security: no value is ever formatted into SQL, and no secret reaches a log.

Every statement sent carries values as parameters or COPY data, checked on the wire from
Postgres's statement log and BigQuery's job list. Secrets read from Secret Manager (a local
stand-in for its REST API) appear in no log line and no captured output.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from gong_sync import cloud_function, secret_manager, sources
from gong_sync.local.secret_manager_standin import SecretManagerStandIn
from gong_sync.log import CloudLoggingFormatter
from tests.conftest import Cloud, Env
from tests.factories import at, call, insert, transcript
from tests.faults.matrix import Scenario, model
from tests.test_functions import post, pubsub_event

SENTINEL = "sentinel-4f2a9c"
# Declared names that are also SQL words our fixed statements use as such (a type, a cast).
SQL_WORDS = {"text"}


def _unquoted_identifiers(statement: str) -> set[str]:
    """The declared names a statement on a declared table spells outside double quotes."""
    found: set[str] = set()
    for source in sources.SOURCES.values():
        for target in source.targets:
            if not re.search(rf"\b{target.table}\b", statement):
                continue  # bookkeeping (sync_status, dead_letters) is fixed SQL, not declared
            bare = re.sub(r'"[^"]*"', " ", statement)
            names = {target.table, *(c.name for c in target.columns)} - SQL_WORDS
            found |= {n for n in names if re.search(rf"\b{re.escape(n)}\b", bare)}
    return found


def test_no_value_reaches_the_text_of_any_sql_statement(env: Env, matrix: Scenario) -> None:
    env.execute(f"ALTER DATABASE \"{env.settings.postgres.database}\" SET log_statement = 'all'")
    (data_dir,) = env.query("SHOW data_directory")[0]
    log = Path(data_dir) / "server.log"
    start = log.stat().st_size
    key = f"{SENTINEL}-call"
    calls = [
        call(key, at(0), title=f"{SENTINEL} title"),
        call("bad", at(0), title=f"{SENTINEL}\x00"),
    ]
    monologues = [transcript(key, 0, at(0))]
    insert(env.bq, env.datasets, "call", calls)
    insert(env.bq, env.datasets, "transcript", monologues)
    stats = env.sync()
    assert stats.rows_upserted >= 2
    assert stats.rows_failed == 1
    env.sync(ids=(key,))  # the by-id path too

    with log.open(encoding="utf-8", errors="replace") as f:
        f.seek(start)
        lines = f.read().splitlines()
    statements = [x for x in lines if "LOG:  statement:" in x or "LOG:  execute" in x]
    assert any(re.search(r'INSERT INTO "?calls\b', x) for x in statements)  # the log holds them
    assert [x for x in statements if SENTINEL in x] == []
    # Identifiers come from the declarations, always quoted: none appears bare.
    assert sorted({name for x in statements for name in _unquoted_identifiers(x)}) == []

    jobs = [j for j in env.bq.list_jobs(max_results=500) if getattr(j, "query", None)]
    ours = [j.query for j in jobs if env.datasets["gong"] in j.query]
    assert any("@since" in q or "@until" in q for q in ours)
    assert any("UNNEST(@keys)" in q for q in ours)
    assert [q for q in ours if SENTINEL in q] == []
    matrix.exact(env, model(call=calls, transcript=monologues), "calls", "transcripts")
    matrix.letters(env, [("calls", ("bad",))])


def test_a_sentinel_secret_never_reaches_the_logs(
    cloud: Cloud,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    matrix: Scenario,
) -> None:
    """Secrets come from Secret Manager (a local REST stand-in) and appear in no log line."""
    sentinel = "sentinel-9f8e7d-password"
    hook = "http://127.0.0.1:9/hooks/sentinel-9f8e7d-webhook"
    with SecretManagerStandIn({"db": sentinel, "slack": hook}) as sm:
        monkeypatch.setenv("GONG_SYNC_SECRET_MANAGER_ENDPOINT", sm.url)
        monkeypatch.setenv("GONG_SYNC_DB_PASSWORD_SECRET", "projects/p/secrets/db")
        monkeypatch.setenv("GONG_SYNC_SLACK_WEBHOOK_SECRET", "projects/p/secrets/slack")
        secret_manager._client.cache_clear()
        cloud_function.runtime.cache_clear()
        rows = [call("c1", at(0)), call("c2", at(0)), call("bad", at(0), title="x\x00y")]
        insert(cloud.env.bq, cloud.env.datasets, "call", rows)
        with caplog.at_level(logging.DEBUG):
            assert post("sync_calls", pubsub_event({})).status_code == 200
            rt = cloud_function.runtime()
            assert rt.settings.postgres.password == sentinel  # it was really read
            assert rt.settings.cloud.slack_webhook_url == hook
            logging.getLogger("test").info("settings: %s", rt.settings)
        secret_manager._client.cache_clear()
    formatter = CloudLoggingFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    out, err = capfd.readouterr()
    assert len(lines) > 3
    for text in [*lines, out, err]:
        assert "sentinel-9f8e7d" not in text
    matrix.exact(cloud.env, model(call=rows), "calls")

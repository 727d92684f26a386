"""The `gong-sync` command as a user runs it: the embedded default, end to end, twice."""

from __future__ import annotations

import json

import pytest

from gong_sync import sources
from gong_sync.settings import ConfigError, Settings
from tests.conftest import reachable_tmp, run_cli


def _summary(stdout: str) -> dict[str, dict[str, str]]:
    """The summary table, by source."""
    header, _, *rows = stdout.strip().splitlines()
    names = header.split()
    return {r.split()[0]: dict(zip(names, r.split(), strict=True)) for r in rows}


def _number(text: str) -> int:
    return int(text.replace(",", ""))


SOURCES = set(sources.SOURCES)


@pytest.mark.services  # `make run`'s embedded Postgres and emulator
def test_run_twice_then_status_on_the_embedded_default(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """First run seeds and syncs; the second upserts nothing; status shows the watermarks."""
    local_env = {"GONG_SYNC_LOCAL_DIR": str(reachable_tmp(tmp_path_factory, "cli") / "local")}
    first = run_cli(local_env, "run")
    assert first.returncode == 0, first.stderr[-3000:]
    summary = _summary(first.stdout)
    assert set(summary) == SOURCES
    assert {row["status"] for row in summary.values()} == {"success"}
    assert _number(summary["calls"]["upserted"]) > 4000
    assert _number(summary["emails"]["upserted"]) > 90
    assert _number(summary["opportunities"]["upserted"]) > 20

    second = run_cli(local_env, "run")
    assert second.returncode == 0, second.stderr[-3000:]
    assert {row["upserted"] for row in _summary(second.stdout).values()} == {"0"}
    # One structured summary line per source run, in Cloud Logging's shape.
    lines = [json.loads(x) for x in second.stderr.splitlines() if x.startswith("{")]
    run_lines = [x for x in lines if "run" in x]
    assert sorted(x["logging.googleapis.com/labels"]["source"] for x in run_lines) == sorted(
        SOURCES
    )
    assert {x["severity"] for x in run_lines} == {"INFO"}
    assert {x["run"]["rows_upserted"] for x in run_lines} == {0}

    status = run_cli(local_env, "status", "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    by_source = {item["source"]: item for item in json.loads(status.stdout)}
    assert set(by_source) == SOURCES
    calls = by_source["calls"]
    assert calls["last_status"] == "success"
    assert calls["rows_upserted"] == 0
    assert set(calls["watermarks"]) == {s.table for s in sources.get("calls").streams}
    assert calls["watermark"] == min(calls["watermarks"].values()).replace("T", " ")
    assert calls["bytes_billed_24h"] == 0  # the emulator bills nothing
    assert calls["projected_month_usd"] == 0

    # The preflight passes on the same stack: every table and column is there.
    preflight = run_cli(local_env, "check", "--json")
    assert preflight.returncode == 0, preflight.stdout[-3000:] + preflight.stderr[-3000:]
    findings = json.loads(preflight.stdout)
    assert {f["level"] for f in findings} <= {"ok", "warning"}
    assert {f"{s}: hourly run" for s in SOURCES} <= {f["check"] for f in findings}


def test_a_bad_setting_is_rejected_with_its_name() -> None:
    with pytest.raises(ConfigError, match="GONG_SYNC_PAGE_SIZE must be a whole number"):
        Settings.from_env({"GONG_SYNC_PAGE_SIZE": "lots"})
    with pytest.raises(ConfigError, match="GONG_SYNC_TABLES entries must look like"):
        Settings.from_env({"GONG_SYNC_TABLES": "users"})
    settings = Settings.from_env({"GONG_SYNC_DB_PASSWORD": "sentinel-secret"})
    assert "sentinel-secret" not in repr(settings)

"""The `gong-sync` command as a user runs it: the embedded default, end to end, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gong_sync.settings import ConfigError, Settings
from tests.conftest import _tmp_root


def _gong_sync(local_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GONG_SYNC_", "BIGQUERY_EMULATOR", "INSTANCE_CONNECTION"))
    }
    env["GONG_SYNC_LOCAL_DIR"] = str(local_dir)
    return subprocess.run(
        [sys.executable, "-m", "gong_sync.cli", "--log-format", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _summary(stdout: str) -> dict[str, str]:
    header, _, row = stdout.strip().splitlines()[:3]
    return dict(zip(header.split(), row.split(), strict=True))


def test_run_twice_then_status_on_the_embedded_default(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """First run seeds and syncs; the second upserts nothing; status shows the watermarks."""
    local = _tmp_root(tmp_path_factory, "cli") / "local"
    first = _gong_sync(local, "run")
    assert first.returncode == 0, first.stderr[-3000:]
    summary = _summary(first.stdout)
    assert summary["source"] == "calls"
    assert summary["status"] == "success"
    assert int(summary["upserted"].replace(",", "")) > 4000

    second = _gong_sync(local, "run")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _summary(second.stdout)["upserted"] == "0"
    # The run's one structured summary line, in Cloud Logging's shape.
    lines = [json.loads(x) for x in second.stderr.splitlines() if x.startswith("{")]
    run_lines = [x for x in lines if "run" in x]
    assert len(run_lines) == 1
    assert run_lines[0]["severity"] == "INFO"
    assert run_lines[0]["logging.googleapis.com/labels"]["source"] == "calls"
    assert run_lines[0]["run"]["rows_upserted"] == 0

    status = _gong_sync(local, "status", "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    (calls,) = json.loads(status.stdout)
    assert calls["source"] == "calls"
    assert calls["last_status"] == "success"
    assert calls["rows_upserted"] == 0
    assert set(calls["watermarks"]) == {
        "call",
        "call_speaker",
        "call_participant",
        "users",
        "transcript",
    }
    assert calls["watermark"] == min(calls["watermarks"].values()).replace("T", " ")


def test_a_bad_setting_is_rejected_with_its_name() -> None:
    with pytest.raises(ConfigError, match="GONG_SYNC_PAGE_SIZE must be a whole number"):
        Settings.from_env({"GONG_SYNC_PAGE_SIZE": "lots"})
    with pytest.raises(ConfigError, match="GONG_SYNC_TABLES entries must look like"):
        Settings.from_env({"GONG_SYNC_TABLES": "users"})
    settings = Settings.from_env({"GONG_SYNC_DB_PASSWORD": "sentinel-secret"})
    assert "sentinel-secret" not in repr(settings)

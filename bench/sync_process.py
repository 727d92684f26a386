"""Run `gong-sync run` as its own process, as in production, and read its stats and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gong_sync.settings import PostgresSettings


@dataclass
class SyncProcess:
    """One finished CLI run: per-source stats from its log, wall time and peak RSS."""

    runs: dict[str, dict[str, Any]]
    wall_seconds: float
    peak_rss_mb: float


def environment(
    pg: PostgresSettings,
    bq_host: str,
    storage_host: str,
    project: str,
    gong: str,
    salesforce: str,
) -> dict[str, str]:
    """The settings that point the CLI at the bench's Postgres database and datasets."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GONG_SYNC_")}
    return {
        **inherited,
        "GONG_SYNC_DB_HOST": pg.host or "127.0.0.1",
        "GONG_SYNC_DB_PORT": str(pg.port),
        "GONG_SYNC_DB_NAME": pg.database,
        "GONG_SYNC_DB_USER": pg.user,
        "BIGQUERY_EMULATOR_HOST": bq_host,
        "BIGQUERY_STORAGE_EMULATOR_HOST": storage_host,
        "GONG_SYNC_BQ_PROJECT": project,
        "GONG_SYNC_GONG_DATASET": gong,
        "GONG_SYNC_SALESFORCE_DATASET": salesforce,
    }


def _vm_hwm_kib(pid: int) -> int:
    """The peak resident set of a running process, from /proc (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(env: dict[str, str], *args: str, profile: Path | None = None) -> SyncProcess:
    """Run the CLI to completion; fail loudly with its log tail if a source did not succeed.

    With profile, py-spy samples it into collapsed stacks (its RSS is then py-spy's own).
    """
    command = [sys.executable, "-m", "gong_sync.cli", "--log-format", "json", "run", *args]
    if profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        command = [str(spy), "record", "--format", "raw", "-r", "100", "-o", str(profile),
                   "--", *command]  # fmt: skip
    with tempfile.TemporaryFile() as log_file:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        # Not ru_maxrss: Linux carries the parent's high-water mark into a forked child.
        # VmHWM belongs to the child's own address space and only grows, so sampling it works.
        peak_kib = 0
        while proc.poll() is None:
            peak_kib = max(peak_kib, _vm_hwm_kib(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        log_file.seek(0)
        text = log_file.read().decode("utf-8", "replace")
    runs: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("run"), dict):
            runs[entry["run"]["source"]] = entry["run"]
    bad = {name: r["status"] for name, r in runs.items() if r["status"] != "success"}
    if proc.returncode != 0 or bad or not runs:
        tail = "\n".join(text.splitlines()[-20:])
        raise RuntimeError(f"gong-sync run failed (exit {proc.returncode}, {bad}):\n{tail}")
    return SyncProcess(runs, wall, peak_kib / 1024)

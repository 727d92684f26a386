"""Build the dlt peer's private virtualenv and run bench/dlt_peer.py inside it (stdlib only)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-dlt.txt"
PEER = HERE / "dlt_peer.py"
VENV_NAME = "dlt-venv"
# Holds the hash of the requirements the venv was built from; written only after pip succeeds.
STAMP_NAME = ".requirements.sha256"
STDERR_TAIL_CHARS = 4000


def _requirements_hash() -> str:
    """sha256 of requirements-dlt.txt, so a changed pin rebuilds the venv."""
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _venv_python(venv: Path) -> Path:
    """The interpreter inside a POSIX virtualenv."""
    return venv / "bin" / "python"


def _tail(text: str) -> str:
    """The last few thousand characters of a process's output."""
    return text[-STDERR_TAIL_CHARS:]


def _child_env() -> dict[str, str]:
    """Our environment minus what would leak the project's packages into the dlt venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # dlt otherwise phones home with anonymous usage telemetry, which has no network here anyway.
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    return env


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run cmd, raising with the tail of its output if it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_child_env())
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed with exit code {done.returncode}:\n{_tail(done.stderr or done.stdout)}"
        )
    return done


def ensure_dlt_python(root: Path) -> Path:
    """Create or refresh root/dlt-venv from requirements-dlt.txt and return its python."""
    venv = root / VENV_NAME
    stamp = venv / STAMP_NAME
    python = _venv_python(venv)
    digest = _requirements_hash()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    # Start clean: installing new pins over old ones can leave stale packages behind.
    shutil.rmtree(venv, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], "creating the dlt virtualenv")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        "installing requirements-dlt.txt",
    )
    stamp.write_text(digest + "\n")
    return python


def run_dlt(python: Path, manifest: Path) -> dict[str, Any]:
    """Run dlt_peer.py on manifest under python and return the JSON object it prints last."""
    # -I: the script's folder (bench/, full of our modules) stays off sys.path and PYTHON*
    # variables are ignored, so only the dlt venv's packages are importable.
    done = _run([str(python), "-I", str(PEER), str(manifest)], "dlt_peer.py")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"dlt_peer.py printed nothing; stderr:\n{_tail(done.stderr)}")
    result = json.loads(lines[-1])
    if not isinstance(result, dict):
        raise RuntimeError(f"dlt_peer.py printed {lines[-1]!r}, not a JSON object")
    return result

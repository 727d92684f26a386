"""The deployed code as gen2 builds it: the program's archive, unpacked, on python312.

Cloud Build unpacks the uploaded archive into /workspace and pip-installs its
requirements.txt (the full lock) on the runtime's Python; here a virtualenv of the same
Python minor version does it. The virtualenv is kept per (lock, Python) so a rerun is quick.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from gong_sync.settings import ConfigError

RUNTIMES = {"python312": "3.12"}


def find_python(version: str) -> Path:
    """An interpreter of this minor version: $GONG_SYNC_PYTHON_<MAJOR><MINOR>, PATH, or pyenv."""
    variable = f"GONG_SYNC_PYTHON{version.replace('.', '')}"
    named = os.environ.get(variable)
    found = [named] if named else []
    found.append(shutil.which(f"python{version}") or "")
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in filter(None, found):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return Path(candidate)
    raise ConfigError(
        f"the functions run on Python {version}; install it (pyenv install {version}) "
        f"or set {variable} to its interpreter"
    )


def unpack(archive: Path, into: Path) -> Path:
    """The archive's files in a fresh directory, as /workspace holds them."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(into)
    return into


def virtualenv(workspace: Path, runtime: str, cache: Path) -> Path:
    """A virtualenv of the runtime's Python with the workspace's requirements.txt installed."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"no local interpreter is known for runtime {runtime!r}")
    python = find_python(RUNTIMES[runtime])
    lock = (workspace / "requirements.txt").read_bytes()
    key = hashlib.sha256(lock + runtime.encode()).hexdigest()[:16]
    venv = cache / f"{runtime}-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    done = venv / ".installed"  # written last: an interrupted install is started over
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    # What the buildpack does with requirements.txt: install exactly those pins.
    subprocess.run([*pip, "install", "-r", str(workspace / "requirements.txt")], check=True)
    done.touch()
    return venv

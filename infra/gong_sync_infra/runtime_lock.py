"""The functions' requirements: every package they install, pinned as the tests run it.

Cloud Functions installs the archive's requirements.txt with pip; with only the direct pins,
pip resolves each transitive dependency anew at every deploy, so what runs is not what was
tested. The lock is the closure of the direct pins over the installed (tested) environment,
evaluated for the functions' runtime, each at the version constraints.txt installs.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "functions" / "requirements.txt"
RUNTIME_PYTHON = "3.12"  # the functions run on python312
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    """A distribution name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        found = _PIN.match(line.strip())
        if found:
            out[canonical(found[1])] = found[2]
    return out


def _environment() -> dict[str, str]:
    env = {str(k): str(v) for k, v in default_environment().items()}
    env.update(python_version=RUNTIME_PYTHON, python_full_version=f"{RUNTIME_PYTHON}.0",
               sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
               implementation_name="cpython", platform_python_implementation="CPython")  # fmt: skip
    return env


def closure(direct: list[str]) -> set[str]:
    """Every distribution the direct requirements need on the runtime, themselves included."""
    env = _environment()
    seen: set[str] = set()
    todo = [Requirement(r) for r in direct]
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.distribution(req.name).requires or []:
            dep = Requirement(text)
            extras = sorted(req.extras) or [""]
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in extras):
                todo.append(dep)
    return seen


def lock_text(root: Path = ROOT) -> str:
    """The full lock for the functions, from requirements.txt and constraints.txt."""
    direct = pins(root / "requirements.txt")
    tested = pins(root / "constraints.txt")
    needed = closure([f"{name}=={version}" for name, version in direct.items()])
    missing = sorted(needed - tested.keys())
    if missing:
        raise RuntimeError(f"not pinned in constraints.txt: {', '.join(missing)}")
    lines = [f"{name}=={tested[name]}" for name in sorted(needed)]
    header = (
        "# Every package the functions install, pinned as the tests run it (python312).\n"
        "# Generated from requirements.txt and constraints.txt by `make lock`; do not edit.\n"
    )
    return header + "\n".join(lines) + "\n"


if __name__ == "__main__":
    LOCK.write_text(lock_text())

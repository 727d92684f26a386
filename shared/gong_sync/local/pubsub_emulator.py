"""Google's Pub/Sub emulator (from the Google Cloud CLI, on Java) as a child process."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

from gong_sync.local.ports import (
    ExitedDuringStartup,
    free_port,
    log_size,
    logged_since,
    retry_port_races,
)

ENV_VAR = "PUBSUB_EMULATOR_HOST"
_FALLBACK_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
_EMULATOR_RELPATH = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def _sdk_roots() -> list[Path]:
    """Candidate Google Cloud SDK roots: what gcloud reports, then the Debian package's."""
    roots: list[Path] = []
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
            ).stdout.strip()
            if out:
                roots.append(Path(out))
    roots.append(_FALLBACK_SDK_ROOT)
    return roots


def _java_available() -> bool:
    """Whether the emulator's launcher script will find a java executable."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return True
    return shutil.which("java") is not None


@functools.cache
def emulator_binary() -> Path | None:
    """The cloud-pubsub-emulator launcher, or None if it or Java is absent (cached)."""
    if not _java_available():
        return None
    for root in _sdk_roots():
        candidate = root / _EMULATOR_RELPATH
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class PubSubEmulator:
    """One Pub/Sub emulator process, its log in data_dir; exports PUBSUB_EMULATOR_HOST."""

    def __init__(self, data_dir: Path, binary: Path | None = None) -> None:
        """Remember where to log and which launcher to run (found with emulator_binary)."""
        self.data_dir = data_dir.resolve()
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.host: str | None = None
        self.startup_seconds: float | None = None
        self._saved_env: str | None = None

    @property
    def log_path(self) -> Path:
        """The file the emulator's stdout and stderr go to."""
        return self.data_dir / "pubsub-emulator.log"

    def start(self, timeout: float = 60) -> str:
        """Start the emulator, set PUBSUB_EMULATOR_HOST, and return host:port once it serves."""
        if self.proc is not None:
            raise RuntimeError("the Pub/Sub emulator is already running")
        binary = self.binary or emulator_binary()
        if binary is None:
            raise RuntimeError("cloud-pubsub-emulator (or Java) is not installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            host = retry_port_races("the Pub/Sub emulator", lambda: self._start(binary, timeout))
        except Exception as exc:
            raise RuntimeError(
                f"the Pub/Sub emulator did not start: {exc}; see {self.log_path}"
            ) from exc
        self.startup_seconds = time.monotonic() - began
        return host

    def _start(self, binary: Path, timeout: float) -> str:
        """One attempt: launch on a fresh port and wait until it serves, or stop it."""
        port = free_port()
        host = f"127.0.0.1:{port}"
        began = time.monotonic()
        logged = log_size(self.log_path)
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [str(binary), "--host=127.0.0.1", f"--port={port}"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group, so stop() reaches java too
            )
        self._saved_env = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = host
        self.host = host
        try:
            self._wait_until_serving(port, began + timeout, logged)
        except Exception:
            self.stop()
            raise
        return host

    def _wait_until_serving(self, port: int, deadline: float, logged: int) -> None:
        """Poll TCP, then HTTP, then one gRPC call, until each answers or deadline passes.

        On a taken port the emulator logs a BindException and lives on (netty's threads keep
        the JVM up), so its log since `logged` (its size at launch) is read too.
        """
        proc = self.proc
        assert proc is not None
        stage = "TCP"
        while True:
            if proc.poll() is not None:
                raise ExitedDuringStartup(f"the emulator exited with code {proc.returncode}")
            if logged_since(self.log_path, logged, "java.net.BindException"):
                raise ExitedDuringStartup(f"the emulator could not bind port {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer over {stage} in time")
            try:
                if stage == "TCP":
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    stage = "HTTP"
                if stage == "HTTP":
                    url = f"http://127.0.0.1:{port}/"
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        resp.read()
                    stage = "gRPC"
                with pubsub_v1.PublisherClient() as client:
                    list(client.list_topics(request={"project": "projects/probe"}, timeout=5))
                return
            except (OSError, urllib.error.URLError, api_exceptions.GoogleAPIError):
                time.sleep(0.1)

    def stop(self, grace: float = 5) -> None:
        """SIGTERM the emulator's process group, SIGKILL it after grace seconds; restore env."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # The launcher execs java, but reap any straggler left in the group all the same.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self.host is not None and os.environ.get(ENV_VAR) == self.host:
            if self._saved_env is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = self._saved_env
        self.host = None

    def __enter__(self) -> PubSubEmulator:
        """Start on entering a with block."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop on leaving a with block."""
        self.stop()

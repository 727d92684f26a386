"""A stand-in for a gen2 function's Cloud Run service: its instances and its instance limit.

What it reproduces, each from Google's documentation:
- An instance is one process of functions-framework, started on demand (a cold start) with
  the environment gen2 gives it: Cloud Run's K_SERVICE, K_REVISION, K_CONFIGURATION and PORT
  (Cloud Run's container runtime contract), the buildpack's FUNCTION_TARGET (and
  FUNCTION_SIGNATURE_TYPE only when the build sets GOOGLE_FUNCTION_SIGNATURE_TYPE), and
  LOG_EXECUTION_ID=true, plus the function's own variables and nothing of ours.
- At most max instances x concurrency requests run at once. Another request waits for a free
  instance for up to `pending_seconds` (about 30 s on Cloud Run), then gets HTTP 429 ("About
  instance autoscaling": requests that cannot be served are queued, then answered 429).
- A request longer than the function's timeout gets 504 and its instance is replaced.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gong_sync.local.ports import free_port, retry_port_races, wait_for_http
from gong_sync_infra.cloud_local.program import Function

log = logging.getLogger(__name__)

PENDING_SECONDS = 30.0


@dataclass(frozen=True)
class Code:
    """Where the deployed code lives: the unpacked archive, its virtualenv, and the logs."""

    workspace: Path
    venv: Path
    logs: Path


@dataclass(frozen=True)
class Served:
    """One request the service answered: for tests and the console."""

    service: str
    started: float  # time.time()
    ended: float
    status: int
    instance: int | None  # None: answered by the front (429), never reached an instance
    message_id: str = ""  # the Pub/Sub message pushed, when the request is a push


class Instance:
    """One functions-framework process serving one function."""

    def __init__(self, function: Function, number: int, env: Mapping[str, str], code: Code) -> None:
        """Start the process and wait until it answers HTTP."""
        self.number = number
        self.log_path = code.logs / f"{function.name}-{number}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes]
        self.port: int
        retry_port_races(
            f"{function.name} instance {number}", lambda: self._start(function, env, code)
        )

    def _start(self, function: Function, env: Mapping[str, str], code: Code) -> None:
        """One attempt: serve on a fresh port and wait until it answers, or stop it."""
        self.port = free_port()
        gen2 = {
            "K_SERVICE": function.name,
            "K_REVISION": f"{function.name}-00001-loc",
            "K_CONFIGURATION": function.name,
            "PORT": str(self.port),
            "FUNCTION_TARGET": function.entry_point,
            "LOG_EXECUTION_ID": "true",
        }
        if function.signature_type:
            gen2["FUNCTION_SIGNATURE_TYPE"] = function.signature_type
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                # gen2's buildpack runs functions-framework, which reads the variables above.
                [str(code.venv / "bin" / "functions-framework")],
                cwd=code.workspace,  # gen2 serves from the unpacked archive (/workspace)
                env={**env, **gen2},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_http(
                f"http://127.0.0.1:{self.port}/", 60, alive=lambda: self.proc.poll() is None
            )
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the process (Cloud Run sends SIGTERM, then SIGKILL after 10 s)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()


class CloudRunService:
    """The instances of one function behind its instance limit."""

    def __init__(
        self,
        function: Function,
        env: Mapping[str, str],
        code: Code,
        pending_seconds: float = PENDING_SECONDS,
    ) -> None:
        """Serve `function` with `env` from `code`; no instance runs before a request."""
        self.function = function
        self.env = dict(env)
        self.code = code
        self.pending_seconds = pending_seconds
        self.capacity = function.max_instances * function.concurrency
        self.served: list[Served] = []
        self._idle: list[Instance] = []
        self._instances: list[Instance] = []
        self._busy = 0
        self._numbers = 0
        self._cond = threading.Condition()

    def _take(self) -> Instance | int | None:
        """An idle instance, the number of one to start, or None when no slot freed in time."""
        with self._cond:
            free = self._cond.wait_for(lambda: self._busy < self.capacity, self.pending_seconds)
            if not free:
                return None
            self._busy += 1
            if self._idle:
                return self._idle.pop()
            self._numbers += 1  # below capacity with none idle: room for one more instance
            return self._numbers

    def _give_back(self, instance: Instance | None) -> None:
        with self._cond:
            self._busy -= 1
            if instance is not None:
                self._idle.append(instance)
            self._cond.notify()

    def _start(self, number: int) -> Instance:
        instance = Instance(self.function, number, self.env, self.code)
        with self._cond:
            self._instances.append(instance)
            # Its other request slots are free at once (concurrency above 1).
            self._idle.extend([instance] * (self.function.concurrency - 1))
        log.info("%s: cold start of instance %d", self.function.name, number)
        return instance

    def handle(
        self, path: str, body: bytes, headers: Mapping[str, str], message_id: str = ""
    ) -> tuple[int, bytes]:
        """Serve one request as Cloud Run would: on an instance, or 429 when none frees."""
        began = time.time()
        taken = self._take()
        if taken is None:
            self.served.append(
                Served(self.function.name, began, time.time(), 429, None, message_id)
            )
            return 429, b"Rejected: no available instance"
        instance = taken if isinstance(taken, Instance) else None
        keep: Instance | None = None
        try:
            if instance is None:
                assert isinstance(taken, int)
                instance = self._start(taken)
            status, reply = self._forward(instance, path, body, headers)
            keep = instance if status != 504 else None
        except (OSError, RuntimeError) as exc:  # it failed to start, or died mid-request
            status, reply = 503, f"instance failed: {exc}".encode()
        finally:
            self._give_back(keep)
        number = instance.number if instance else None
        self.served.append(
            Served(self.function.name, began, time.time(), status, number, message_id)
        )
        return status, reply

    def _forward(
        self, instance: Instance, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", instance.port, timeout=self.function.timeout_seconds
        )
        try:
            conn.request(
                "POST",
                path,
                body,
                {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                },
            )
            response = conn.getresponse()
            return response.status, response.read()
        except TimeoutError:
            # Past the function's timeout Cloud Run answers 504 and the instance goes.
            instance.stop()
            with self._cond:
                self._instances.remove(instance)
                self._idle = [i for i in self._idle if i is not instance]
            return 504, b"upstream request timeout"
        finally:
            conn.close()

    @property
    def in_flight(self) -> int:
        """Requests being served or waiting for an instance right now."""
        with self._cond:
            return self._busy

    def stop(self) -> None:
        """Stop every instance."""
        with self._cond:
            instances, self._instances, self._idle = list(self._instances), [], []
        for instance in instances:
            instance.stop()

    @property
    def log_paths(self) -> list[Path]:
        """Every instance's log file, in start order."""
        return sorted(self.code.logs.glob(f"{self.function.name}-*.log"))

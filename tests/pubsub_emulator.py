"""Real Pub/Sub for the tests: Google's Java emulator, push targets, and a Slack stand-in."""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

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


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        port = _free_port()
        host = f"127.0.0.1:{port}"
        began = time.monotonic()
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
            self._wait_until_serving(port, began + timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(
                f"the Pub/Sub emulator did not start: {exc}; see {self.log_path}"
            ) from exc
        self.startup_seconds = time.monotonic() - began
        return host

    def _wait_until_serving(self, port: int, deadline: float) -> None:
        """Poll TCP, then HTTP, then one gRPC call, until each answers or deadline passes."""
        proc = self.proc
        assert proc is not None
        stage = "TCP"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with code {proc.returncode}")
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


# --- thin helpers over the real google-cloud-pubsub clients (need PUBSUB_EMULATOR_HOST) ---


def topic_path(project: str, topic: str) -> str:
    """A topic's full path; a full path passes through unchanged."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    """A subscription's full path; a full path passes through unchanged."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


def create_topic(project: str, name: str) -> str:
    """Create a topic and return its path."""
    path = topic_path(project, name)
    with pubsub_v1.PublisherClient() as client:
        client.create_topic(request={"name": path}, timeout=30)
    return path


def create_push_subscription(
    project: str,
    name: str,
    topic: str,
    endpoint: str,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
    min_backoff_s: float = 0.1,
    max_backoff_s: float = 1.0,
    ack_deadline_s: int = 10,
) -> str:
    """Create a push subscription (wrapped JSON body), optionally dead-lettering; return path."""
    path = subscription_path(project, name)
    request: dict[str, Any] = {
        "name": path,
        "topic": topic_path(project, topic),
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": ack_deadline_s,
        "retry_policy": {
            "minimum_backoff": datetime.timedelta(seconds=min_backoff_s),
            "maximum_backoff": datetime.timedelta(seconds=max_backoff_s),
        },
    }
    if dead_letter_topic is not None:
        request["dead_letter_policy"] = {
            "dead_letter_topic": topic_path(project, dead_letter_topic),
            "max_delivery_attempts": max_delivery_attempts,
        }
    with pubsub_v1.SubscriberClient() as client:
        client.create_subscription(request=request, timeout=30)
    return path


def create_pull_subscription(project: str, name: str, topic: str) -> str:
    """Create a pull subscription and return its path."""
    path = subscription_path(project, name)
    with pubsub_v1.SubscriberClient() as client:
        client.create_subscription(
            request={"name": path, "topic": topic_path(project, topic)}, timeout=30
        )
    return path


@dataclass(frozen=True)
class Received:
    """One pulled (and acked) message."""

    data: bytes
    attributes: dict[str, str]
    message_id: str = ""
    delivery_attempt: int = 0


def pull_all(subscription_path: str, expect: int, timeout: float) -> list[Received]:
    """Pull and ack until at least expect messages arrived or timeout; return what arrived."""
    received: list[Received] = []
    deadline = time.monotonic() + timeout
    with pubsub_v1.SubscriberClient() as client:
        while len(received) < expect:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                response = client.pull(
                    request={"subscription": subscription_path, "max_messages": 100},
                    timeout=max(0.5, min(remaining, 5.0)),
                )
            except api_exceptions.DeadlineExceeded:
                continue
            if not response.received_messages:
                time.sleep(0.1)
                continue
            received.extend(
                Received(
                    data=bytes(m.message.data),
                    attributes=dict(m.message.attributes),
                    message_id=m.message.message_id,
                    delivery_attempt=m.delivery_attempt,
                )
                for m in response.received_messages
            )
            client.acknowledge(
                request={
                    "subscription": subscription_path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                },
                timeout=30,
            )
    return received


def publish(project: str, topic: str, data: bytes, **attributes: str) -> str:
    """Publish one message, wait until it is accepted, and return its message id."""
    with pubsub_v1.PublisherClient() as client:
        future = client.publish(topic_path(project, topic), data, **attributes)
        return str(future.result(timeout=30))


# --- local HTTP servers ---


@dataclass
class _Inbox:
    """Thread-safe record of the bodies a stand-in server received."""

    status: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)


def _make_handler(inbox: _Inbox) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to inbox."""

    class Handler(BaseHTTPRequestHandler):
        """Record each POSTed JSON body and answer like a Slack webhook."""

        def do_POST(self) -> None:
            """Store the body, then reply with the configured status."""
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            if not isinstance(body, dict):
                body = {"_json": body}
            with inbox.cond:
                inbox.messages.append(body)
                inbox.cond.notify_all()
            reply = b"" if inbox.status in (204, 304) else b"ok" if inbox.status < 400 else b"error"
            self.send_response(inbox.status)
            if reply:
                self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler


class SlackStandIn:
    """A Slack incoming-webhook stand-in on 127.0.0.1 that records POSTed JSON bodies."""

    def __init__(self, status: int = 200) -> None:
        """Start serving at once on a free port; every POST gets the given status."""
        self._inbox = _Inbox(status=status)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self._inbox))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="slack-stand-in", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/T000/B000/XXX"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A snapshot of the bodies received so far."""
        with self._inbox.cond:
            return list(self._inbox.messages)

    def wait_for(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until at least n bodies arrived and return them; TimeoutError otherwise."""
        with self._inbox.cond:
            if not self._inbox.cond.wait_for(lambda: len(self._inbox.messages) >= n, timeout):
                raise TimeoutError(
                    f"expected {n} Slack message(s) within {timeout}s, "
                    f"got {len(self._inbox.messages)}"
                )
            return list(self._inbox.messages)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ServedFunction:
    """A functions-framework app served over real HTTP from a background thread."""

    def __init__(self, app: Any) -> None:
        """Serve app on a free 127.0.0.1 port until stop()."""
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="served-function", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.port}"

    def endpoint_for(self, topic: str) -> str:
        """A push endpoint whose path names the topic, so the CloudEvent's source names it too."""
        return f"{self.url}/{topic}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_function(
    source_path: str, target: str, signature_type: str = "cloudevent"
) -> ServedFunction:
    """Build the function's app with functions-framework and serve it over HTTP."""
    import functions_framework

    create_app: Callable[[str, str, str], Any] = functions_framework.create_app
    app = create_app(target, source_path, signature_type)
    return ServedFunction(app)

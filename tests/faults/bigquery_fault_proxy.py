"""An HTTP proxy in front of the BigQuery emulator that injects faults on chosen requests."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from gong_sync.local.http_server import BackgroundHTTPServer

# An HTTP status to answer with; "drop" to close the connection unanswered; "hang" to forward
# the request but hold its response back until the client gives up waiting.
Fault = int | str


class FaultProxy(BackgroundHTTPServer):
    """Forwards to `upstream`; the requests whose path matches `match` get the planned faults."""

    def __init__(self, upstream: str, match: str, hang_seconds: float = 20.0) -> None:
        self.upstream = upstream
        self.match = match
        self.plan: list[Fault | None] = []  # consumed one per matching request (None: pass)
        self.always: Fault | None = None  # every matching request fails this way
        # Bytes replaced in the responses to matching requests: what a server could send
        # that the emulator cannot store (a lone surrogate escape, bytes that are not UTF-8).
        self.rewrite: dict[bytes, bytes] = {}
        # A held response is released (as a dropped connection) after this long, so a client
        # without a timeout shows up as a failed test rather than a hung one.
        self.hang_seconds = hang_seconds
        self.matched = 0
        self.injected = 0
        self.abandoned = 0  # held responses whose client closed the connection (timed out)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        super().__init__(_handler_for(self))

    def answer(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes] | None:
        """A response of the stand-in's own instead of the emulator's (None: forward)."""
        return None

    def edit(self, method: str, path: str, body: bytes | None, data: bytes) -> bytes:
        """The emulator's response body as the stand-in passes it on."""
        return data

    def _next_fault(self, path: str) -> Fault | None:
        if self.match not in path:
            return None
        with self._lock:
            self.matched += 1
            fault = self.plan.pop(0) if self.plan else self.always
            if fault is not None:
                self.injected += 1
            return fault

    def _hold(self, sock: socket.socket) -> None:
        """Answer nothing until the client closes its end, the proxy stops, or time runs out."""
        deadline = time.monotonic() + self.hang_seconds
        while not self._closing.is_set() and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], min(left, 0.1))
            if readable:
                try:
                    closed = not sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    closed = True
                if closed:  # the client timed out and hung up: what the test wants to see
                    with self._lock:
                        self.abandoned += 1
                return

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()  # release held responses, so shutdown does not wait for them
        super().__exit__(kind, exc, tb)


class _Handler(BaseHTTPRequestHandler):
    """Forwards a request, unless the plan or the stand-in answers it."""

    protocol_version = "HTTP/1.1"
    proxy: FaultProxy  # set per proxy by _handler_for

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        own = self.proxy.answer(self.command, self.path, body)
        if own is not None:
            self._send(*own)
            return
        fault = self.proxy._next_fault(self.path)
        if fault == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if isinstance(fault, int):
            self._send(fault, b'{"error": {"code": %d, "message": "injected fault"}}' % fault)
            return
        status, response_headers, data = self._upstream(body)
        if self.proxy.match in self.path:
            for old, new in self.proxy.rewrite.items():
                data = data.replace(old, new)
        data = self.proxy.edit(self.command, self.path, body, data)
        if fault == "hang":
            # The emulator did the work (a job may now exist); the client never hears.
            self.proxy._hold(self.connection)
            self.close_connection = True
            return
        self.send_response(status)
        for key, value in response_headers:
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _upstream(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(self.proxy.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        return response.status, response.getheaders(), data

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    """The request handler class of one proxy."""
    return type("Handler", (_Handler,), {"proxy": proxy})

"""An HTTP proxy in front of the BigQuery emulator that injects faults on chosen requests."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import BackgroundHTTPServer

Fault = int | str  # an HTTP status to answer with, or "drop" to close the connection


class FaultProxy(BackgroundHTTPServer):
    """Forwards to `upstream`; the requests whose path matches `match` get the planned faults."""

    def __init__(self, upstream: str, match: str) -> None:
        self.upstream = upstream
        self.match = match
        self.plan: list[Fault | None] = []  # consumed one per matching request (None: pass)
        self.always: Fault | None = None  # every matching request fails this way
        self.matched = 0
        self.injected = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._next_fault(self.path)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if isinstance(fault, int):
                    payload = b'{"error": {"code": %d, "message": "injected fault"}}' % fault
                    self.send_response(fault)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def _next_fault(self, path: str) -> Fault | None:
        if self.match not in path:
            return None
        with self._lock:
            self.matched += 1
            fault = self.plan.pop(0) if self.plan else self.always
            if fault is not None:
                self.injected += 1
            return fault

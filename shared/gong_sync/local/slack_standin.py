"""A Slack incoming-webhook stand-in that records the JSON bodies posted to it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from gong_sync.local.http_server import BackgroundHTTPServer


class SlackStandIn(BackgroundHTTPServer):
    """Answers every POST with `status` (Slack's 200 "ok" by default) and keeps its body."""

    def __init__(self, status: int = 200) -> None:
        """Serve at once on a free loopback port until stop()."""
        self.status = status
        self._messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                with owner._cond:
                    owner._messages.append(body if isinstance(body, dict) else {"_json": body})
                    owner._cond.notify_all()
                reply = b"ok" if owner.status < 400 else b"error"
                self.send_response(owner.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the console for the function logs."""

        super().__init__(Handler)
        self.__enter__()
        self.url = f"{self.url}/services/T000/B000/XXX"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A snapshot of the bodies received so far."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until at least n bodies arrived and return them; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout):
                raise TimeoutError(
                    f"expected {n} Slack message(s) within {timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.__exit__(None, None, None)

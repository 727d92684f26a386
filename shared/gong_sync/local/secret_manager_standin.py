"""A local stand-in that answers Secret Manager's REST `access` call, for the real client."""

from __future__ import annotations

import base64
import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

from gong_sync.local.http_server import BackgroundHTTPServer

_ACCESS = re.compile(r"^/v1/projects/[^/]+/secrets/([^/]+)/versions/[^/:]+:access")


class SecretManagerStandIn(BackgroundHTTPServer):
    """Serves `projects/*/secrets/NAME/versions/*:access` from a dict of NAME -> value."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                match = _ACCESS.match(self.path)
                if not match or match.group(1) not in owner.secrets:
                    self.send_error(404)
                    return
                value = owner.secrets[match.group(1)].encode()
                body = json.dumps({
                    "name": self.path.split(":")[0].removeprefix("/v1/"),
                    "payload": {"data": base64.b64encode(value).decode()},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

"""Connections to the target Postgres: by host and port, or through the Cloud SQL connector."""

from __future__ import annotations

import atexit
import functools
import logging
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import pg8000.dbapi

from gong_sync.copy_text import array_literal
from gong_sync.settings import PostgresSettings

log = logging.getLogger(__name__)


def text_array(values: Iterable[str | None]) -> str:
    """A `CAST(%s AS text[])` parameter: a literal with every element quoted (None is NULL).

    pg8000 leaves an element bare unless it is exactly "NULL" or holds a space, brace, comma
    or backslash, and Postgres reads a bare null in any letter case as NULL: a key "null"
    became a NULL (a parent noted for derivation as "no parent", a deleted parent never found).
    """
    return array_literal(list(values))


class Cursor(Protocol):
    """The part of pg8000's DB-API cursor we use (pg8000 ships no type information)."""

    rowcount: int
    description: Any

    def execute(self, operation: str, args: Sequence[Any] = (), stream: Any = None) -> Any:
        """Run one statement; `stream` feeds COPY FROM STDIN."""

    def fetchone(self) -> Sequence[Any] | None:
        """The next row."""

    def fetchall(self) -> Sequence[Sequence[Any]]:
        """The remaining rows."""


class Connection(Protocol):
    """pg8000's DB-API connection; the Cloud SQL connector hands back the same type."""

    autocommit: bool

    def cursor(self) -> Cursor:
        """A new cursor."""

    def commit(self) -> None:
        """Commit the open transaction."""

    def rollback(self) -> None:
        """Roll back the open transaction."""

    def close(self) -> None:
        """Close the connection."""

    def execute_simple(self, statement: str) -> Any:
        """Run statements through the simple-query protocol (several per call)."""


@functools.cache
def _connector() -> Any:
    """One Cloud SQL connector per process: it keeps certificates fresh in the background."""
    # Imported lazily: the connector pulls in aiohttp and is only needed in the cloud.
    from google.cloud.sql.connector import Connector

    connector = Connector(refresh_strategy="lazy")
    atexit.register(connector.close)
    return connector


# A socket read that waits longer than this fails instead of hanging past the platform's limit.
SOCKET_TIMEOUT_SECONDS = 60


def _startup(settings: PostgresSettings) -> dict[str, str]:
    """Server settings sent with the connection: a statement may run at most this long."""
    limit = settings.statement_timeout_seconds
    return {"statement_timeout": str(int(limit * 1000))} if limit else {}


def connect(settings: PostgresSettings, **overrides: Any) -> Connection:
    """Open a connection; with INSTANCE_CONNECTION_NAME set, go through the Cloud SQL connector."""
    if settings.instance_connection_name:
        conn: Connection = _connector().connect(
            settings.instance_connection_name,
            "pg8000",
            user=settings.user,
            password=settings.password,
            db=settings.database,
            ip_type=settings.ip_type,
            startup_params=_startup(settings),
        )
        # pg8000 leaves a socket it is handed as it is, and the connector's has no timeout
        # and no keepalive: a dropped connection would hang the function until it is killed.
        sock = getattr(conn, "_usock", None)
        if sock is not None:
            sock.settimeout(SOCKET_TIMEOUT_SECONDS)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return conn
    params: dict[str, Any] = {
        "host": settings.host or "127.0.0.1",
        "port": settings.port,
        "database": settings.database,
        "user": settings.user,
        "password": settings.password,
        "application_name": "gong-sync",
        "tcp_keepalive": True,
        "timeout": SOCKET_TIMEOUT_SECONDS,
        "startup_params": _startup(settings),
    }
    params.update(overrides)
    direct: Connection = pg8000.dbapi.connect(**params)
    return direct

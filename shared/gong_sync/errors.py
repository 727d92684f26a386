"""Which failures are worth retrying."""

from __future__ import annotations

import socket

from google.api_core import exceptions as gexc

# Throttling, server errors and timeouts from Google APIs pass; a retry may succeed.
_TRANSIENT_GOOGLE = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
)


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a Postgres error raised by pg8000, or "" for anything else."""
    args = getattr(exc, "args", ())
    return str(args[0].get("C", "")) if args and isinstance(args[0], dict) else ""


def is_transient(exc: BaseException) -> bool:
    """True for 429s, 5xx, timeouts and dropped connections; False for bad config or SQL."""
    import pg8000.exceptions

    if isinstance(exc, _TRANSIENT_GOOGLE):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        return False  # 400, 403, 404, ...: retrying changes nothing
    if isinstance(exc, pg8000.exceptions.InterfaceError | ConnectionError | socket.timeout):
        return True  # the connection dropped or the network failed
    if isinstance(exc, pg8000.exceptions.DatabaseError):
        # SQLSTATE classes 08 (connection), 40 (rollback, e.g. serialization), 53 (resources),
        # 57 (operator intervention, e.g. admin shutdown) are worth another try.
        return sqlstate(exc)[:2] in ("08", "40", "53", "57")
    return isinstance(exc, TimeoutError | OSError)

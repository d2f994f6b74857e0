"""The security log: one grep-able line per security event, never a secret.

Lines carry a stable event name, a reason code, the subject, the client address and the
origin. They never carry a token, an `auth` payload or a message body.
"""

from __future__ import annotations

import logging
import time
from typing import Final

LOGGER: Final = logging.getLogger("security")
MAX_PATH_CHARS: Final = 200


def event(name: str, *, level: int = logging.INFO, **fields: object) -> None:
    parts = " ".join(f"{key}={_clean(value)}" for key, value in fields.items())
    LOGGER.log(level, "%s %s", name, parts)


class UTCFormatter(logging.Formatter):
    """Timestamps in UTC with an explicit offset (ASVS 16): `2026-11-30T05:02:16.123+00:00`,
    comparable across hosts and time zones."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03d+00:00"


LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _clean(value: object) -> str:
    # Quote-free single tokens: a crafted Origin header must not forge log fields.
    text = "-" if value is None else str(value)
    return "".join(ch if ch.isprintable() and ch not in ' ="' else "_" for ch in text)[:200]


class DropDenialQuirk(logging.Filter):
    """uvicorn 0.54's websockets-sansio protocol logs "ASGI callable returned without
    completing handshake." after an ASGI denial response (how the guard refuses an upgrade
    with headers) although the response was sent. Our app leaves a handshake incomplete
    only there, so the line is noise an attacker could multiply.

    Upstream: uvicorn `protocols/websockets/websockets_sansio_impl.py`,
    `WebSocketsSansIOProtocol.run_asgi()` tests only `handshake_complete`, which `send()`
    leaves False for a `websocket.http.response.*` denial (it records `initial_response`),
    and logs that message at ERROR. Matched by its exact text: re-verify it on a uvicorn
    bump (pyproject.toml pins the range it was verified on).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "ASGI callable returned without completing handshake."


class RedactQueryStrings(logging.Filter):
    """uvicorn logs each websocket request line with its query string, where careless
    clients put tokens (C04, C13): keep the path, drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/"):
        if "?" in arg:
            arg = arg.partition("?")[0] + "?[redacted]"
        # A client chooses the path of a refused upgrade: a bounded share of the line.
        return arg if len(arg) <= MAX_PATH_CHARS else arg[:MAX_PATH_CHARS] + "[...]"
    return arg


class TracebackToClassName(logging.Filter):
    """python-engineio logs a traceback for each malformed packet a client sends; the
    exception messages quote packet fragments. Keep one line with the exception class."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.getMessage()} error={record.exc_info[0].__name__}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def pinned_logger(name: str) -> logging.Logger:
    """python-socketio's and python-engineio's loggers, pinned at WARNING whatever the
    log level (at INFO they print whole packets, tokens included), without tracebacks."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, TracebackToClassName) for f in logger.filters):
        logger.addFilter(TracebackToClassName())
    return logger


def harden_server_loggers(level: str) -> None:
    """uvicorn's loggers: never below INFO (at DEBUG the websockets protocol dumps every
    frame, tokens and message bodies included), and without query strings."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.INFO, logging.getLevelName(level)))
        for kind in (RedactQueryStrings, DropDenialQuirk):
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())

"""The listening socket (C11): caps applied when a connection is accepted, before a single
byte of TLS is read.

uvicorn accepts every TCP connection and holds it until the TLS handshake, and then the
first request, time out; the guard's caps count websockets only. One address could hold
every descriptor of the process with connections that never send a ClientHello, and each
handshake it does complete costs the server a few milliseconds of CPU. Here each accepted
connection is counted per client address and in total, and new connections per address
are paid from a token bucket; a connection over a cap is closed at once. Addresses of the
configured proxies (`forwarded_allow_ips`) are not capped per address: behind a proxy every
client arrives from it, and the guard caps the clients by their forwarded addresses.

When the process runs out of descriptors, `accept()` fails with EMFILE and the kernel keeps
reporting the listening socket readable: asyncio logs a traceback each time and retries a
second later, while clients wait in the backlog. Here a spare descriptor is freed to accept
and close the waiting connections at once (they fail fast instead of hanging), with one
log line per interval.

This is a `socket.socket` subclass that asyncio's accept loop calls like any socket
(`loop.create_server(sock=...)` accepts with `sock.accept()`); the accepted sockets give
their slot back when asyncio closes them.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from typing import Final

from . import seclog
from .limits import AcceptCaps

_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
LOG_INTERVAL_SECONDS: Final = 10.0


class _Throttled:
    """At most one log line per reason and interval, with the count of the others."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def event(self, name: str, reason: str, client: str) -> None:
        now = time.monotonic()
        self._count[reason] = self._count.get(reason, 0) + 1
        if now - self._last.get(reason, -LOG_INTERVAL_SECONDS) >= LOG_INTERVAL_SECONDS:
            self._last[reason] = now
            count, self._count[reason] = self._count[reason], 0
            seclog.event(name, level=logging.WARNING, reason=reason, client=client, count=count)


class AdmittedSocket(socket.socket):
    """An accepted connection that gives its slot back when it is closed."""

    _caps: AcceptCaps | None = None
    _address: str = ""

    def _real_close(self, *args: object, **kwargs: object) -> None:
        caps, self._caps = self._caps, None
        if caps is not None:
            caps.release(self._address)
        super()._real_close(*args, **kwargs)  # type: ignore[misc]


class Listener(socket.socket):
    """A listening socket that admits connections within `caps`."""

    caps: AcceptCaps
    _log: _Throttled
    _spare: int = -1

    def accept(self) -> tuple[socket.socket, object]:
        while True:
            try:
                fd, address = self._accept()  # type: ignore[attr-defined]
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise  # BlockingIOError ends asyncio's accept loop, as it should
                self._shed(exc.errno)
                raise BlockingIOError(errno.EAGAIN, "descriptors exhausted") from None
            client = str(address[0]) if isinstance(address, tuple) else "-"
            reason = self.caps.admit(client)
            if reason is None:
                connection = AdmittedSocket(self.family, self.type, self.proto, fileno=fd)
                connection._caps, connection._address = self.caps, client
                return connection, address
            self._log.event("connection_refused", reason, client)
            _close_at_once(fd)

    def _shed(self, code: int) -> None:
        """Accept and close what waits in the backlog, with the spare descriptor."""
        self._log.event("accept_failed", errno.errorcode.get(code, str(code)), "-")
        if self._spare < 0:
            return
        os.close(self._spare)
        self._spare = -1
        try:
            while True:
                fd, _ = self._accept()  # type: ignore[attr-defined]
                _close_at_once(fd)
        except OSError:
            pass
        finally:
            self._spare = _open_spare()

    def close(self) -> None:
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1
        super().close()


def _close_at_once(fd: int) -> None:
    # A reset rather than a FIN: nothing lingers in TIME_WAIT for a connection we refuse.
    with socket.socket(fileno=fd) as refused:
        refused.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _open_spare() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return -1


def bind(host: str, port: int, caps: AcceptCaps) -> Listener:
    """A listening socket on `host`:`port` that admits connections within `caps`."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = Listener(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.caps = caps
    sock._log = _Throttled()
    sock._spare = _open_spare()
    return sock

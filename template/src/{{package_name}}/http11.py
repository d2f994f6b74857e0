"""The HTTP/1.1 protocol uvicorn runs for every connection: uvicorn's own h11 protocol with
a deadline for each request (C11).

uvicorn sets no time limit on a connection before its first request, and restarts its
keep-alive timer on every byte received: a client could hold a connection for ever by
saying nothing after the TLS handshake, or by sending its request a byte at a time
(Slowloris), and never reach the guard's caps, which count websockets. Here every request,
head and body (a websocket upgrade is a request), must have arrived whole within
`request_timeout_seconds` of the TLS handshake or of the previous response, however its
bytes trickle in. The TLS handshake has the same bound (see `tls.bound_handshakes`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import seclog

# The client's side of the exchange while it still owes us bytes of a request.
_SENDING: Final = (h11.IDLE, h11.SEND_BODY)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, closing a connection whose request is overdue."""

    seconds: ClassVar[float] = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in _SENDING:
            self._disarm()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The websocket protocol takes the connection over; the guard's deadlines apply.
        self._disarm()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        # The next request of a kept-alive connection; `super()` may read it at once.
        self._arm()
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.seconds, self._overdue)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _overdue(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state not in _SENDING:
            return
        client = self.client[0] if self.client else "-"
        seclog.event(
            "connection_closed", level=logging.WARNING, reason="request_timeout", client=client
        )
        self.transport.close()


def protocol_class(seconds: float) -> type[DeadlineH11Protocol]:
    """The protocol class for uvicorn's `http` setting, with its deadline in seconds."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"seconds": seconds})

"""The HTTP/1.1 protocol uvicorn runs for every connection: uvicorn's own h11 protocol with
a deadline for each request (C11).

uvicorn sets no time limit on a connection before its first request, and restarts its
keep-alive timer on every byte received: a client could hold a connection for ever by
saying nothing after the TLS handshake, or by sending its request a byte at a time
(Slowloris), and never reach the guard's caps, which count websockets. Here every request,
head and body (a websocket upgrade is a request), must have arrived whole within
`request_timeout_seconds` of the TLS handshake or of the previous response, however its
bytes trickle in. The TLS handshake has the same bound (see `asynciotls`).

It also refuses what RFC 9112 calls a sign of request smuggling (section 6.1): a request
with both `Content-Length` and `Transfer-Encoding` (h11 reads it by Transfer-Encoding and
kept the connection open for the next request). Such a request, and every other request
h11 cannot parse, gets uvicorn's 400 with the security headers (C20), one security-log
line, and the connection is closed.

Upstream, what this subclass works around and relies on: uvicorn
`protocols/http/h11_impl.py`, `H11Protocol` (0.54): no deadline before the first request,
and `timeout_keep_alive` re-armed per request rather than per connection; it overrides
`connection_made`, `connection_lost`, `handle_events`, `handle_websocket_upgrade`,
`on_response_complete` and `send_400_response` and replaces `self.conn`, so a uvicorn bump
needs those re-read (pyproject.toml pins the range it was verified on).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import seclog
from .web import SECURITY_HEADERS

# The client's side of the exchange while it still owes us bytes of a request.
_SENDING: Final = (h11.IDLE, h11.SEND_BODY)


class _StrictConnection(h11.Connection):
    """h11's server connection, refusing a request framed two ways at once."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name.lower() for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        return event


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, closing a connection whose request is overdue."""

    seconds: ClassVar[float] = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = (
            _StrictConnection(h11.SERVER)
            if limit is None
            else _StrictConnection(h11.SERVER, max_incomplete_event_size=limit)
        )

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer to a request h11 refused, with the headers every response
        # of this server carries; h11 has marked the connection for closing already.
        seclog.event(
            "request_refused", level=logging.WARNING, reason="bad_request", client=self._client
        )
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=b"Bad Request"),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    @property
    def _client(self) -> str:
        return self.client[0] if self.client else "-"

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
        seclog.event(
            "connection_closed",
            level=logging.WARNING,
            reason="request_timeout",
            client=self._client,
        )
        self.transport.close()


def protocol_class(seconds: float) -> type[DeadlineH11Protocol]:
    """The protocol class for uvicorn's `http` setting, with its deadline in seconds."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"seconds": seconds})

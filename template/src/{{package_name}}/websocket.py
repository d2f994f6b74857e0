"""The websocket protocol uvicorn runs after each upgrade: uvicorn's websockets-sansio
protocol with the limits that must sit below ASGI (C10, C11, C13, C20).

uvicorn answers pings and reassembles continuation fragments before the application sees
anything, so a frame counter at the ASGI layer never sees a ping flood or a message cut
into thousands of one-byte fragments; it writes pongs and messages to a client that has
stopped reading without bound; it logs a traceback for an invalid UTF-8 text frame; and
after the server's close frame it waits 10 s for the client's. Here:

- every frame the client sends (control frames and fragments included) is paid for from
  one token bucket per connection; a message of more than `MAX_FRAGMENTS` frames, an
  empty bucket or invalid UTF-8 aborts the connection with one security-log line;
- a client whose unsent output passes `send_buffer_bytes` (it does not read what it is
  sent) is aborted: a close would wait for that same buffer to drain;
- after the server's close frame the client has `CLOSE_TIMEOUT_SECONDS` to answer;
- every HTTP response this protocol writes itself (a refused upgrade) carries the
  security headers.

This is a subclass of uvicorn's protocol (uvicorn's `ws` setting takes a class). Upstream:
uvicorn `protocols/websockets/websockets_sansio_impl.py`, `WebSocketsSansIOProtocol` (0.54),
whose `data_received()` feeds websockets' sans-I/O `ServerProtocol` and dispatches each
frame to `handle_text/bytes/cont/ping/pong()` with no budget, and whose `send()` writes
without checking the transport's buffer. It relies on those method names (checked by
`protocol_class()` before anything runs) and on attributes they share (`conn`, `frames`,
`close_timer`, `handshake_complete`, `close_sent`), and on websockets 17's `ServerProtocol`
(`send_response()`, `handshake_exc`, `data_to_send()`). pyproject.toml pins the uvicorn
and websockets ranges this was verified on; re-read both on a bump.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from . import seclog
from .limits import TokenBucket
from .web import ABORT_KEY, SECURITY_HEADERS, STATE_KEY

# Browsers send a message as one frame; no client of this service needs more than a few.
MAX_FRAGMENTS: Final = 16
CLOSE_TIMEOUT_SECONDS: Final = 1.0
_DATA: Final = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})
_HOOKS: Final = (
    "data_received",
    "handle_connect",
    "handle_text",
    "handle_bytes",
    "handle_cont",
    "handle_ping",
    "handle_pong",
    "send_receive_event_to_app",
    "pause_writing",
    "send",
    "shutdown",
)
_HEADERS: Final = tuple((name.decode(), value.decode()) for name, value in SECURITY_HEADERS)
_BAD_REQUEST: Final = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n"
    + b"".join(name + b": " + value + b"\r\n" for name, value in SECURITY_HEADERS)
    + b"\r\n"
)


class _HeaderedServerProtocol(ServerProtocol):
    """websockets' server protocol, adding the security headers (C20) to every response
    it sends: a refused handshake (bad version, missing key), uvicorn's 403 for an upgrade
    the application closed before accepting (python-engineio does that for `EIO=3`), 500s,
    and the guard's refusals."""

    def send_response(self, response: Response) -> None:
        for name, value in _HEADERS:
            if name not in response.headers:
                response.headers[name] = value
        super().send_response(response)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    frame_rate: ClassVar[float] = 100.0
    frame_burst: ClassVar[float] = 200.0
    send_buffer_bytes: ClassVar[int] = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No extensions: permessage-deflate stays off (C10), whatever the config says.
        self.conn = _HeaderedServerProtocol(
            max_size=self.config.ws_max_size, logger=logging.getLogger("uvicorn.error")
        )
        self.close_timeout = CLOSE_TIMEOUT_SECONDS
        self._frames = TokenBucket(rate=self.frame_rate, burst=self.frame_burst)
        self._fragments = 0
        self._cut = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport.set_write_buffer_limits(high=self.send_buffer_bytes)

    # ------------------------------------------------------------------ incoming frames

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._refuse_upgrade()

    def _refuse_upgrade(self) -> None:
        """websockets refused the upgrade request itself (a line over its 8 KiB, more than
        128 headers, a Transfer-Encoding) and queued its answer, or none; uvicorn wrote
        nothing and left the connection open, past every deadline, until a shutdown that
        then failed on it. Answer, with the security headers, and close."""
        output = b"".join(self.conn.data_to_send()) or _BAD_REQUEST
        self.handshake_complete = self.close_sent = True
        client = self.client[0] if self.client else "-"
        seclog.event("request_refused", level=logging.WARNING, reason="bad_upgrade", client=client)
        self.transport.write(output)
        self.transport.close()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope[ABORT_KEY] = self.abort

    def handle_text(self, event: Frame) -> None:
        if self._admit(event):
            super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        if self._admit(event):
            super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        if self._admit(event):
            super().handle_cont(event)

    def handle_ping(self) -> None:
        # websockets has queued the pong already; it is written only if the ping is paid for.
        if self._admit(None):
            super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if self._admit(event):
            super().handle_pong(event)

    def _admit(self, frame: Frame | None) -> bool:
        if self._cut:
            return False
        if not self._frames.take():
            self.abort("frame_flood")
            return False
        if frame is not None and frame.opcode in _DATA:
            self._fragments = self._fragments + 1 if frame.opcode is Opcode.CONT else 1
            if self._fragments > MAX_FRAGMENTS:
                self.abort("fragment_flood")
                return False
        return True

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                text = data.decode()
            except UnicodeDecodeError:
                # uvicorn would log a traceback for this; a client controls it.
                self.frames = []
                self.abort("invalid_utf8")
                return
            self.frames = []
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
            if not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        super().send_receive_event_to_app()

    # ------------------------------------------------------------------ outgoing data

    def pause_writing(self) -> None:
        # The client does not read what it is sent: more output would only queue up here.
        self.abort("slow_reader")

    async def send(self, message: Any) -> None:
        timer = self.close_timer
        await super().send(message)
        if self.close_timer is not None and self.close_timer is not timer:
            # uvicorn closes gracefully when the timer fires, which waits for the client
            # to read; a client that ignores the close frame is cut off instead.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def shutdown(self) -> None:
        # uvicorn sends a 1012 close at shutdown unless it sent a close itself; when the
        # client's close frame has arrived, websockets is closing already, raises, and the
        # whole server shutdown fails with a traceback. That connection only needs closing.
        if self.handshake_complete and not self.close_sent and self.conn.state is not State.OPEN:
            self.close_sent = True
        super().shutdown()

    def abort(self, reason: str | None = None) -> None:
        """Drop the connection at once, with one security-log line when `reason` is given."""
        if self._cut:
            return
        self._cut = True
        if reason is not None:
            state = getattr(self, "scope", {}).get(STATE_KEY)
            if state is not None:  # the guard's line: connection id, subject, origin
                state.closed = True
                state.log("connection_closed", level=logging.WARNING, reason=reason)
            else:
                client = self.client[0] if self.client else "-"
                seclog.event(
                    "connection_closed", level=logging.WARNING, reason=reason, client=client
                )
        self.transport.abort()


def protocol_class(
    *, frame_rate: float, frame_burst: float, send_buffer_bytes: int
) -> type[GuardedWebSocketProtocol]:
    """The protocol class for uvicorn's `ws` setting. Raises if uvicorn's protocol no
    longer has the methods it hooks, rather than serving without the limits."""
    hooked = WebSocketsSansIOProtocol
    missing = [name for name in _HOOKS if not callable(getattr(hooked, name, None))]
    if missing:
        raise RuntimeError(f"uvicorn's websocket protocol changed; missing: {', '.join(missing)}")
    return type(
        "GuardedWebSocketProtocol",
        (GuardedWebSocketProtocol,),
        {
            "frame_rate": frame_rate,
            "frame_burst": frame_burst,
            "send_buffer_bytes": send_buffer_bytes,
        },
    )

"""Socket.IO packets before python-socketio acts on them (C08, C09, C11, C13).

python-socketio 5.18 trusts the packets a client sends more than this service can:
- a client EVENT named `connect` or `disconnect` runs the handlers of those names (the
  session record was dropped while the socket stayed connected and in its rooms), and
  event names that are lists, dicts, numbers or null reach its dispatcher, which fails in
  a task nobody awaits (a traceback in the log);
- a binary packet announces N attachments and the server keeps every binary frame that
  follows until N arrived;
- an ACK nobody asked for is logged as a warning (id 0 even calls a counter object);
- a second CONNECT to a namespace already connected starts a second session on the same
  socket, and a packet it cannot parse becomes a traceback.

`GatedServer` lets through only what the service declared: events whose name is a string
registered with a handler on a namespace the socket is connected to, and ACKs of callbacks
the server asked for. Other event names go to the namespace's catch-all handler (`"*"`,
which the router registers to refuse them against the session's budget); binary packets,
unsolicited ACKs, repeated CONNECTs, events on a namespace not connected and packets that
do not parse cut the connection off with one security-log line.

The checks override python-socketio's packet handlers; `GatedServer()` raises if they are
gone (a release that renamed them) rather than serve ungated.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import socketio

from .guard import connection_state

# Event names python-socketio dispatches to itself ("connect", "disconnect") or treats
# specially ("*", its catch-all), whatever a client sends.
RESERVED_EVENTS: Final = frozenset({"connect", "disconnect", "connect_error", "*"})
CATCH_ALL: Final = "*"
# A refused event's name as the catch-all sees it, when the name itself is not a string.
NOT_A_NAME: Final = "<not-a-string>"
# Socket.IO packet types 5 (BINARY_EVENT) and 6 (BINARY_ACK): the service takes no binary.
_BINARY_TYPES: Final = frozenset("56")
# Refused CONNECTs a socket may make before it is cut off: each costs a token check.
MAX_CONNECT_REFUSALS: Final = 3
_INTERNALS: Final = (
    "_handle_eio_connect",
    "_handle_eio_message",
    "_handle_connect",
    "_handle_event",
    "_handle_ack",
)


class GatedServer(socketio.AsyncServer):  # type: ignore[misc]  # the library has no types
    def __init__(self, **kwargs: Any) -> None:
        library = socketio.AsyncServer
        missing = [name for name in _INTERNALS if not callable(getattr(library, name, None))]
        if missing:
            raise RuntimeError(f"python-socketio changed; cannot gate: {', '.join(missing)}")
        super().__init__(**kwargs)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        state = connection_state(environ)
        if state is not None:
            state.release = functools.partial(self._release, eio_sid)

    async def _release(self, eio_sid: str) -> None:
        """End the Engine.IO session of a websocket that is gone. python-engineio ends it
        itself when its websocket handler returns, but not when the handler raised on a
        malformed Engine.IO packet: the session, its namespaces and their sessions stayed."""
        socket = self.eio.sockets.pop(eio_sid, None)
        if socket is not None and not socket.closed:
            await socket.close(wait=False, abort=True)
            socket.queue.put_nowait(None)

    async def _handle_eio_message(self, eio_sid: str, data: object) -> None:
        if not isinstance(data, str) or data[:1] in _BINARY_TYPES:
            self._cut_off(eio_sid, "binary_refused")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:  # noqa: BLE001 - a packet that does not parse
            self._cut_off(eio_sid, "malformed_packet", error=type(exc).__name__)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: object) -> None:
        namespace = namespace or "/"
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            self._cut_off(eio_sid, "duplicate_connect", namespace=namespace)
            return
        await super()._handle_connect(eio_sid, namespace, data)
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is None:
            state = connection_state(self.environ.get(eio_sid, {}))
            if state is not None:
                state.connect_refusals += 1
                if state.connect_refusals >= MAX_CONNECT_REFUSALS:
                    self._cut_off(eio_sid, "connect_refused_repeatedly")

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: object
    ) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            self._cut_off(eio_sid, "namespace_not_connected", namespace=namespace)
            return
        if not isinstance(data, list) or not data:
            self._cut_off(eio_sid, "malformed_packet")
            return
        name = data[0]
        if not isinstance(name, str) or name in RESERVED_EVENTS:
            # python-socketio sends names it has no handler for to the catch-all.
            label = NOT_A_NAME if not isinstance(name, str) else f"<{name}>"
            data = [label, *data[1:]]
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_ack(
        self, eio_sid: str, namespace: str | None, id: int | None, data: object
    ) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        # Key 0 of python-socketio's callback table is its id counter, not a callback.
        pending = self.manager.callbacks.get(sid, {})
        if not id or id not in pending:
            self._cut_off(eio_sid, "unexpected_ack", namespace=namespace)
            return
        await super()._handle_ack(eio_sid, namespace, id, data)

    def _cut_off(
        self, eio_sid: str, reason: str, *, namespace: str | None = None, error: str | None = None
    ) -> None:
        state = connection_state(self.environ.get(eio_sid, {}))
        if state is not None:
            state.abort(reason, namespace=namespace, error=error)

    async def close_transport(self, eio_sid: str) -> None:
        """Close the websocket `eio_sid` after what is queued for it has been written.

        `disconnect()` sends the Socket.IO DISCONNECT packet and leaves the Engine.IO
        websocket open for as long as the client keeps answering pings; a client that
        ignores the packet would keep receiving broadcasts to the rooms it is still in.
        """
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        # Engine.IO's own close: the disconnect handlers of every namespace, a CLOSE packet.
        await socket.close(wait=False)
        # Engine.IO's writer stops at None, after what is queued, and closes the websocket;
        # the websocket protocol gives the client 1 s to answer the close frame.
        socket.queue.put_nowait(None)

"""The gate in front of python-engineio for every websocket, before any packet is read:
the origin (C03), connection caps per client address and in total (C11), and the deadline
to authenticate (C11), which applies again whenever the websocket has no connected
namespace. (Every frame is counted below ASGI, in `websocket.py`.) The client address is
the ASGI peer, rewritten by uvicorn only for configured proxies (C12)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from . import seclog
from .limits import ConnectionCaps
from .settings import Settings
from .web import (
    ABORT_KEY,
    STATE_KEY,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    deny_websocket,
    with_security_headers,
)

CLOSE_POLICY: Final = 1008
CLOSE_PROTOCOL_ERROR: Final = 1002
REFUSAL_STATUS: Final = {
    "origin_refused": 403,
    "origin_missing": 403,
    "address_cap": 429,
    "total_cap": 503,
}


@dataclass(slots=True)
class ConnectionState:
    """What the guard knows of one websocket; the connect handlers count its namespaces."""

    address: str
    origin: str | None
    id: int = 0  # the connection's number in the security log (`conn=`)
    sub: str | None = None
    closed: bool = False
    namespaces: int = 0  # connected Socket.IO namespaces
    connect_refusals: int = 0
    tasks: set[asyncio.Task[None]] | None = None  # made when a task is first started
    on_authenticated: Callable[[], object] | None = None
    on_idle: Callable[[], object] | None = None
    abort_transport: Callable[[], object] | None = None
    release: Callable[[], Awaitable[None]] | None = None  # ends the Engine.IO session

    @property
    def authenticated(self) -> bool:
        return self.namespaces > 0

    def authenticate(self, sub: str) -> None:
        self.sub = sub
        self.namespaces += 1
        if self.on_authenticated is not None:
            self.on_authenticated()

    def namespace_closed(self) -> None:
        """A namespace disconnected; with none left, the connect deadline applies again."""
        self.namespaces = max(0, self.namespaces - 1)
        if self.namespaces == 0 and not self.closed and self.on_idle is not None:
            self.on_idle()

    def abort(self, reason: str, *, namespace: str | None = None, error: str | None = None) -> None:
        """Cut the connection off at once (no close handshake), with one log line."""
        if self.closed:
            return
        self.closed = True
        self.log(
            "connection_closed",
            level=logging.WARNING,
            reason=reason,
            namespace=namespace,
            error=error,
        )
        if self.abort_transport is not None:
            self.abort_transport()

    def log(
        self,
        event: str,
        *,
        level: int = logging.INFO,
        reason: str | None = None,
        sub: str | None = None,
        **detail: object,
    ) -> None:
        """One security-log line about this connection: reason, subject, client, origin."""
        fields: dict[str, object] = {"reason": reason} if reason else {}
        fields |= {
            "sub": sub or self.sub,
            "conn": self.id,
            "client": self.address,
            "origin": self.origin,
        }
        fields |= {name: value for name, value in detail.items() if value is not None}
        seclog.event(event, level=level, **fields)


def connection_state(environ: dict[str, Any]) -> ConnectionState | None:
    """The guard's state for the websocket behind an engineio `environ`."""
    state = environ.get("asgi.scope", {}).get(STATE_KEY)
    return state if isinstance(state, ConnectionState) else None


def peer_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def _origin(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return bytes(value).decode("latin-1")
    return None


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self._app = app
        self._origins = frozenset(settings.cors_allowed_origins)
        self._require_origin = settings.require_origin
        self._caps = ConnectionCaps(
            total=settings.max_connections, per_address=settings.max_connections_per_address
        )
        self._deadlines = _Deadlines(settings.connect_timeout_seconds)
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The one place the C20 headers are added: every HTTP response, python-engineio's
        # own 400s and every refused websocket upgrade included.
        send = with_security_headers(send)
        if scope["type"] != "websocket":
            await self._app(scope, receive, send)
            return
        state = ConnectionState(
            address=peer_address(scope), origin=_origin(scope), id=next(self._ids)
        )
        reason = self._origin_refusal(state.origin) or self._caps.acquire(state.address)
        if reason is not None:
            state.log("connection_refused", level=logging.WARNING, reason=reason)
            await deny_websocket(scope, receive, send, REFUSAL_STATUS[reason], reason)
            return
        try:
            await self._serve(scope, receive, send, state)
        finally:
            self._caps.release(state.address)
            state.closed = True
            for task in state.tasks or ():
                task.cancel()

    def _origin_refusal(self, origin: str | None) -> str | None:
        # python-engineio checks the origin too; refusing here first keeps the connection
        # out of the caps and gives the refusal a security-log line and headers.
        if origin is None:
            return "origin_missing" if self._require_origin else None
        return None if origin in self._origins else "origin_refused"

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, state: ConnectionState
    ) -> None:
        scope[STATE_KEY] = state
        state.abort_transport = scope.get(ABORT_KEY)
        websocket = _GuardedWebsocket(state, receive, send)
        self._deadlines.add(websocket)
        state.on_authenticated = functools.partial(self._deadlines.discard, websocket)
        state.on_idle = functools.partial(self._deadlines.add, websocket)
        try:
            await self._app(scope, websocket.receive, websocket.send)
        except Exception as exc:  # noqa: BLE001
            # python-engineio raises on some malformed packets (bad types, namespaces,
            # attachment counts). uvicorn would log a traceback with packet fragments for
            # each: a log flood that the client controls. One line, then a protocol close.
            await websocket.close("protocol_error", CLOSE_PROTOCOL_ERROR, type(exc).__name__)
        finally:
            self._deadlines.discard(websocket)
            # Whatever ended the websocket, its Engine.IO session ends with it.
            if state.release is not None:
                await state.release()


class _GuardedWebsocket:
    """The ASGI `send` the application gets for one websocket: nothing sent after a close.
    (One small object per connection rather than a closure: thousands of them stay open.)"""

    __slots__ = ("_send", "_state", "receive")

    def __init__(self, state: ConnectionState, receive: Receive, send: Send) -> None:
        self._state, self.receive, self._send = state, receive, send

    async def close(self, reason: str, code: int = CLOSE_POLICY, error: str | None = None) -> None:
        if not self._state.closed:
            self._state.log("connection_closed", level=logging.WARNING, reason=reason, error=error)
            await self.send({"type": "websocket.close", "code": code})

    async def send(self, message: Message) -> None:
        # After a close the libraries may still try to write; uvicorn would raise.
        if self._state.closed:
            return
        if message["type"] == "websocket.close":
            self._state.closed = True
        await self._send(message)

    def on_deadline(self) -> None:
        state = self._state
        if not state.authenticated and not state.closed:
            task = asyncio.get_running_loop().create_task(self.close("connect_timeout"))
            if state.tasks is None:
                state.tasks = set()
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)


class _Deadlines:
    """Closes the websockets that have not authenticated `seconds` after they opened, with
    one timer for all of them: a timer per connection would stay in the event loop's heap
    long after most clients authenticate, a few hundred bytes each."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        # Every deadline is "opened + seconds", so insertion order is deadline order.
        self._pending: dict[_GuardedWebsocket, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, websocket: _GuardedWebsocket) -> None:
        self._pending.pop(websocket, None)  # re-added at the end, keeping the order
        self._pending[websocket] = asyncio.get_running_loop().time() + self._seconds
        if self._timer is None:
            self._arm()

    def discard(self, websocket: _GuardedWebsocket) -> None:
        self._pending.pop(websocket, None)

    def _arm(self) -> None:
        first = next(iter(self._pending.values()))
        self._timer = asyncio.get_running_loop().call_at(first, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        # The loop may run a timer up to its clock resolution early: count that as due.
        now = asyncio.get_running_loop().time() + 0.001
        while self._pending:
            websocket, due = next(iter(self._pending.items()))
            if due > now:
                self._arm()
                return
            del self._pending[websocket]
            websocket.on_deadline()

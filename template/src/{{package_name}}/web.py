"""The HTTP surface (C20, C21): `/healthz`, `/readyz`, 404s and refused websocket upgrades, and the
security headers that the guard adds to each of them. There is no admin UI and no listing
of rooms or sessions."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=63072000"),
)
# Keys of the ASGI scope of a websocket: the guard's state of the connection, and the
# websocket protocol's way to drop it at once.
STATE_KEY: Final = "guard.state"
ABORT_KEY: Final = "transport.abort"
_JSON: Final = (b"content-type", b"application/json")
_RESPONSE_STARTS: Final = frozenset({"http.response.start", "websocket.http.response.start"})


def _body(error: str) -> bytes:
    return json.dumps({"error": error}).encode()


Hook = Callable[[], Awaitable[None]]
# Parts of the service with a state of their own (the message queue): name -> "up"/"down".
Health = Callable[[], Mapping[str, str]]


def http_app(
    *, startup: Sequence[Hook] = (), shutdown: Sequence[Hook] = (), health: Health | None = None
) -> ASGIApp:
    """Everything that is not Socket.IO: lifespan (with the service's start and stop
    hooks), `/healthz`, `/readyz` and 404s.

    `/healthz` answers 200 while the process serves, with `"status": "degraded"` when a
    part is down (local traffic still flows); `/readyz` answers 503 then, for a balancer
    that should prefer other nodes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, startup, shutdown)
            return
        if scope["type"] == "websocket":
            await deny_websocket(scope, receive, send, 404, "not_found")
            return
        if scope["path"] in {"/healthz", "/readyz"} and scope.get("method") in {"GET", "HEAD"}:
            parts = dict(health() if health is not None else {})
            degraded = "down" in parts.values()
            document = {"status": "degraded" if degraded else "ok", **parts}
            status = 503 if degraded and scope["path"] == "/readyz" else 200
            body = json.dumps(document, separators=(",", ":")).encode()
        else:
            status, body = 404, _body("not_found")
        await send({"type": "http.response.start", "status": status, "headers": [_JSON]})
        await send({"type": "http.response.body", "body": body})

    return app


async def _lifespan(
    receive: Receive, send: Send, startup: Sequence[Hook], shutdown: Sequence[Hook]
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                for hook in startup:
                    await hook()
            except Exception as exc:  # noqa: BLE001 - uvicorn reports it and exits
                await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for hook in shutdown:
                await hook()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def deny_websocket(
    scope: Scope, receive: Receive, send: Send, status: int, error: str
) -> None:
    """Refuse a websocket upgrade with an HTTP response (the ASGI denial-response
    extension), or a bare close where the server lacks it."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        start = {"type": "websocket.http.response.start", "status": status, "headers": [_JSON]}
        await send(start)
        await send({"type": "websocket.http.response.body", "body": _body(error)})
    else:
        await send({"type": "websocket.close", "code": 1008})


def with_security_headers(send: Send) -> Send:
    """`send` that adds the security headers a response does not set itself."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] in _RESPONSE_STARTS:
            present = {bytes(name).lower() for name, _ in message.get("headers", ())}
            extra = [header for header in SECURITY_HEADERS if header[0] not in present]
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_headers

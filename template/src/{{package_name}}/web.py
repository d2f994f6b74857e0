"""The HTTP surface (C20, C21): `/healthz`, 404s and refused websocket upgrades, each with
the security headers. There is no admin UI and no listing of rooms or sessions."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
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
_JSON: Final = (b"content-type", b"application/json")


def _body(error: str) -> bytes:
    return json.dumps({"error": error}).encode()


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Everything that is not Socket.IO: lifespan, `/healthz` and 404s."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await deny_websocket(scope, receive, send, 404, "not_found")
        return
    if scope["path"] == "/healthz" and scope.get("method") in {"GET", "HEAD"}:
        status, body = 200, b'{"status":"ok"}'
    else:
        status, body = 404, _body("not_found")
    await send(
        {"type": "http.response.start", "status": status, "headers": [_JSON, *SECURITY_HEADERS]}
    )
    await send({"type": "http.response.body", "body": body})


async def deny_websocket(
    scope: Scope, receive: Receive, send: Send, status: int, error: str
) -> None:
    """Refuse a websocket upgrade with an HTTP response that carries the security headers
    (the ASGI denial-response extension), or a bare close where the server lacks it."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [_JSON, *SECURITY_HEADERS]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": _body(error)})
    else:
        await send({"type": "websocket.close", "code": 1008})

"""The server factory: the Socket.IO server, its HTTP neighbour, and the uvicorn config.

`create_app(settings)` builds everything from an explicit settings object; nothing happens
at import time. Controls: websocket-only (C02), exact origin list (C03), CONNECT-time JWT
(C04), size limits (C10), security headers on HTTP responses (C20); no admin UI (C21).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import socketio
import uvicorn

from . import events, keys, seclog, tls
from .auth import AuthError, TokenVerifier
from .dispatch import SESSION_IDENTITY, Router
from .settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SOCKETIO_PATH: Final = "socket.io"
SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=63072000"),
)
_log = logging.getLogger(__name__)


def create_app(settings: Settings, *, key_source: keys.KeySource | None = None) -> ASGIApp:
    verifier = TokenVerifier(
        keys=key_source if key_source is not None else keys.key_source(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway_seconds,
    )
    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=["websocket"],
        allow_upgrades=False,
        # Exact strings; never "*" and never [] (which switches the check off).
        cors_allowed_origins=list(settings.cors_allowed_origins),
        cors_credentials=False,
        max_http_buffer_size=settings.max_message_bytes,
        # Loggers pinned at WARNING (see seclog); passing them, rather than False, also
        # stops the libraries adding a stderr handler of their own.
        logger=seclog.pinned_logger("socketio.server"),
        engineio_logger=seclog.pinned_logger("engineio.server"),
    )

    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        client, origin = seclog.client_address(environ), environ.get("HTTP_ORIGIN")
        if origin is None and settings.require_origin:
            seclog.event("connect_refused", reason="origin_missing", client=client, origin=None)
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        try:
            identity = await verifier.verify_auth(auth)
        except AuthError as exc:
            seclog.event("connect_refused", reason=exc.reason, client=client, origin=origin)
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        except Exception as exc:  # noqa: BLE001 - anything else must refuse, not accept
            _log.error("connect handler failed error=%s", type(exc).__name__)
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        await sio.save_session(sid, {SESSION_IDENTITY: identity})
        seclog.event("connected", sub=identity.sub, client=client, origin=origin)

    sio.on("connect", handler=connect)
    events.register(Router(sio), sio)
    return socketio.ASGIApp(sio, other_asgi_app=http_app, socketio_path=SOCKETIO_PATH)  # type: ignore[no-any-return]


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Everything that is not Socket.IO: lifespan, `/healthz`, and 404s, with C20 headers."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    if scope["path"] == "/healthz" and scope.get("method") in {"GET", "HEAD"}:
        status, body = 200, b'{"status":"ok"}'
    else:
        status, body = 404, b'{"error":"not_found"}'
    headers = [(b"content-type", b"application/json"), *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def uvicorn_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """The server configuration that `serve` and the tests run: TLS and size limits."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS certificate and key are required")
    context = tls.server_context(settings.tls_cert_file, settings.tls_key_file)
    seclog.harden_server_loggers(settings.log_level)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context_factory=lambda _config, _default: context,
        ws="websockets-sansio",
        # uvicorn's own default is 16 MiB and applies before python-engineio's limit.
        ws_max_size=settings.max_message_bytes,
        # Compression invites decompression bombs and CRIME-style length leaks.
        ws_per_message_deflate=False,
        # Access logs would record query strings, where careless clients put tokens.
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )

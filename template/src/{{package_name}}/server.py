"""The server factory: the Socket.IO server behind its guard, and the uvicorn config.

`create_app(settings)` and `uvicorn_config()` build everything from an explicit settings
object and change nothing outside what they build (`build_service()` is the Socket.IO part
of `create_app`, whose routers `asyncapi.py` describes); `prepare_process()` holds the
process-wide changes, made once before serving. Nothing happens at import time.

Controls: websocket-only (C02), exact origin list (C03, also in the guard), CONNECT-time
JWT (C04), session expiry and revocation (C06, C07), per-event scopes (C08), size limits
(C10), rate and connection limits (C11), client address (C12), security headers (C20); no
admin UI (C21).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import socketio
import uvicorn

from . import asynciotls, events, http11, keys, listener, revocations, seclog, tls, websocket
from .auth import TokenVerifier
from .cluster import Cluster
from .dispatch import Router
from .guard import Guard
from .lifecycle import ADMIN_NAMESPACE, ADMIN_SCOPE, Lifecycle
from .limits import AcceptCaps
from .packets import GatedServer
from .schemas import Reauth, Revoke
from .sessions import Sessions
from .settings import Settings
from .web import ASGIApp, http_app

SOCKETIO_PATH: Final = "socket.io"


@dataclass(frozen=True, slots=True)
class Service:
    """The Socket.IO server with every handler registered, and what the app around it needs."""

    sio: GatedServer
    lifecycle: Lifecycle
    routers: tuple[Router, ...]
    cluster: Cluster | None


def build_service(settings: Settings, *, key_source: keys.KeySource | None = None) -> Service:
    verifier = TokenVerifier(
        keys=key_source if key_source is not None else keys.key_source(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway_seconds,
        max_lifetime=settings.max_token_lifetime_seconds,
        required_type=settings.jwt_required_type,
    )
    deny_list = revocations.Revocations(
        settings.revocation_ttl_seconds, revocations.file_of(settings)
    )
    # With a message queue, python-socketio's Redis manager, bounded (see cluster).
    cluster = Cluster(settings, deny_list) if settings.message_queue_url is not None else None
    # python-socketio's server with its packet handlers gated (see packets).
    sio = GatedServer(
        client_manager=cluster.manager if cluster is not None else None,
        async_mode="asgi",
        transports=["websocket"],
        allow_upgrades=False,
        # Exact strings; never "*" and never [] (which switches the check off).
        cors_allowed_origins=list(settings.cors_allowed_origins),
        cors_credentials=False,
        max_http_buffer_size=settings.max_message_bytes,
        # Set here rather than left to the library's defaults: together they bound how
        # long a half-open connection lingers.
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
        # Loggers pinned at WARNING (see seclog); passing them, rather than False, also
        # stops the libraries adding a stderr handler of their own.
        logger=seclog.pinned_logger("socketio.server"),
        engineio_logger=seclog.pinned_logger("engineio.server"),
    )
    sessions, admin_sessions = Sessions(), Sessions()
    lifecycle = Lifecycle(sio, sessions, admin_sessions, verifier, settings, deny_list, cluster)
    strikes = max(1, settings.event_burst)

    sio.on("connect", handler=lifecycle.connect)
    sio.on("disconnect", handler=lifecycle.disconnect)
    router = Router(sio, sessions, lifecycle.end, strikes=strikes)
    router.on("reauth", Reauth, lifecycle.reauth, scope=None)
    events.register(router, sio, max_rooms=settings.max_rooms_per_connection)

    sio.on("connect", handler=lifecycle.admin_connect, namespace=ADMIN_NAMESPACE)
    sio.on("disconnect", handler=lifecycle.admin_disconnect, namespace=ADMIN_NAMESPACE)
    admin = Router(sio, admin_sessions, lifecycle.end, strikes=strikes, namespace=ADMIN_NAMESPACE)
    admin.on("revoke", Revoke, lifecycle.revoke, scope=ADMIN_SCOPE)
    return Service(sio, lifecycle, (router, admin), cluster)


def create_app(settings: Settings, *, key_source: keys.KeySource | None = None) -> ASGIApp:
    service = build_service(settings, key_source=key_source)
    sio, lifecycle, cluster = service.sio, service.lifecycle, service.cluster
    if cluster is None:
        web = http_app()
    else:

        async def join_cluster() -> None:
            await cluster.start(sio, lifecycle.revoked_elsewhere, lifecycle.is_open)

        web = http_app(startup=[join_cluster], shutdown=[cluster.stop], health=cluster.health)
    app = socketio.ASGIApp(sio, other_asgi_app=web, socketio_path=SOCKETIO_PATH)
    return Guard(app, settings)


def uvicorn_config(
    settings: Settings, app: ASGIApp, *, tls_context: tls.ServerContext | None = None
) -> uvicorn.Config:
    """The server configuration that `serve` and the tests run: TLS and size limits.
    Serve it after `prepare_process()`. `tls_context` is the listener's context when the
    caller made it (`serve`: a `reload.Reloader`'s); built from `settings` otherwise."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS certificate and key are required")
    context = tls_context or tls.server_context(
        settings.tls_cert_file,
        settings.tls_key_file,
        handshake_seconds=settings.request_timeout_seconds,
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context_factory=lambda _config, _default: context,
        # The standard library's event loop whatever else is installed (uvicorn would pick
        # uvloop if present, whose TLS layer asynciotls does not reach).
        loop="asyncio",
        # uvicorn's h11 protocol with a deadline for every request (C11; see http11).
        http=http11.protocol_class(settings.request_timeout_seconds),
        # uvicorn's websockets protocol with frame, fragment and write-buffer limits (C11).
        ws=websocket.protocol_class(
            frame_rate=settings.max_frames_per_second,
            frame_burst=2 * settings.max_frames_per_second,
            send_buffer_bytes=settings.send_buffer_bytes,
        ),
        # Engine.IO's heartbeat watches the connection; websocket pings would only add frames.
        ws_ping_interval=None,
        # uvicorn's own default is 16 MiB and applies before python-engineio's limit.
        ws_max_size=settings.max_message_bytes,
        # Compression invites decompression bombs and CRIME-style length leaks.
        ws_per_message_deflate=False,
        # Access logs would record query strings, where careless clients put tokens.
        access_log=False,
        # Forwarded headers only from the configured proxies (C12); none by default.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips) or None,
        server_header=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def prepare_process(settings: Settings) -> None:
    """The process-wide changes serving needs, made once before serving (`serve`, the test
    servers): uvicorn's loggers hardened (see seclog) and asyncio's TLS layer patched for
    the handshake deadline, the failed-handshake log line and the shared receive buffer
    (see asynciotls, which keeps asyncio's own behaviour where it cannot, and says so)."""
    seclog.harden_server_loggers(settings.log_level)
    asynciotls.install()


def listen(settings: Settings, *, port: int | None = None) -> listener.Listener:
    """The server's listening socket, with its accept-time caps (C11). TCP connections are
    capped at twice the websocket caps: room for connections still in their TLS handshake
    or upgrade request, while the guard answers the websockets over its caps with a 429 or
    503 and the security headers."""
    caps = AcceptCaps(
        total=2 * settings.max_connections,
        per_address=2 * settings.max_connections_per_address,
        rate=settings.connections_per_second_per_address,
        burst=2 * settings.connections_per_second_per_address,
        exempt=frozenset(settings.forwarded_allow_ips),
    )
    return listener.bind(settings.host, settings.port if port is None else port, caps)

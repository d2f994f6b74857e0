"""The life of a session: connect (C04), expiry (C06), reauth (C06), revocation (C07),
and ending a session with a notice. Wired to the server in `server.py`; with a message
queue, revocations and the per-subject cap hold on every node (see cluster.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, NoReturn

import socketio

from . import seclog
from .auth import AuthError, Identity, TokenVerifier
from .cluster import Cluster
from .dispatch import ERROR_MESSAGES, Ack, Context, error, ok
from .guard import connection_state
from .limits import TokenBucket
from .packets import GatedServer
from .revocations import Revocations
from .schemas import Notice, NoticeCode, Reauth, Revoke
from .sessions import Session, Sessions
from .settings import Settings

ADMIN_NAMESPACE: Final = "/admin"
ADMIN_SCOPE: Final = "admin:revoke"


class Lifecycle:
    def __init__(
        self,
        sio: GatedServer,
        sessions: Sessions,
        admin_sessions: Sessions,
        verifier: TokenVerifier,
        settings: Settings,
        revocations: Revocations,
        cluster: Cluster | None = None,
    ) -> None:
        self._sio = sio
        self._sessions = sessions
        self._admin_sessions = admin_sessions
        self._verifier = verifier
        self._settings = settings
        self._revocations = revocations
        self._cluster = cluster
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ connect

    async def connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        identity = await self._authenticate(environ, auth, namespace="/")
        conn = await self._admit(sid, environ, identity, self._sessions, "/")
        session = self._sessions.open(sid, identity, self._event_bucket(), conn)
        self._schedule_expiry(session)
        self._schedule_idle(session)

    async def admin_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        identity = await self._authenticate(environ, auth, namespace=ADMIN_NAMESPACE)
        if ADMIN_SCOPE not in identity.scopes:
            self._refused(environ, "admin_scope_missing", ADMIN_NAMESPACE, identity.sub)
        conn = await self._admit(sid, environ, identity, self._admin_sessions, ADMIN_NAMESPACE)
        session = self._admin_sessions.open(sid, identity, self._event_bucket(), conn)
        self._schedule_expiry(session, namespace=ADMIN_NAMESPACE)
        self._schedule_idle(session, namespace=ADMIN_NAMESPACE)

    async def _admit(
        self,
        sid: str,
        environ: dict[str, Any],
        identity: Identity,
        registry: Sessions,
        namespace: str,
    ) -> int:
        """The last check before a session opens: the subject's session cap (C11). A stolen
        token cannot open thousands of sessions, each with its own event budget. With a
        queue the cap counts every node's sessions; while the queue cannot say, this node's
        own. Returns the connection's number in the security log."""
        cap = self._settings.max_sessions_per_subject
        if len(registry.sids_of(identity.sub)) >= cap:
            self._refused(environ, "subject_cap", namespace, identity.sub)
        if self._cluster is not None and (
            await self._cluster.claim(namespace, identity.sub, sid, cap) is False
        ):
            self._cluster.release(namespace, sid)
            self._refused(environ, "subject_cap", namespace, identity.sub)
        state = connection_state(environ)
        if state is None:  # _authenticate refused these already
            self._refused(environ, "unguarded", namespace)
        state.authenticate(identity.sub)
        state.log("connected", namespace=namespace)
        return state.id

    async def _authenticate(
        self, environ: dict[str, Any], auth: object, *, namespace: str
    ) -> Identity:
        state = connection_state(environ)
        if state is None:  # not behind the guard: fail closed
            self._refused(environ, "unguarded", namespace)
        try:
            identity = await self._verifier.verify_auth(auth)
        except AuthError as exc:
            self._refused(environ, exc.reason, namespace)
        except Exception as exc:  # noqa: BLE001 - anything else must refuse, not accept
            # The class only: a traceback or message could carry token material.
            logging.getLogger(__name__).error("connect failed error=%s", type(exc).__name__)  # noqa: TRY400
            self._refused(environ, "internal", namespace)
        if self._revocations.refuses(identity):
            self._refused(environ, "token_revoked", namespace, identity.sub)
        return identity

    def _refused(
        self, environ: dict[str, Any], reason: str, namespace: str, sub: str | None = None
    ) -> NoReturn:
        state = connection_state(environ)
        if state is None:
            seclog.event("connect_refused", level=logging.WARNING, reason=reason)
        else:
            state.log(
                "connect_refused",
                level=logging.WARNING,
                reason=reason,
                sub=sub,
                namespace=namespace,
            )
        raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    def _event_bucket(self) -> TokenBucket | None:
        rate = self._settings.events_per_second
        return TokenBucket(rate=rate, burst=self._settings.event_burst) if rate > 0 else None

    async def disconnect(self, sid: str, reason: object = None) -> None:
        self._closed(self._sessions, sid, "/")

    async def admin_disconnect(self, sid: str, reason: object = None) -> None:
        self._closed(self._admin_sessions, sid, ADMIN_NAMESPACE)

    def _closed(self, registry: Sessions, sid: str, namespace: str) -> None:
        if self._cluster is not None:
            self._cluster.release(namespace, sid)
        if registry.close(sid) is None:
            return
        state = connection_state(self._sio.get_environ(sid, namespace) or {})
        if state is not None:
            state.namespace_closed()

    # ------------------------------------------------------------------ expiry

    def _ends_at(self, session: Session) -> float:
        """When the session ends: its token's expiry, and never later than
        `max_session_seconds` after it opened, however often it was renewed."""
        return min(
            session.identity.expires_at, session.opened_at + self._settings.max_session_seconds
        )

    def _schedule_expiry(self, session: Session, namespace: str = "/") -> None:
        if session.expiry is not None:
            session.expiry.cancel()
        delay = max(0.0, self._ends_at(session) - time.time())
        session.expiry = asyncio.get_running_loop().call_later(
            delay, self._end_later, session.sid, "auth_expired", namespace
        )

    def _schedule_idle(self, session: Session, namespace: str = "/", delay: float = 0.0) -> None:
        timeout = self._settings.idle_timeout_seconds
        if timeout > 0:
            session.idle = asyncio.get_running_loop().call_later(
                delay or timeout, self._check_idle, session, namespace
            )

    def _check_idle(self, session: Session, namespace: str) -> None:
        # One timer per session, re-armed for what is left rather than on every event.
        left = session.last_event + self._settings.idle_timeout_seconds - time.monotonic()
        if left > 0:
            self._schedule_idle(session, namespace, delay=left)
        else:
            self._end_later(session.sid, "idle_timeout", namespace)

    def _end_later(self, sid: str, code: NoticeCode, namespace: str) -> None:
        task = asyncio.get_running_loop().create_task(self.end(sid, code, namespace))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def end(self, sid: str, code: NoticeCode, namespace: str = "/") -> None:
        """End a session: a notice with `code`, the Socket.IO disconnect, and then the
        connection itself, whatever the client does with the notice."""
        registry = self._admin_sessions if namespace == ADMIN_NAMESPACE else self._sessions
        session = registry.get(sid)
        if session is None:
            return
        seclog.event(
            "session_ended",
            reason=code,
            sub=session.identity.sub,
            conn=session.conn,
            namespace=namespace,
        )
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, namespace)
        # The session is on this node: no need to publish its notice to the others.
        notice = Notice(code=code, message=ERROR_MESSAGES[code]).model_dump()
        await self._sio.emit(code, notice, to=sid, namespace=namespace, ignore_queue=True)
        await self._sio.disconnect(sid, namespace=namespace)
        if eio_sid is not None:
            await self._sio.close_transport(eio_sid)

    async def reauth(self, ctx: Context, payload: Reauth) -> Ack:
        """Extend the session with a fresh token for the same subject."""
        session = self._sessions.get(ctx.sid)
        if session is None:
            return error("forbidden")
        try:
            identity = await self._verifier.verify(payload.token)
        except AuthError as exc:
            seclog.event(
                "reauth_refused",
                level=logging.WARNING,
                reason=exc.reason,
                sub=ctx.identity.sub,
                conn=session.conn,
            )
            return error("forbidden")
        if self._revocations.refuses(identity):
            seclog.event(
                "reauth_refused",
                level=logging.WARNING,
                reason="token_revoked",
                sub=identity.sub,
                conn=session.conn,
            )
            return error("forbidden")
        if identity.sub != session.identity.sub:
            seclog.event(
                "reauth_refused",
                level=logging.WARNING,
                reason="subject_changed",
                sub=ctx.identity.sub,
                conn=session.conn,
            )
            return error("forbidden")
        session.identity = identity
        self._schedule_expiry(session)
        seclog.event("reauthenticated", sub=identity.sub, conn=session.conn)
        return ok(expires_at=self._ends_at(session))

    # ------------------------------------------------------------------ revocation

    async def revoke(self, ctx: Context, payload: Revoke) -> Ack:
        """Refuse the subject's current tokens, and disconnect every connection of it, each
        after a `revoked` notice: here, and through the queue on every other node. `shared`
        is False when the queue is lost: the other nodes learn it when it is back."""
        at = time.time()
        self._revocations.record(payload.sub, at)
        await self._revocations.save()
        shared = None
        if self._cluster is not None:
            shared = await self._cluster.share_revocation(payload.sub, at)
        ended = await self._end_revoked(payload.sub)
        seclog.event(
            "revoked", sub=payload.sub, by=ctx.identity.sub, connections=ended, shared=shared
        )
        queue = {} if shared is None else {"shared": shared}
        return ok(sub=payload.sub, disconnected=ended, **queue)

    def is_open(self, namespace: str, sid: str) -> bool:
        registry = self._admin_sessions if namespace == ADMIN_NAMESPACE else self._sessions
        return registry.get(sid) is not None

    async def revoked_elsewhere(self, sub: str) -> None:
        """A revocation made on another node (or read from the shared deny-list)."""
        ended = await self._end_revoked(sub)
        if ended:
            seclog.event("revoked", sub=sub, by="queue", connections=ended)

    async def _end_revoked(self, sub: str) -> int:
        ended = 0
        for registry, namespace in (
            (self._sessions, "/"),
            (self._admin_sessions, ADMIN_NAMESPACE),
        ):
            for sid in registry.sids_of(sub):
                session = registry.get(sid)
                if session is not None and self._revocations.refuses(session.identity):
                    await self.end(sid, "revoked", namespace)
                    ended += 1
        return ended

"""Every client event goes through one path: session and expiry (C06), rate limit (C11),
scope (C08), schema (C09), handler.

Handlers receive a validated payload and the caller's identity and return an ack
envelope: `{"ok": true, ...}` or `{"ok": false, "error": {"code": C, "message": M}}` with a
stable code. No exception escapes to python-socketio, so a hostile payload costs the
sender an error ack and nothing else.

Each router keeps what it registered (`Router.registrations`): the event names, schemas
and scopes of the service's API, which `asyncapi.py` describes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, get_args

import socketio
from pydantic import BaseModel, ValidationError

from . import seclog
from .auth import Identity
from .packets import CATCH_ALL
from .schemas import ErrorCode, NoticeCode
from .sessions import Session, Sessions

Ack = dict[str, Any]
P = TypeVar("P", bound=BaseModel)
Handler = Callable[["Context", P], Awaitable[Ack]]
EndSession = Callable[[str, NoticeCode, str], Coroutine[Any, Any, None]]

# Every code of schemas.ErrorCode, with its message (the template's tests check both agree).
ERROR_MESSAGES: Final[Mapping[ErrorCode, str]] = {
    "invalid_payload": "the payload does not match the event's schema",
    "forbidden": "the token does not grant this event",
    "rate_limited": "too many events; slow down",
    "not_member": "join the room first",
    "auth_expired": "the session's token has expired",
    "revoked": "the session was revoked",
    "unknown_event": "this service has no such event",
    "idle_timeout": "the session was idle too long",
    "internal": "internal error",
}
NOTICE_CODES: Final[tuple[NoticeCode, ...]] = get_args(NoticeCode)
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Context:
    sid: str
    identity: Identity
    rooms: set[str]  # the session's own set: handlers that join or leave rooms keep it


def ok(**fields: Any) -> Ack:
    return {"ok": True, **fields}


def error(code: ErrorCode) -> Ack:
    # The shape of schemas.ErrorAck, built as a plain dict: refusals are the hot path of
    # an abusive client (the rendered tests validate it against the model).
    return {"ok": False, "error": {"code": code, "message": ERROR_MESSAGES[code]}}


@dataclass(frozen=True, slots=True)
class Registration:
    """One client event as a router registered it: what `asyncapi.py` describes."""

    namespace: str
    event: str
    schema: type[BaseModel]
    scope: str | None


@dataclass(frozen=True, slots=True)
class Sent:
    """An event the server sends on a namespace, besides acks and session notices."""

    namespace: str
    event: str
    schema: type[BaseModel]


class Router:
    """Registers each event of one namespace behind the common checks.

    A session that keeps sending over its event budget for `strikes` events in a row is
    ended: a client that ignores `rate_limited` acks is not going to slow down.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        sessions: Sessions,
        end_session: EndSession,
        *,
        strikes: int,
        namespace: str = "/",
    ) -> None:
        self._sio = sio
        self._sessions = sessions
        self._end_session = end_session
        self._strikes = strikes
        self._namespace = namespace
        self._tasks: set[asyncio.Task[None]] = set()
        self._registrations: list[Registration] = []
        self._sent: list[Sent] = []
        # Every event name the namespace did not declare (python-socketio's catch-all; the
        # packet gate sends reserved and non-string names here too).
        sio.on(CATCH_ALL, handler=self._unknown, namespace=namespace)

    async def _unknown(self, event: str, sid: str, *args: object) -> Ack:
        session = self._sessions.get(sid)
        if session is None:
            return error("forbidden")
        session.last_event = time.monotonic()
        if not self._within_budget(session, "-"):
            return error("rate_limited")
        return self._refused(session, event, "unknown_event")

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def registrations(self) -> tuple[Registration, ...]:
        """The events registered so far, in the order of registration."""
        return tuple(self._registrations)

    @property
    def sent(self) -> tuple[Sent, ...]:
        """The events declared with `sends`."""
        return tuple(self._sent)

    def sends(self, event: str, schema: type[BaseModel]) -> None:
        """Declare that the server sends `event` on this namespace with a `schema` payload
        (the code that emits it builds the payload from `schema`). It changes nothing the
        server does: it is what `asyncapi.py` describes."""
        self._sent.append(Sent(self._namespace, event, schema))

    def _refused(self, session: Session, event: str, code: ErrorCode) -> Ack:
        """The error ack `code`, and its line in the security log (one per refused event:
        the event budget bounds them)."""
        self._log_refusal(session, event, code)
        return error(code)

    def _log_refusal(self, session: Session, event: str, code: str) -> None:
        seclog.event(
            "event_refused",
            level=logging.WARNING,
            reason=code,
            sub=session.identity.sub,
            conn=session.conn,
            event=event,
        )

    def on(self, event: str, schema: type[P], handler: Handler[P], *, scope: str | None) -> None:
        async def dispatch(sid: str, *args: object) -> Ack:
            try:
                return await self._dispatch(sid, event, schema, handler, scope, args)
            except Exception as exc:  # noqa: BLE001 - the client gets a code, the log a class
                _log.error("handler failed event=%s error=%s", event, type(exc).__name__)
                return error("internal")

        self._sio.on(event, handler=dispatch, namespace=self._namespace)
        self._registrations.append(Registration(self._namespace, event, schema, scope))

    async def _dispatch(
        self,
        sid: str,
        event: str,
        schema: type[P],
        handler: Handler[P],
        scope: str | None,
        args: tuple[object, ...],
    ) -> Ack:
        session = self._sessions.get(sid)
        if session is None:
            return error("forbidden")
        session.last_event = time.monotonic()
        if session.identity.expires_at <= time.time():
            # The expiry timer ends the session; this covers events racing it.
            self._end(sid, "auth_expired")
            return error("auth_expired")
        if not self._within_budget(session, event):
            return error("rate_limited")
        if scope is not None and scope not in session.identity.scopes:
            return self._refused(session, event, "forbidden")
        if len(args) != 1:
            return self._refused(session, event, "invalid_payload")
        try:
            payload = schema.model_validate(args[0])
        except ValidationError:
            return self._refused(session, event, "invalid_payload")
        context = Context(sid=sid, identity=session.identity, rooms=session.rooms)
        ack = await handler(context, payload)
        if not ack.get("ok"):
            self._log_refusal(session, event, str(ack.get("error", {}).get("code")))
        return ack

    def _within_budget(self, session: Session, event: str) -> bool:
        if session.events is None or session.events.take():
            session.strikes = 0
            return True
        session.strikes += 1
        if session.strikes == 1:
            seclog.event(
                "rate_limited",
                level=logging.WARNING,
                sub=session.identity.sub,
                conn=session.conn,
                event=event,
            )
        if session.strikes == self._strikes:
            self._end(session.sid, "rate_limited")
        return False

    def _end(self, sid: str, code: NoticeCode) -> None:
        task = asyncio.get_running_loop().create_task(self._end_session(sid, code, self._namespace))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

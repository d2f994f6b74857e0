"""Every client event goes through one path: session, scope (C08), schema (C09), handler.

Handlers receive a validated payload and the caller's identity and return an ack
envelope: `{"ok": true, ...}` or `{"ok": false, "error": {"code": C, "message": M}}` with a
stable code. No exception escapes to python-socketio, so a hostile payload costs the
sender an error ack and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import socketio
from pydantic import BaseModel, ValidationError

from . import seclog
from .auth import Identity

Ack = dict[str, Any]
P = TypeVar("P", bound=BaseModel)
Handler = Callable[["Context", P], Awaitable[Ack]]

ERROR_MESSAGES: Final = {
    "invalid_payload": "the payload does not match the event's schema",
    "forbidden": "the token does not grant this event",
    "rate_limited": "too many events; slow down",
    "not_member": "join the room first",
    "auth_expired": "the session's token has expired",
    "internal": "internal error",
}
SESSION_IDENTITY: Final = "identity"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Context:
    sid: str
    identity: Identity


def ok(**fields: Any) -> Ack:
    return {"ok": True, **fields}


def error(code: str) -> Ack:
    return {"ok": False, "error": {"code": code, "message": ERROR_MESSAGES[code]}}


class Router:
    """Registers each event on the server behind the common checks."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def on(self, event: str, schema: type[P], handler: Handler[P], *, scope: str | None) -> None:
        async def dispatch(sid: str, *args: object) -> Ack:
            try:
                return await self._dispatch(sid, event, schema, handler, scope, args)
            except Exception as exc:  # noqa: BLE001 - the client gets a code, the log a class
                _log.error("handler failed event=%s error=%s", event, type(exc).__name__)
                return error("internal")

        self._sio.on(event, handler=dispatch)

    async def _dispatch(
        self,
        sid: str,
        event: str,
        schema: type[P],
        handler: Handler[P],
        scope: str | None,
        args: tuple[object, ...],
    ) -> Ack:
        session = await self._sio.get_session(sid)
        identity = session.get(SESSION_IDENTITY)
        if not isinstance(identity, Identity):
            return error("forbidden")
        if scope is not None and scope not in identity.scopes:
            seclog.event("forbidden", sub=identity.sub, event=event, scope=scope)
            return error("forbidden")
        if len(args) != 1:
            return error("invalid_payload")
        try:
            payload = schema.model_validate(args[0])
        except ValidationError:
            return error("invalid_payload")
        return await handler(Context(sid=sid, identity=identity), payload)

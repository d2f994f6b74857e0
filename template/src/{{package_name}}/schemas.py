"""Payload schemas for every client event (C09), and the shapes of what the server sends.

Strict: unknown fields are refused, nothing is coerced (a number is not a room name), and
every string and list is bounded. A payload that does not fit is answered with the error
code `invalid_payload` and never echoed back or logged.

The server's own messages (acks, the `message` broadcast, the notice that ends a session)
are models too, built by the code that sends them: `asyncapi.py` describes the service
from these classes, so the description and the wire cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .auth import MAX_SUB_CHARS, MAX_TOKEN_CHARS

MAX_TEXT_CHARS: Final = 2000

RoomName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUB_CHARS)]

# The error codes of the ack envelope; dispatch.ERROR_MESSAGES gives each its message.
ErrorCode = Literal[
    "invalid_payload",
    "forbidden",
    "rate_limited",
    "not_member",
    "auth_expired",
    "revoked",
    "unknown_event",
    "idle_timeout",
    "internal",
]
# The codes that end a session: the server sends a notice named by the code, then
# disconnects (lifecycle.Lifecycle.end).
NoticeCode = Literal["auth_expired", "revoked", "idle_timeout", "rate_limited"]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Join(Payload):
    """Join a room the token's `rooms` claim grants."""

    room: RoomName


class Leave(Payload):
    """Leave a room."""

    room: RoomName


class Message(Payload):
    """Send a message to a room joined; its other members receive it."""

    room: RoomName
    text: MessageText


class Reauth(Payload):
    """Renew the session with a fresh token for the same subject."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_CHARS)]


class Revoke(Payload):
    """Disconnect every session of a subject and refuse its current tokens."""

    sub: Subject


# ---------------------------------------------------------------- what the server sends


class Failure(Payload):
    """Why an event was refused: a stable code to act on, and a message for people."""

    code: ErrorCode
    message: str


class ErrorAck(Payload):
    """The ack of a refused event."""

    ok: Literal[False]
    error: Failure


class OkAck(BaseModel):
    """The ack of a handled event: `ok` and the event's own result fields (`room` for the
    room events, `expires_at` for `reauth`, `sub` and `disconnected` for `revoke`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    ok: Literal[True]


class Broadcast(Payload):
    """A room message, sent to the room's other members."""

    room: RoomName
    sub: Subject = Field(description="the sender's subject (the token's `sub` claim)")
    text: MessageText
    ts: float = Field(description="when the server relayed it, in seconds since the epoch")


class Notice(Payload):
    """The last message of a session the server ends, sent as the event named by `code`."""

    code: NoticeCode
    message: str

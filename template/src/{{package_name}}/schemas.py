"""Payload schemas for every client event (C09).

Strict: unknown fields are refused, nothing is coerced (a number is not a room name), and
every string and list is bounded. A payload that does not fit is answered with the error
code `invalid_payload` and never echoed back or logged.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, StringConstraints

from .auth import MAX_SUB_CHARS, MAX_TOKEN_CHARS

MAX_TEXT_CHARS: Final = 2000

RoomName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Join(Payload):
    room: RoomName


class Leave(Payload):
    room: RoomName


class Message(Payload):
    room: RoomName
    text: MessageText


class Reauth(Payload):
    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_CHARS)]


class Revoke(Payload):
    sub: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUB_CHARS)]

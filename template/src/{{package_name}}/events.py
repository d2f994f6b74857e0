"""The example domain: chat rooms. Replace it with your own events, keeping the pattern:
one schema per event, the scope it needs, and an ack envelope for every outcome.

- `join {room}` needs scope `rooms:join` and a token whose `rooms` claim names the room
  (or a `prefix*` of it, or `*`); a connection joins at most `max_rooms` rooms;
- `leave {room}`;
- `message {room, text}` needs scope `rooms:write` and membership of the room; the server
  broadcasts `message {room, sub, text, ts}` to the room's other members.
"""

from __future__ import annotations

import time
from typing import Final

import socketio

from .dispatch import Ack, Context, Router, error, ok
from .schemas import Broadcast, Join, Leave, Message

SCOPE_JOIN: Final = "rooms:join"
SCOPE_WRITE: Final = "rooms:write"
# The event the server sends to a room's other members, with a schemas.Broadcast payload.
BROADCAST: Final = "message"


def room_key(room: str) -> str:
    # Namespaced so that no room name can collide with a client's private sid room.
    return f"room:{room}"


def may_join(grants: tuple[str, ...], room: str) -> bool:
    """Data-level authorization (ASVS 8.2.2): the token's `rooms` claim names the room, or
    a `prefix*` pattern of it. A scope says what a subject may do; this says where."""
    return any(
        room.startswith(grant[:-1]) if grant.endswith("*") else room == grant for grant in grants
    )


class Rooms:
    def __init__(self, sio: socketio.AsyncServer, max_rooms: int) -> None:
        self._sio = sio
        self._max_rooms = max_rooms

    def _is_member(self, ctx: Context, room: str) -> bool:
        return room_key(room) in ctx.rooms

    async def join(self, ctx: Context, payload: Join) -> Ack:
        if not may_join(ctx.identity.rooms, payload.room):
            return error("forbidden")
        key = room_key(payload.room)
        if key not in ctx.rooms and len(ctx.rooms) >= self._max_rooms:
            return error("forbidden")
        await self._sio.enter_room(ctx.sid, key)
        ctx.rooms.add(key)
        return ok(room=payload.room)

    async def leave(self, ctx: Context, payload: Leave) -> Ack:
        if not self._is_member(ctx, payload.room):
            return error("not_member")
        key = room_key(payload.room)
        await self._sio.leave_room(ctx.sid, key)
        ctx.rooms.discard(key)
        return ok(room=payload.room)

    async def message(self, ctx: Context, payload: Message) -> Ack:
        if not self._is_member(ctx, payload.room):
            return error("not_member")
        broadcast = Broadcast(
            room=payload.room, sub=ctx.identity.sub, text=payload.text, ts=time.time()
        )
        await self._sio.emit(
            BROADCAST, broadcast.model_dump(), room=room_key(payload.room), skip_sid=ctx.sid
        )
        return ok(room=payload.room)


def register(router: Router, sio: socketio.AsyncServer, *, max_rooms: int) -> None:
    rooms = Rooms(sio, max_rooms)
    router.on("join", Join, rooms.join, scope=SCOPE_JOIN)
    router.on("leave", Leave, rooms.leave, scope=None)
    router.on("message", Message, rooms.message, scope=SCOPE_WRITE)
    router.sends(BROADCAST, Broadcast)

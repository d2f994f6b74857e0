"""C09: every event payload is parsed into a strict schema. A bad payload gets an
`invalid_payload` ack; the connection and the server stay up; the input is not echoed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from live import LiveServer, TokenFactory, connected, raw_call, raw_socketio, refused

MARKER = "<script>alert('x')</script>"
INVALID = {
    "ok": False,
    "error": {
        "code": "invalid_payload",
        "message": "the payload does not match the event's schema",
    },
}


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("join", {}),
        ("join", {"room": MARKER}),
        ("join", {"room": "Lobby"}),
        ("join", {"room": "../etc"}),
        ("join", {"room": "a" * 65}),
        ("join", {"room": 42}),
        ("join", {"room": ["lobby"]}),
        ("join", {"room": "lobby", "admin": True}),
        ("join", "lobby"),
        ("join", None),
        ("join", [{"room": "lobby"}]),
        ("message", {"room": "lobby"}),
        ("message", {"room": "lobby", "text": ""}),
        ("message", {"room": "lobby", "text": "x" * 2001}),
        ("message", {"room": "lobby", "text": 7}),
        ("message", {"room": "lobby", "text": {"$gt": ""}}),
        ("message", {"room": "lobby", "text": "hi", "sub": "admin"}),
        ("leave", {"room": True}),
    ],
)
async def test_invalid_payload_is_answered_invalid_payload(
    server: LiveServer, make_token: TokenFactory, event: str, payload: Any
) -> None:
    """C09: and the same connection keeps working afterwards."""
    async with connected(server, make_token()) as client:
        ack = await client.call(event, payload, timeout=5)
        assert ack == INVALID
        assert MARKER not in repr(ack)
        assert await client.call("join", {"room": "lobby"}, timeout=5) == {
            "ok": True,
            "room": "lobby",
        }


async def test_missing_and_extra_arguments_are_invalid(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C09: an event carries exactly one payload argument."""
    async with raw_socketio(server, token=make_token()) as ws:
        assert await raw_call(ws, 1, "join") == INVALID
        assert await raw_call(ws, 2, "join", {"room": "a"}, {"room": "b"}) == INVALID
        assert await raw_call(ws, 3, "join", {"room": "a"}) == {"ok": True, "room": "a"}


async def test_deeply_nested_payload_is_refused_and_server_stays_up(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C09: nesting within the size limit does not crash the parser or the server."""
    nested: Any = "x"
    for _ in range(200):
        nested = {"a": nested}
    async with connected(server, make_token()) as client:
        assert await client.call("message", {"room": "lobby", "text": nested}, timeout=5) == INVALID
    async with connected(server, make_token(sub="bob")) as client:
        assert client.connected


async def test_messages_reach_other_room_members_with_acks(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """The example domain: join, message, broadcast to the other members, leave."""
    received: asyncio.Queue[Any] = asyncio.Queue()
    async with (
        connected(server, make_token(sub="alice")) as alice,
        connected(server, make_token(sub="bob")) as bob,
    ):
        bob.on("message", received.put)
        assert await alice.call("join", {"room": "lobby"}, timeout=5) == {
            "ok": True,
            "room": "lobby",
        }
        assert await bob.call("join", {"room": "lobby"}, timeout=5) == {"ok": True, "room": "lobby"}
        ack = await alice.call("message", {"room": "lobby", "text": MARKER}, timeout=5)
        assert ack == {"ok": True, "room": "lobby"}
        message = await asyncio.wait_for(received.get(), 5)
        assert {k: message[k] for k in ("room", "sub", "text")} == {
            "room": "lobby",
            "sub": "alice",
            "text": MARKER,
        }
        assert isinstance(message["ts"], float)
        assert await bob.call("leave", {"room": "lobby"}, timeout=5) == {
            "ok": True,
            "room": "lobby",
        }
        assert await bob.call("leave", {"room": "lobby"}, timeout=5) == {
            "ok": False,
            "error": {"code": "not_member", "message": "join the room first"},
        }


async def test_message_to_a_room_not_joined_is_refused(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """Messages go only to rooms the sender has joined."""
    async with connected(server, make_token()) as client:
        ack = await client.call("message", {"room": "elsewhere", "text": "hi"}, timeout=5)
    assert ack["error"]["code"] == "not_member"


async def test_event_without_its_scope_is_forbidden(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """A token without `rooms:write` may join but not write."""
    async with connected(server, make_token(scope="rooms:join")) as client:
        assert (await client.call("join", {"room": "lobby"}, timeout=5))["ok"] is True
        ack = await client.call("message", {"room": "lobby", "text": "hi"}, timeout=5)
    assert ack["error"]["code"] == "forbidden"


async def test_unknown_event_is_answered_unknown_event_and_connection_stays(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C08: an event the service does not declare reaches no handler of its own."""
    async with connected(server, make_token()) as client:
        ack = await client.call("shutdown", {}, timeout=5)
        assert ack["error"]["code"] == "unknown_event"
        assert (await client.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


async def test_joins_are_limited_to_the_rooms_the_token_names(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C08 (ASVS 8.2.2): the `rooms:join` scope says a subject may join rooms; the token's
    `rooms` claim says which: names, and `prefix*` patterns."""
    token = make_token(sub="scoped", rooms=["lobby", "team-*"])
    async with connected(server, token) as client:
        for room in ("lobby", "team-1", "team-"):
            assert (await client.call("join", {"room": room}, timeout=5))["ok"] is True, room
        for room in ("lobby2", "team", "teams", "other"):
            ack = await client.call("join", {"room": room}, timeout=5)
            assert ack["error"]["code"] == "forbidden", room


async def test_token_without_a_rooms_claim_joins_no_room(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C08: no claim, no room (deny by default), whatever the scopes say."""
    async with connected(server, make_token(sub="roomless", rooms=[])) as client:
        ack = await client.call("join", {"room": "lobby"}, timeout=5)
        assert ack["error"]["code"] == "forbidden"
    async with connected(server, make_token(sub="roomless", drop=("rooms",))) as client:
        ack = await client.call("join", {"room": "lobby"}, timeout=5)
        assert ack["error"]["code"] == "forbidden"


@pytest.mark.parametrize("rooms", ["lobby", ["Lobby"], [1], ["a b"], ["*x"], ["x"] * 65], ids=str)
async def test_malformed_rooms_claim_is_refused_at_connect(
    server: LiveServer, make_token: TokenFactory, rooms: object
) -> None:
    """C05/C08: a `rooms` claim that is not a short list of room patterns refuses the token."""
    assert await refused(server, make_token(rooms=rooms)) == "unauthorized"

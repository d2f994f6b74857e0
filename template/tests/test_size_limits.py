"""C10: frames over the size limit close the sender's connection, and only that one."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from live import LiveServer, TokenFactory, connected, frame_of, raw_call, raw_socketio


async def test_frame_over_the_limit_closes_only_the_sender(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C10: the oversized sender is cut off with 1009; a bystander keeps its acks."""
    limit = server.settings.max_message_bytes
    async with connected(server, make_token(sub="bystander")) as bystander:
        async with raw_socketio(server, token=make_token(sub="mallory")) as ws:
            await ws.send(frame_of(limit + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
        assert await bystander.call("join", {"room": "lobby"}, timeout=5) == {
            "ok": True,
            "room": "lobby",
        }


async def test_frame_at_the_limit_is_read_and_answered(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C10: the limit is the configured size, not something smaller; an oversized text
    field inside an allowed frame is a schema error, not a disconnect."""
    limit = server.settings.max_message_bytes
    async with raw_socketio(server, token=make_token()) as ws:
        await ws.send(frame_of(limit, ack_id="1"))
        frame = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(frame, str)
        assert frame.startswith("431")
        assert json.loads(frame[3:])[0]["error"]["code"] == "invalid_payload"
        assert await raw_call(ws, 2, "join", {"room": "lobby"}) == {"ok": True, "room": "lobby"}


async def test_binary_frame_over_the_limit_closes_the_sender(
    server: LiveServer, make_token: TokenFactory
) -> None:
    """C10: binary frames are bounded the same way."""
    limit = server.settings.max_message_bytes
    async with raw_socketio(server, token=make_token()) as ws:
        await ws.send(b"\x04" + b"\0" * limit)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)

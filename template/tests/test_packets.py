"""C08, C09, C11, C13: Socket.IO packets below the event handlers. Only declared event
names reach a handler; binary packets, unsolicited ACKs, repeated CONNECTs and events on a
namespace that is not connected cut the connection off with one security-log line; none of
it leaves a traceback. Raw websockets, so no client library tidies up what is sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from live import (
    LiveServer,
    Pki,
    SigningKeys,
    TokenFactory,
    closed_by_server,
    connected,
    live_server,
    make_settings,
    raw_call,
    raw_socketio,
)

# Longer than any answer of a healthy server, short enough for a closing socket.
SETTLE_SECONDS = 3.0


@pytest.fixture(scope="module")
def gated(pki: Pki, signing: SigningKeys) -> Iterator[LiveServer]:
    # A short token lifetime is chosen per test; the limits stay out of the way.
    with live_server(make_settings(pki, signing, connect_timeout_seconds=2.0), pki) as server:
        yield server


def security_lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "security" and r.getMessage().startswith(start)
    ]


@pytest.mark.parametrize(
    "packet",
    [
        '["disconnect"]',
        '["connect",{"token":"x"}]',
        '["connect_error"]',
        '["*","lobby"]',
        '[["join"],{"room":"lobby"}]',
        '[{"join":1}]',
        "[7]",
        "[null]",
        '["no-such-event",{}]',
    ],
)
async def test_undeclared_event_names_are_refused_and_the_session_stays_whole(
    gated: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture, packet: str
) -> None:
    """C08: reserved names (`disconnect` once dropped the session record while the socket
    stayed in its rooms), non-string names and unknown names are answered
    `unknown_event` with one log line; the session keeps its rooms, expiry and budget."""
    async with (
        raw_socketio(gated, token=make_token(sub="prober", ttl=60)) as ws,
        connected(gated, make_token(sub="speaker")) as speaker,
    ):
        assert (await raw_call(ws, 1, "join", {"room": "lobby"}))["ok"] is True
        await ws.send("422" + packet)
        ack = await asyncio.wait_for(ws.recv(), SETTLE_SECONDS)
        assert isinstance(ack, str)
        assert ack.startswith("432")
        assert json.loads(ack[3:])[0]["error"]["code"] == "unknown_event"
        # Still a member with a session: it receives the room's messages, and is served.
        await speaker.call("join", {"room": "lobby"}, timeout=5)
        await speaker.call("message", {"room": "lobby", "text": "still there?"}, timeout=5)
        broadcast = await asyncio.wait_for(ws.recv(), SETTLE_SECONDS)
        assert isinstance(broadcast, str)
        assert broadcast.startswith('42["message"')
        assert (await raw_call(ws, 3, "leave", {"room": "lobby"}))["ok"] is True
    assert len(security_lines(caplog, "event_refused reason=unknown_event")) == 1
    assert "Traceback" not in caplog.text


async def test_a_disconnect_event_does_not_stop_the_expiry(
    gated: LiveServer, make_token: TokenFactory
) -> None:
    """C06: the token's expiry still ends the session, with its notice, after a
    `disconnect` event (which once cancelled the expiry timer with the session record)."""
    frames: list[str | bytes] = []
    async with raw_socketio(gated, token=make_token(sub="expiring", ttl=2)) as ws:
        await ws.send('421["disconnect"]')
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(2 + SETTLE_SECONDS):
                while True:
                    frames.append(await ws.recv())
    assert any(str(frame).startswith('42["auth_expired"') for frame in frames), frames


async def test_undeclared_events_are_paid_from_the_event_budget(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory
) -> None:
    """C11: refused event names cost the same budget as real events."""
    settings = make_settings(pki, signing, events_per_second=1.0, event_burst=3)
    with live_server(settings, pki) as server:
        async with raw_socketio(server, token=make_token()) as ws:
            codes = [
                (await raw_call(ws, ack, "disconnect"))["error"]["code"] for ack in range(1, 7)
            ]
            assert codes[:3] == ["unknown_event"] * 3
            assert "rate_limited" in codes[3:]


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (['451-["message",{"_placeholder":true,"num":0}]'], "binary_refused"),
        (['461-[{"_placeholder":true,"num":0}]'], "binary_refused"),
        ([b"\x04" + b"\xff" * 1000], "binary_refused"),
        (["430[]"], "unexpected_ack"),
        (["431[]"], "unexpected_ack"),
        (['40{"token":"again"}'], "duplicate_connect"),
        (['42/admin,["revoke",{"sub":"x"}]'], "namespace_not_connected"),
        (["4{"], "malformed_packet"),
        (['42["join"'], "malformed_packet"),
    ],
)
async def test_packets_outside_the_protocol_cut_the_connection_off(
    gated: LiveServer,
    make_token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    frames: list[str | bytes],
    reason: str,
) -> None:
    """C09/C11: binary attachments (kept by python-socketio until the announced count
    arrived), ACKs the server never asked for, a second CONNECT, events on a namespace
    that is not connected, and packets that do not parse: one line and the connection is
    gone, while another client is served."""
    async with (
        raw_socketio(gated, token=make_token(sub="breaker")) as ws,
        connected(gated, make_token(sub="bystander")) as bystander,
    ):
        for frame in frames:
            await ws.send(frame)
        await closed_by_server(ws, SETTLE_SECONDS)
        assert (await bystander.call("join", {"room": "lobby"}, timeout=5))["ok"] is True
    lines = security_lines(caplog, "connection_closed")
    assert len(lines) == 1, lines
    assert f"reason={reason}" in lines[0]
    assert "Traceback" not in caplog.text


async def test_binary_attachments_are_not_kept(
    gated: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: the announcement of an attachment ends the connection; no binary frame after
    it is kept (python-socketio kept them until the announced count arrived)."""
    async with raw_socketio(gated, token=make_token(sub="attacher")) as ws:
        await ws.send('451-["message",{"_placeholder":true,"num":0}]')

        async def attach() -> None:
            for _ in range(40):
                await ws.send(b"\x00" * 63 * 1024)
                await asyncio.sleep(0.01)
            await asyncio.wait_for(ws.recv(), SETTLE_SECONDS)

        with pytest.raises(ConnectionClosed):
            await attach()
    assert "reason=binary_refused" in caplog.text


async def test_repeated_refused_connects_cut_the_connection_off(
    gated: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C11/C13: each refused CONNECT costs a token check and a log line; the third ends it."""
    async with raw_socketio(gated) as ws:

        async def try_ten_times() -> None:
            for _ in range(10):
                await ws.send('40{"token":"not-a-token"}')
                await asyncio.wait_for(ws.recv(), SETTLE_SECONDS)

        with pytest.raises(ConnectionClosed):
            await try_ten_times()
    assert len(security_lines(caplog, "connect_refused")) == 3
    closed = security_lines(caplog, "connection_closed")
    assert len(closed) == 1
    assert "reason=connect_refused_repeatedly" in closed[0]


async def test_websocket_left_without_a_namespace_is_closed_at_the_connect_deadline(
    gated: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: a client that disconnects its last namespace (`41`) and keeps the websocket
    is under the connect deadline again."""
    async with raw_socketio(gated, token=make_token(sub="lingerer")) as ws:
        await ws.send("41")
        await closed_by_server(ws, 2.0 + SETTLE_SECONDS)
    assert "reason=connect_timeout" in caplog.text


async def test_engineio_heartbeat_closes_a_client_that_stops_answering(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory
) -> None:
    """C11: the Engine.IO ping interval and timeout are the service's settings: a client
    that answers no ping is closed after their sum; one that answers stays."""
    settings = make_settings(pki, signing, ping_interval_seconds=0.5, ping_timeout_seconds=0.5)
    with live_server(settings, pki) as server:
        async with raw_socketio(server, token=make_token(sub="silent")) as silent:
            await closed_by_server(silent, 1.0 + SETTLE_SECONDS)
        async with raw_socketio(server, token=make_token(sub="alive")) as alive:
            answered = 0
            while answered < 4:  # two seconds of pings: past interval + timeout
                frame = await asyncio.wait_for(alive.recv(), SETTLE_SECONDS)
                if frame == "2":
                    await alive.send("3")
                    answered += 1
            assert (await raw_call(alive, 1, "join", {"room": "lobby"}))["ok"] is True


async def test_a_broken_websocket_leaves_no_session_behind(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory
) -> None:
    """C11: a malformed Engine.IO packet ends python-engineio's websocket handler with an
    exception, which left its Engine.IO session, namespaces and sessions behind (each
    counting against the subject's cap); the guard releases them with the websocket."""
    settings = make_settings(pki, signing, max_sessions_per_subject=1)
    with live_server(settings, pki) as server:
        for _ in range(3):
            async with raw_socketio(server, token=make_token(sub="breaker")) as ws:
                await ws.send("x")  # not an Engine.IO packet type
                await closed_by_server(ws, SETTLE_SECONDS)

"""C11: rate and connection limits. A flood costs the flooder, not its neighbours."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import closing
from http.client import HTTPSConnection
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from live import (
    LiveServer,
    Notices,
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

LIMITED = {
    # A slow refill, so that a loaded test machine cannot refill the bucket mid-flood.
    "events_per_second": 1.0,
    "event_burst": 5,
    "max_frames_per_second": 40.0,
    "max_connections": 6,
    "max_connections_per_address": 3,
    "connect_timeout_seconds": 1.0,
    # Short, yet long enough for any TLS handshake of a loaded test machine.
    "request_timeout_seconds": 2.0,
    "max_rooms_per_connection": 3,
}
# Longer than any deadline above, so that a missing deadline is a failure, not a hang.
PATIENCE_SECONDS = 8.0


@pytest.fixture(scope="module")
def limited(pki: Pki, signing: SigningKeys) -> Iterator[LiveServer]:
    with live_server(make_settings(pki, signing, **LIMITED), pki) as server:
        yield server


async def test_flooder_is_rate_limited_while_a_bystander_keeps_its_acks(
    limited: LiveServer, make_token: TokenFactory
) -> None:
    """C11: excess events are answered `rate_limited`; another client is unaffected."""
    async with (
        connected(limited, make_token(sub="flooder")) as flooder,
        connected(limited, make_token(sub="bystander")) as bystander,
    ):
        flood = [flooder.call("join", {"room": "lobby"}, timeout=5) for _ in range(4)]
        flood_acks: list[Any] = await asyncio.gather(*flood)
        flood_acks += [await flooder.call("join", {"room": "lobby"}, timeout=5) for _ in range(4)]
        codes = [ack["error"]["code"] for ack in flood_acks if not ack["ok"]]
        assert codes
        assert set(codes) == {"rate_limited"}
        for _ in range(3):
            ack = await bystander.call("join", {"room": "lobby"}, timeout=5)
            assert ack == {"ok": True, "room": "lobby"}


async def test_sustained_flood_ends_the_session(
    limited: LiveServer, make_token: TokenFactory
) -> None:
    """C11: a client that ignores `rate_limited` is disconnected after a notice."""
    async with connected(limited, make_token(sub="flooder")) as flooder:
        notices = Notices(flooder, "rate_limited")
        for _ in range(5 + 5 + 2):  # the burst, then `event_burst` strikes in a row
            if notices.disconnected.is_set():
                break
            await flooder.emit("join", {"room": "lobby"})
        await notices.ended_by("rate_limited", 5)


async def test_connection_flood_from_one_address_hits_its_cap_while_another_connects(
    limited: LiveServer, make_token: TokenFactory
) -> None:
    """C11: per-address cap (429); a second address on the same server still gets in."""
    async with (
        raw_socketio(limited, token=make_token(), local_address="127.0.0.2"),
        raw_socketio(limited, token=make_token(), local_address="127.0.0.2"),
        raw_socketio(limited, token=make_token(), local_address="127.0.0.2"),
    ):
        with pytest.raises(InvalidStatus) as refusal:
            async with raw_socketio(limited, local_address="127.0.0.2"):
                pass
        assert refusal.value.response.status_code == 429
        async with raw_socketio(limited, token=make_token(), local_address="127.0.0.3") as ws:
            assert await raw_call(ws, 1, "join", {"room": "lobby"}) == {"ok": True, "room": "lobby"}
    async with raw_socketio(limited, token=make_token(), local_address="127.0.0.2"):
        pass  # closed connections are counted out again


async def test_total_connection_cap(limited: LiveServer, make_token: TokenFactory) -> None:
    """C11: the total cap holds across addresses (503)."""
    addresses = ["127.0.0.4", "127.0.0.4", "127.0.0.5", "127.0.0.5", "127.0.0.6", "127.0.0.6"]
    opened = [raw_socketio(limited, token=make_token(), local_address=a) for a in addresses]
    try:
        for connection in opened:
            await connection.__aenter__()
        with pytest.raises(InvalidStatus) as refusal:
            async with raw_socketio(limited, local_address="127.0.0.7"):
                pass
        assert refusal.value.response.status_code == 503
    finally:
        for connection in reversed(opened):
            await connection.__aexit__(None, None, None)


async def test_connection_that_never_authenticates_is_closed_at_the_deadline(
    limited: LiveServer,
) -> None:
    """C11: python-socketio has no connect timeout; the guard closes such a connection."""
    async with raw_socketio(limited) as ws:
        assert await closed_by_server(ws, 5) == 1008


async def test_authenticated_connection_outlives_the_deadline(
    limited: LiveServer, make_token: TokenFactory
) -> None:
    """C11: the deadline applies only until the CONNECT is accepted; the request deadline
    ends with the upgrade."""
    async with raw_socketio(limited, token=make_token()) as ws:
        deadlines = LIMITED["connect_timeout_seconds"], LIMITED["request_timeout_seconds"]
        await asyncio.sleep(max(deadlines) + 0.5)
        assert await raw_call(ws, 1, "leave", {"room": "nowhere"}) == {
            "ok": False,
            "error": {"code": "not_member", "message": "join the room first"},
        }


@pytest.mark.parametrize("kind", ["ping", "pong", "event"])
async def test_frame_flood_cuts_the_connection_off(
    limited: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """C11: every frame counts, control frames included (uvicorn answers pings below the
    application, so an ASGI-level counter never saw them)."""
    async with raw_socketio(limited, token=make_token()) as ws:
        with contextlib.suppress(ConnectionClosed):
            for _ in range(3000):
                if kind == "ping":
                    await ws.ping()
                elif kind == "pong":
                    await ws.pong()
                else:
                    await ws.send('42["no-such-event",{}]')
        await closed_by_server(ws, PATIENCE_SECONDS)
    assert "reason=frame_flood" in caplog.text


async def test_message_in_many_fragments_is_cut_off(
    limited: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: uvicorn reassembles continuation frames below the application; a message may
    come in at most MAX_FRAGMENTS of them."""
    fragments = ['42["message",{"room":"lobby","text":"', *"x" * 20, '"}]']
    async with raw_socketio(limited, token=make_token()) as ws:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(fragments)
        await closed_by_server(ws, PATIENCE_SECONDS)
    assert "reason=fragment_flood" in caplog.text


async def test_message_in_a_few_fragments_is_served(
    limited: LiveServer, make_token: TokenFactory
) -> None:
    """C11: fragmentation itself is allowed."""
    async with raw_socketio(limited, token=make_token()) as ws:
        await ws.send(["421", '["join",', '{"room":"lobby"}]'])
        reply = await asyncio.wait_for(ws.recv(), PATIENCE_SECONDS)
        assert reply == '431[{"ok":true,"room":"lobby"}]'


async def test_invalid_utf8_text_is_one_line_and_a_cut(
    limited: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C13: uvicorn logged a traceback for a text frame that is not UTF-8."""
    async with raw_socketio(limited, token=make_token()) as ws:
        await ws.send(b'42["join",{"room":"\xff\xfe"}]', text=True)
        await closed_by_server(ws, PATIENCE_SECONDS)
    assert "reason=invalid_utf8" in caplog.text
    assert "Traceback" not in caplog.text


async def test_rooms_per_connection_are_bounded(
    limited: LiveServer, make_token: TokenFactory
) -> None:
    """C11/C08: a connection joins at most `max_rooms_per_connection` rooms at a time."""
    async with connected(limited, make_token()) as client:
        for room in ("a", "b", "c"):
            assert (await client.call("join", {"room": room}, timeout=5))["ok"] is True
        ack = await client.call("join", {"room": "d"}, timeout=5)
        assert ack["error"]["code"] == "forbidden"
        assert (await client.call("join", {"room": "a"}, timeout=5))["ok"] is True
        await asyncio.sleep(2.2)  # two events' budget at 1 per second
        assert (await client.call("leave", {"room": "b"}, timeout=5))["ok"] is True
        assert (await client.call("join", {"room": "d"}, timeout=5))["ok"] is True


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (read within the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def https_connection(server: LiveServer) -> HTTPSConnection:
    """An HTTPS connection to `server`, TLS handshake done, kept alive between requests."""
    context = server.pki.client_context()
    http = HTTPSConnection("127.0.0.1", server.port, context=context, timeout=PATIENCE_SECONDS)
    http.connect()
    return http


def healthz(http: HTTPSConnection) -> int:
    http.request("GET", "/healthz")
    response = http.getresponse()
    response.read()
    return response.status


def request_timeouts(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "security"]
    return [line for line in lines if "reason=request_timeout" in line]


def test_silent_client_is_closed_at_the_request_deadline(
    limited: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: after the TLS handshake uvicorn would wait for a first request for ever."""
    with closing(https_connection(limited)) as http:
        assert closed_by_peer(http.sock)
    assert len(request_timeouts(caplog)) == 1


@pytest.mark.parametrize("after_a_response", [False, True], ids=["first", "kept-alive"])
def test_request_trickled_a_byte_at_a_time_is_cut_off(
    limited: LiveServer, caplog: pytest.LogCaptureFixture, after_a_response: bool
) -> None:
    """C11 (Slowloris): uvicorn restarts its timer on every byte; the request deadline
    counts from the handshake, or from the previous response, whatever arrives."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with closing(https_connection(limited)) as http:
        if after_a_response:
            assert healthz(http) == 200
        tls = http.sock
        patience = time.monotonic() + PATIENCE_SECONDS
        for byte in head + b"X-Slow: " + b"a" * 1000:
            readable = select.select([tls], [], [], 0.05)[0]
            if readable or time.monotonic() > patience:
                break
            try:
                tls.sendall(bytes([byte]))
            except (ConnectionError, ssl.SSLError):
                break
        assert closed_by_peer(tls)
        assert time.monotonic() < patience
    assert len(request_timeouts(caplog)) == 1


def test_silent_tcp_client_is_closed_at_the_handshake_deadline(
    limited: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: asyncio would wait 60 s for a TLS ClientHello; the request deadline bounds it.
    C13: the close has its line (asyncio logs it only in debug mode)."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=PATIENCE_SECONDS) as raw:
        assert closed_by_peer(raw)
    assert "tls_handshake_failed reason=handshake_timeout client=127.0.0.1" in caplog.text


def test_requests_within_the_deadline_are_served_on_a_kept_alive_connection(
    limited: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: the deadline restarts after each response; prompt clients never meet it."""
    sockets = []
    with closing(https_connection(limited)) as http:
        for _ in range(3):
            assert healthz(http) == 200
            sockets.append(http.sock)
            time.sleep(LIMITED["request_timeout_seconds"] / 2)
    assert all(sock is sockets[0] for sock in sockets)  # one connection, kept alive
    assert not request_timeouts(caplog)


async def test_client_that_stops_reading_is_cut_off_and_others_are_served(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: a member of a busy room that reads nothing is cut off once its unsent output
    passes `send_buffer_bytes` (uvicorn would queue the room's messages for it without
    bound); the sender and a bystander are served throughout."""
    settings = make_settings(
        pki,
        signing,
        events_per_second=10_000.0,
        event_burst=10_000,
        max_frames_per_second=10_000.0,
        send_buffer_bytes=16 * 1024,
    )
    text = "x" * 2000
    with live_server(settings, pki) as server:
        async with (
            raw_socketio(server, token=make_token(sub="stalled")) as stalled,
            connected(server, make_token(sub="speaker")) as speaker,
            connected(server, make_token(sub="bystander")) as bystander,
        ):
            assert (await raw_call(stalled, 1, "join", {"room": "busy"}))["ok"] is True
            await speaker.call("join", {"room": "busy"}, timeout=5)
            # From here on `stalled` reads nothing: websockets stops reading its socket
            # once a few frames wait unread.
            for sent in range(1, 5001):
                await speaker.emit("message", {"room": "busy", "text": text})
                if sent % 250 == 0:
                    await asyncio.sleep(0)
                    if "reason=slow_reader" in caplog.text:
                        break
            ack = await bystander.call("join", {"room": "lobby"}, timeout=5)
            assert ack["ok"] is True
            assert (await speaker.call("leave", {"room": "busy"}, timeout=5))["ok"] is True
    assert "reason=slow_reader" in caplog.text


def silent_tcp(server: LiveServer, address: str) -> socket.socket | None:
    """A TCP connection from `address` that never sends a byte (no ClientHello); None if
    the server's reset beat `connect()` back (it refused the connection at once)."""
    sock = socket.socket()
    sock.bind((address, 0))
    try:
        sock.connect(("127.0.0.1", server.port))
    except ConnectionResetError:
        sock.close()
        return None
    return sock


def refused_at_once(socks: list[socket.socket | None]) -> list[bool]:
    """Which of `socks` the server closed within a short wait, rather than holding them."""
    time.sleep(0.3)
    readable, _, _ = select.select([sock for sock in socks if sock is not None], [], [], 0)
    closed = []
    for sock in socks:
        try:
            closed.append(sock is None or (sock in readable and sock.recv(1) == b""))
        except ConnectionResetError:
            closed.append(True)
    return closed


def close_all(socks: list[socket.socket | None]) -> None:
    for sock in socks:
        if sock is not None:
            sock.close()


async def test_connections_that_never_upgrade_are_capped_per_address_at_accept(
    limited: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C11: one address cannot hold the server's descriptors with connections that never
    send a ClientHello (uvicorn held each until its deadline, with no cap): past twice the
    websocket cap they are closed as they are accepted; another address gets in."""
    cap = 2 * int(LIMITED["max_connections_per_address"])
    held = [silent_tcp(limited, "127.0.0.9") for _ in range(cap + 4)]
    try:
        assert refused_at_once(held) == [False] * cap + [True] * 4
        async with raw_socketio(limited, token=make_token(), local_address="127.0.0.10") as ws:
            assert (await raw_call(ws, 1, "join", {"room": "lobby"}))["ok"] is True
    finally:
        close_all(held)
    refusals = [line for line in caplog.text.splitlines() if "reason=address_cap" in line]
    assert len(refusals) == 1  # one line per interval, not one per connection
    assert "client=127.0.0.9" in refusals[0]


def test_new_connections_per_address_are_rate_limited_at_accept(
    pki: Pki, signing: SigningKeys
) -> None:
    """C11: each TLS handshake costs the server CPU: new connections from one address are
    paid from a bucket (here 2 a second, bursts of 4); other addresses are not charged."""
    settings = make_settings(pki, signing, connections_per_second_per_address=2.0)
    with live_server(settings, pki) as server:
        burst = [silent_tcp(server, "127.0.0.11") for _ in range(8)]
        other = silent_tcp(server, "127.0.0.12")
        try:
            refused = refused_at_once([*burst, other])
        finally:
            close_all([*burst, other])
        assert refused[:4] == [False] * 4
        assert refused[-2] is True  # the burst is spent, whatever refilled meanwhile
        assert refused[-1] is False

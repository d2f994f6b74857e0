"""C13: one grep-able line per security event, with a reason code, subject, client and
origin, and never a token, an `auth` payload or a message body: a whole session of
attacks runs under log capture at DEBUG, and its log is searched for every secret."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from live import (
    ORIGIN,
    LiveServer,
    Notices,
    Pki,
    SigningKeys,
    TokenFactory,
    closed_by_server,
    connected,
    live_server,
    make_settings,
    raw_socketio,
    refused,
)

BODY = "confidential body 4e1d"


async def test_attack_session_is_logged_without_secrets(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        pki, signing, events_per_second=2.0, event_burst=2, connect_timeout_seconds=1.0
    )
    good, expired, forged = make_token(), make_token(ttl=-60), make_token()[:-4] + "AAAA"
    secrets = [good, expired, forged, BODY]
    with live_server(settings, pki) as server:
        await attacks(server, make_token, good, expired, forged, secrets)
    lines = [r.getMessage() for r in caplog.records if r.name == "security"]
    expected = [
        "connect_refused reason=auth_missing",
        "connect_refused reason=token_expired",
        "connect_refused reason=token_signature",
        "connection_refused reason=origin_refused",
        "connection_closed reason=connect_timeout",
        "rate_limited sub=alice",
        "event_refused reason=forbidden sub=alice",
        "reauth_refused reason=token_expired sub=alice",
        "revoked sub=alice by=ops connections=1",
        "session_ended reason=revoked sub=alice",
    ]
    for prefix in expected:
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)
    refused_origin = next(line for line in lines if "origin_refused" in line)
    assert "origin=https://evil.example.test" in refused_origin
    assert "client=127.0.0.1" in refused_origin
    for line in lines:
        assert "\n" not in line
    for secret in secrets:
        for part in secret.split("."):  # no piece of a token, even a truncated one
            assert part[:16] not in caplog.text, part


async def attacks(
    server: LiveServer,
    make_token: TokenFactory,
    good: str,
    expired: str,
    forged: str,
    secrets: list[str],
) -> None:
    assert await refused(server, None) == "unauthorized"
    assert await refused(server, expired) == "unauthorized"
    assert await refused(server, forged) == "unauthorized"
    with pytest.raises(InvalidStatus):
        async with raw_socketio(server, origin="https://evil.example.test"):
            pass
    async with raw_socketio(server) as idle:
        await closed_by_server(idle, 5)
    async with connected(server, good, origin=ORIGIN) as alice:
        acks = await asyncio.gather(
            *(alice.call("join", {"room": "r"}, timeout=5) for _ in range(4))
        )
        assert any(not ack["ok"] for ack in acks)
    async with connected(server, make_token(scope="rooms:join")) as reader:
        await asyncio.sleep(1.1)  # a fresh event budget
        ack = await reader.call("message", {"room": "r", "text": BODY}, timeout=5)
        assert ack["error"]["code"] == "forbidden"
        ack = await reader.call("reauth", {"token": secrets[1]}, timeout=5)
        assert ack["error"]["code"] == "forbidden"
    async with (
        connected(server, make_token()) as victim,
        connected(server, make_token(sub="ops", scope="admin:revoke"), namespace="/admin") as ops,
    ):
        notices = Notices(victim, "revoked")
        await ops.call("revoke", {"sub": "alice"}, namespace="/admin", timeout=5)
        await notices.wait_disconnected(5)


async def test_every_refused_event_has_a_line_with_the_connection_id(
    server: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C13 (ASVS 16): refused payloads, rooms not joined, missing scopes and unknown events
    each leave one line; every line of the connection carries its `conn=` number."""
    caplog.set_level(logging.INFO, logger="security")
    async with connected(server, make_token(sub="logged", scope="rooms:join")) as client:
        calls = [
            ("join", {"room": "Not A Room"}),
            ("leave", {"room": "lobby"}),
            ("message", {"room": "lobby", "text": "hi"}),
            ("no-such-event", {}),
        ]
        for event, payload in calls:
            assert (await client.call(event, payload, timeout=5))["ok"] is False
    lines = [r.getMessage() for r in caplog.records if r.name == "security"]
    connected_line = next(line for line in lines if line.startswith("connected sub=logged"))
    conn = next(part for part in connected_line.split() if part.startswith("conn="))
    refused = [line for line in lines if line.startswith("event_refused")]
    reasons = [line.split()[1] for line in refused]
    assert reasons == [
        "reason=invalid_payload",
        "reason=not_member",
        "reason=forbidden",
        "reason=unknown_event",
    ]
    assert all(f" {conn} " in line for line in refused), (conn, refused)
    assert all("Not A Room" not in line and "hi" not in line.split() for line in lines)


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2], ids=["tls-1.1", "tls-1.2"]
)
def test_failed_tls_handshakes_are_logged(
    server: LiveServer, caplog: pytest.LogCaptureFixture, version: ssl.TLSVersion
) -> None:
    """C13 (ASVS 16): a TLS handshake the server refuses has its line, with OpenSSL's
    reason code (asyncio logs these only in debug mode)."""
    context = server.pki.client_context()
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = version
    context.set_ciphers("AES128-SHA:@SECLEVEL=0")  # no ECDHE, no AEAD: outside both profiles
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError)),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass
    deadline = time.monotonic() + 5
    while "tls_handshake_failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in caplog.text.splitlines() if "tls_handshake_failed" in line]
    assert len(lines) == 1, lines
    assert "reason=handshake_error client=127.0.0.1 error=" in lines[0]


async def test_a_client_that_never_authenticates_writes_a_bounded_log(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C13: whatever an unauthenticated client sends on one connection (a 7,000-character
    path, CONNECTs with 8,000-character tokens, then junk), its share of the log stays
    bounded: values are cut to 200 characters and the third refusal ends the connection."""
    caplog.set_level(logging.INFO)
    path_bytes = len(caplog.text)
    long_path = "/" + "p" * 7_000  # under websockets' 8 KiB line limit: it reaches the app
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        server.pki.client_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            f"GET {long_path} HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        while tls.recv(65536):
            pass
    refused_upgrade = len(caplog.text) - path_bytes
    assert refused_upgrade < 400, caplog.text
    before = len(caplog.text)
    async with raw_socketio(server) as ws:
        try:
            for _ in range(10):
                await ws.send("40" + json.dumps({"token": "x" * 8000}))
                await asyncio.wait_for(ws.recv(), 5)
            await ws.send("42" + json.dumps(["z" * 8000]))
        except ConnectionClosed:
            pass
    connection = len(caplog.text) - before
    assert connection < 1000, caplog.text
    print(f"log bytes: refused upgrade {refused_upgrade}, websocket {connection}")


def test_a_peer_that_closes_before_its_handshake_is_not_logged(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C13: a TCP health check or port probe (connect, close) is no failed handshake: one
    warning per probe would bury the lines that matter."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass
    time.sleep(0.3)
    assert "tls_handshake_failed" not in caplog.text

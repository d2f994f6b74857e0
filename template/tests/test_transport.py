"""C02: websocket-only. Long-polling is refused before any body is read, and a polling
request cannot be upgraded either."""

from __future__ import annotations

import http.client
import socket

import pytest

from live import LiveServer


def http_request(
    server: LiveServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    status, _, payload = http_exchange(server, method, path, body)
    return status, payload


def http_exchange(
    server: LiveServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, timeout=5, context=server.pki.client_context()
    )
    try:
        connection.request(method, path, body=body, headers={"Host": "localhost"})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "query",
    ["EIO=4&transport=polling", "EIO=4", "EIO=3&transport=polling&b64=1"],
    ids=["polling", "no-transport", "eio3-polling"],
)
def test_polling_transport_is_refused(server: LiveServer, query: str) -> None:
    """C02: engineio's default transport is polling; without a transport it must refuse too.
    C20: python-engineio's own refusal carries the security headers as well."""
    status, headers, _ = http_exchange(server, "GET", f"/socket.io/?{query}")
    assert status == 400
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_polling_post_is_refused(server: LiveServer) -> None:
    """C02: a polling POST with a body is refused as well."""
    status, _ = http_request(
        server, "POST", "/socket.io/?EIO=4&transport=polling&sid=x", body=b"4" * 10_000
    )
    assert status == 400


def test_websocket_transport_without_upgrade_is_refused(server: LiveServer) -> None:
    """C02: `transport=websocket` over plain HTTP does not open a session."""
    status, body = http_request(server, "GET", "/socket.io/?EIO=4&transport=websocket")
    assert status == 400
    assert b'"sid"' not in body


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/admin", 404), ("/", 404)])
def test_http_responses_carry_security_headers(server: LiveServer, path: str, status: int) -> None:
    """C20: the HTTP surface outside Socket.IO answers with the security headers; there is
    no admin UI (C21)."""
    got, headers, _ = http_exchange(server, "GET", path)
    assert got == status
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "server" not in headers


UPGRADE = (
    b"Host: localhost\r\nOrigin: https://app.example.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
VERSION = b"Sec-WebSocket-Version: 13\r\n"


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("EIO=3&transport=websocket", UPGRADE + b"Sec-WebSocket-Version: 13\r\n"),
        ("EIO=5&transport=websocket", UPGRADE + b"Sec-WebSocket-Version: 13\r\n"),
        ("EIO=4&transport=websocket", UPGRADE + b"Sec-WebSocket-Version: 8\r\n"),
        ("EIO=4&transport=websocket", UPGRADE.replace(b"Sec-WebSocket-Key", b"X-Key")),
        ("EIO=4&transport=websocket&pad=" + "p" * 9000, UPGRADE + VERSION),
        ("EIO=4&transport=websocket", UPGRADE + VERSION + b"X-Pad: " + b"p" * 9000 + b"\r\n"),
        ("EIO=4&transport=websocket", UPGRADE + VERSION + b"X-Pad: p\r\n" * 130),
        ("EIO=4&transport=websocket", UPGRADE + VERSION + b"Transfer-Encoding: chunked\r\n"),
    ],
    ids=[
        "eio3",
        "eio5",
        "websocket-version-8",
        "no-websocket-key",
        "request-line-over-8k",
        "header-over-8k",
        "130-headers",
        "transfer-encoding",
    ],
)
def test_upgrades_refused_below_the_application_carry_the_security_headers(
    server: LiveServer, query: str, headers: bytes
) -> None:
    """C20: refusals written by the servers themselves (uvicorn's 403 when python-engineio
    closes an upgrade it does not accept, websockets' 400, 414, 426 and 431 for a bad
    handshake) carry the same headers as the application's, and end the connection at once
    (an upgrade request over websockets' limits got no answer and stayed open)."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        server.pki.client_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(f"GET /socket.io/?{query} HTTP/1.1\r\n".encode() + headers + b"\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    status = int(head.split()[1])
    assert 400 <= status < 500
    assert "x-content-type-options: nosniff" in head
    assert "content-security-policy: default-src 'none'; frame-ancestors 'none'" in head
    assert "strict-transport-security: max-age=" in head


PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"content-length: 0\r\n\r\n0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\n\r\nxx",
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: local\x00host\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello\r\n\r\n",
    ],
    ids=[
        "cl-and-te",
        "te-and-cl",
        "conflicting-cl",
        "te-not-chunked-last",
        "nul-in-header",
        "space-in-name",
        "bad-request-line",
        "binary",
    ],
)
def test_ambiguous_or_malformed_requests_get_one_400_and_a_closed_connection(
    server: LiveServer, request_bytes: bytes
) -> None:
    """C20/C21, RFC 9112 6.1: a request framed two ways (request smuggling) or not framed
    at all is answered 400 with the security headers, and the connection is closed: the
    request pipelined behind it is never served. (h11 unfolds obsolete line folding, as
    RFC 9112 5.2 allows.)"""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        server.pki.client_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(request_bytes + PIPELINED)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 400 ")
    assert "x-content-type-options: nosniff" in head
    assert "content-security-policy: default-src 'none'; frame-ancestors 'none'" in head

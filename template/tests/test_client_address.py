"""C12: the client address in logs and limits is the real peer. python-engineio's ASGI
driver fakes REMOTE_ADDR=127.0.0.1; forwarded headers count only from configured proxies."""

from __future__ import annotations

import logging

import pytest

from live import (
    LiveServer,
    Pki,
    SigningKeys,
    TokenFactory,
    live_server,
    make_settings,
    raw_socketio,
)

FORWARDED = {"X-Forwarded-For": "203.0.113.9"}


def connected_clients(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage().split("client=")[1].split()[0]
        for record in caplog.records
        if record.name == "security" and record.getMessage().startswith("connected ")
    ]


async def test_client_address_is_the_peer_not_remote_addr(
    server: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C12: a connection from 127.0.0.2 is logged as 127.0.0.2, not engineio's 127.0.0.1."""
    caplog.set_level(logging.INFO, logger="security")
    async with raw_socketio(server, token=make_token(), local_address="127.0.0.2"):
        pass
    assert connected_clients(caplog) == ["127.0.0.2"]


async def test_forwarded_header_is_ignored_without_configured_proxies(
    server: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C12: by default nobody may choose their own address."""
    caplog.set_level(logging.INFO, logger="security")
    async with raw_socketio(
        server, token=make_token(), local_address="127.0.0.2", headers=FORWARDED
    ):
        pass
    assert connected_clients(caplog) == ["127.0.0.2"]


async def test_forwarded_header_counts_only_from_a_configured_proxy(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """C12: behind a proxy at 127.0.0.2, its X-Forwarded-For names the client; the same
    header from anyone else is ignored."""
    caplog.set_level(logging.INFO, logger="security")
    settings = make_settings(pki, signing, forwarded_allow_ips=("127.0.0.2",))
    with live_server(settings, pki) as proxied:
        for source in ("127.0.0.2", "127.0.0.3"):
            async with raw_socketio(
                proxied, token=make_token(), local_address=source, headers=FORWARDED
            ):
                pass
    assert connected_clients(caplog) == ["203.0.113.9", "127.0.0.3"]

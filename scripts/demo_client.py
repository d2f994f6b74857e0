"""The client half of the demo; runs in the rendered project's virtual environment.

Usage: demo_client.py URL CA_FILE ORIGIN, with two tokens (alice, bob) on stdin.
Exits non-zero if anything does not happen exactly as a secure service must behave.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

import aiohttp
import socketio


def client(ca_file: str, http: aiohttp.ClientSession) -> socketio.AsyncClient:
    context = ssl.create_default_context(cafile=ca_file)  # verifies the dev CA
    return socketio.AsyncClient(
        reconnection=False,
        handle_sigint=False,
        http_session=http,
        websocket_extra_options={"ssl": context},
    )


async def main(url: str, ca_file: str, origin: str, alice_token: str, bob_token: str) -> int:
    async with aiohttp.ClientSession() as http:
        return await exchange(url, ca_file, origin, alice_token, bob_token, http)


async def exchange(
    url: str,
    ca_file: str,
    origin: str,
    alice_token: str,
    bob_token: str,
    http: aiohttp.ClientSession,
) -> int:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    alice, bob = client(ca_file, http), client(ca_file, http)
    bob.on("message", inbox.put)
    for name, sio, token in (("alice", alice, alice_token), ("bob", bob, bob_token)):
        await sio.connect(
            url,
            transports=["websocket"],
            auth={"token": token},
            headers={"Origin": origin},
            wait_timeout=5,
        )
        print(f"{name} connected over {sio.transport()} with sid {sio.get_sid()}")
    for name, sio in (("alice", alice), ("bob", bob)):
        ack = await sio.call("join", {"room": "lobby"}, timeout=5)
        print(f"{name} join lobby -> ack {ack}")
        assert ack == {"ok": True, "room": "lobby"}, ack
    ack = await alice.call("message", {"room": "lobby", "text": "hello bob"}, timeout=5)
    print(f"alice message -> ack {ack}")
    assert ack == {"ok": True, "room": "lobby"}, ack
    received = await asyncio.wait_for(inbox.get(), 5)
    print(f"bob received {received}")
    assert received["sub"] == "alice", received
    assert received["text"] == "hello bob", received
    ack = await bob.call("message", {"room": "lobby", "text": "<b>not html</b>" * 200}, timeout=5)
    print(f"bob sends an oversized text -> ack {ack}")
    assert ack["error"]["code"] == "invalid_payload", ack
    await alice.disconnect()
    await bob.disconnect()

    print("attack: a forged token (alice's token with bob's signature)")
    header, claims, _ = alice_token.split(".")
    forged = ".".join((header, claims, bob_token.split(".")[2]))
    refusals: list[Any] = []
    mallory = client(ca_file, http)
    mallory.on("connect_error", refusals.append)
    try:
        await mallory.connect(
            url, transports=["websocket"], auth={"token": forged}, headers={"Origin": origin}
        )
    except socketio.exceptions.ConnectionError:
        print(f"  refused: {refusals}")
    else:
        print("  ACCEPTED: this must never happen")
        return 1
    print("attack: a valid token from a foreign Origin (cross-site websocket hijacking)")
    mallory = client(ca_file, http)
    try:
        await mallory.connect(
            url,
            transports=["websocket"],
            auth={"token": bob_token},
            headers={"Origin": "https://evil.example"},
        )
    except socketio.exceptions.ConnectionError as exc:
        print(f"  refused: {exc}")
    else:
        print("  ACCEPTED: this must never happen")
        return 1
    return 0


if __name__ == "__main__":
    tokens = sys.stdin.read().split()
    raise SystemExit(asyncio.run(main(*sys.argv[1:4], *tokens)))

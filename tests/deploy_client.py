"""Clients of test_deploy.py, run by a rendered project's own Python (its venv has
python-socketio, aiohttp, PyJWT and redis-py; the template's tools have none of them).

    python deploy_client.py chat  '{"url": ..., "ca": ..., "key": ..., ...}'
    python deploy_client.py redis '{"url": ..., "ca": ..., "channel": ...}'

Prints one JSON object on standard output. No tests in this module.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any

import aiohttp
import jwt
import redis.asyncio as aioredis
import socketio
from redis.exceptions import NoPermissionError

TIMEOUT = 10


def token(cfg: dict[str, Any], sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": cfg["issuer"],
        "aud": cfg["audience"],
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "scope": "rooms:join rooms:write",
        "rooms": ["*"],
    }
    with open(cfg["key"], "rb") as key:
        return jwt.encode(claims, key.read(), algorithm=cfg["algorithm"])


async def client(
    cfg: dict[str, Any], sub: str, source: str
) -> tuple[socketio.AsyncClient, list[Any]]:
    """A websocket-only client connected from `source` (a loopback address) through the
    proxy, with extra headers `cfg["headers"]` (a spoofed X-Forwarded-For, say)."""
    context = ssl.create_default_context(cafile=cfg["ca"])
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    sio = socketio.AsyncClient(
        reconnection=False,
        handle_sigint=False,
        http_session=session,
        websocket_extra_options={"ssl": context},
    )
    received: list[Any] = []
    sio.on("message", lambda data: received.append(data))
    await sio.connect(
        cfg["url"],
        transports=["websocket"],
        auth={"token": token(cfg, sub)},
        headers={"Origin": cfg["origin"], **cfg.get("headers", {})},
        wait_timeout=TIMEOUT,
    )
    return sio, received


async def chat(cfg: dict[str, Any]) -> dict[str, Any]:
    """Two clients join a room through the proxy; one sends, the other receives."""
    alice, _ = await client(cfg, "alice", cfg["source"])
    bob, received = await client(cfg, "bob", cfg["source"])
    try:
        acks = [
            await alice.call("join", {"room": "lobby"}, timeout=TIMEOUT),
            await bob.call("join", {"room": "lobby"}, timeout=TIMEOUT),
            await alice.call(
                "message", {"room": "lobby", "text": "through nginx"}, timeout=TIMEOUT
            ),
        ]
        # Without a message queue, a member on another node gets nothing: no wait then.
        deadline = time.monotonic() + (TIMEOUT if cfg.get("expect_message", True) else 0.5)
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return {"acks": acks, "received": received, "transport": alice.transport()}
    finally:
        for sio in (alice, bob):
            await sio.disconnect()
            if sio.eio.http is not None:
                await sio.eio.http.close()


async def redis_check(cfg: dict[str, Any]) -> dict[str, Any]:
    """As the node user: every command the nodes send, on their channel and keys, then the
    same on another channel and another key; and python-socketio's own manager."""
    own, key = cfg["channel"], f"{cfg['channel']}:sessions:alice"
    r = aioredis.Redis.from_url(cfg["url"], ssl_ca_certs=cfg["ca"])
    allowed = {
        "ping": lambda: r.ping(),
        "zadd": lambda: r.zadd(key, {"conn-1": time.time()}),
        "zcard": lambda: r.zcard(key),
        "zrange": lambda: r.zrange(key, 0, -1),
        "zrangebyscore": lambda: r.zrangebyscore(key, 0, "+inf"),
        "zrem": lambda: r.zrem(key, "conn-1"),
        "zremrangebyscore": lambda: r.zremrangebyscore(key, 0, 1),
        "expire": lambda: r.expire(key, 60),
        "exists": lambda: r.exists(key),
        "publish": lambda: r.publish(own, "{}"),
    }
    refused = {
        "publish other channel": lambda: r.publish("other", "{}"),
        "zadd other key": lambda: r.zadd("other:sessions", {"x": 1}),
        "set own key": lambda: r.set(key, "x"),
        "flushall": lambda: r.flushall(),
        "keys": lambda: r.keys("*"),
        "config get": lambda: r.config_get("dir"),
    }
    result: dict[str, Any] = {"allowed": {}, "refused": {}}
    for name, call in allowed.items():
        try:
            await call()
            result["allowed"][name] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, judged by the test
            result["allowed"][name] = f"{type(exc).__name__}: {exc}"
    for name, call in refused.items():
        try:
            await call()
            result["refused"][name] = "accepted"
        except NoPermissionError:
            result["refused"][name] = "NOPERM"
        except Exception as exc:  # noqa: BLE001
            result["refused"][name] = f"{type(exc).__name__}: {exc}"
    # redis-py sends SUBSCRIBE without reading its answer: the refusal is the next message.
    pubsub = r.pubsub()
    try:
        await pubsub.subscribe("other")
        answer = await pubsub.get_message(timeout=TIMEOUT)
        result["refused"]["subscribe other channel"] = f"accepted: {answer}"
    except NoPermissionError:
        result["refused"]["subscribe other channel"] = "NOPERM"
    await pubsub.aclose()
    await r.aclose()
    # python-socketio's own manager: its listener subscribes, an emit publishes, and the
    # emit comes back through Redis to the listener.
    manager = socketio.AsyncRedisManager(
        cfg["url"], channel=own, redis_options={"ssl_ca_certs": cfg["ca"]}
    )
    manager._redis_connect()
    listener = manager.pubsub
    await listener.subscribe(own)
    await manager._publish({"method": "emit", "event": "probe"})
    message = None
    deadline = time.monotonic() + TIMEOUT
    while message is None and time.monotonic() < deadline:
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
    result["manager_round_trip"] = json.loads(message["data"]) if message else None
    await listener.aclose()
    await manager.redis.aclose()
    return result


def main() -> None:
    command, cfg = sys.argv[1], json.loads(sys.argv[2])
    run = {"chat": chat, "redis": redis_check}[command]
    print(json.dumps(asyncio.run(run(cfg)), default=str))


if __name__ == "__main__":
    main()

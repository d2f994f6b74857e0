"""Several nodes on one Redis, attacked and broken for real (C07, C11, C19; issue 13).

Not collected here: tests/test_cluster.py copies this file into a rendered project as
`tests/test_nodes_live.py` and runs it with the project's own pytest, so that it uses the
project's live helpers (real uvicorn nodes with real TLS on 127.0.0.1, real python-socketio
clients). Redis is Debian's redis-server, started from the project's own
`deploy/redis/` files (TLS, the `node` ACL user, AOF) by `services.py`, which
tests/test_cluster.py copies in beside this file.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import services
import socketio

from live import (
    LiveServer,
    Notices,
    Pki,
    SigningKeys,
    TokenFactory,
    connected,
    free_port,
    live_server,
    make_settings,
    refused,
    subprocess_env,
)

PACKAGE = os.environ["NODES_PACKAGE"]
ADMIN = "admin:revoke"
TIMEOUT = 0.25  # MESSAGE_QUEUE_TIMEOUT_SECONDS of the nodes
START_SECONDS = 10.0
# What the nodes promise once Redis is back: delivery across nodes within this many seconds.
RESUME_SECONDS = 5.0
OUTAGE_SECONDS = 8.0


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[services.RedisServer]:
    """Debian's redis-server from the project's deploy/redis/ files, with a CA of its own."""
    pki = services.Pki.create(tmp_path / "redis-pki")
    with services.redis_server(Path.cwd() / "deploy", tmp_path / "redis", pki) as server:
        yield server


def node_settings(
    pki: Pki, signing: SigningKeys, redis: services.RedisServer, **overrides: Any
) -> Any:
    """A node's production settings: the queue as deploy/ sets it up (the default channel,
    the node user), with the test's deadline."""
    return make_settings(
        pki,
        signing,
        message_queue_url=redis.url,
        message_queue_ca_file=redis.ca_file,
        message_queue_timeout_seconds=TIMEOUT,
        **overrides,
    )


@asynccontextmanager
async def member(
    node: LiveServer, token: str, room: str = "lobby"
) -> AsyncIterator[tuple[socketio.AsyncClient, list[dict[str, Any]]]]:
    """A client of `node` in `room`, with the messages it receives."""
    received: list[dict[str, Any]] = []
    async with connected(node, token) as client:
        client.on("message", received.append)
        assert (await client.call("join", {"room": room}, timeout=5))["ok"] is True
        yield client, received


async def delivered(
    sender: socketio.AsyncClient, received: list[dict[str, Any]], text: str, seconds: float
) -> float:
    """Send `text` again and again until it arrives; the seconds it took (fails past `seconds`)."""
    started = time.monotonic()
    attempt = 0
    async with asyncio.timeout(seconds):
        while True:
            attempt += 1
            await sender.call("message", {"room": "lobby", "text": f"{text}-{attempt}"}, timeout=5)
            await asyncio.sleep(0.05)
            if any(item["text"].startswith(text) for item in received):
                return time.monotonic() - started


async def timed_call(
    client: socketio.AsyncClient, event: str, payload: dict[str, Any]
) -> tuple[float, Any]:
    started = time.monotonic()
    ack = await client.call(event, payload, timeout=5)
    return time.monotonic() - started, ack


async def revoke(node: LiveServer, make_token: TokenFactory, sub: str) -> dict[str, Any]:
    async with connected(node, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin:
        ack: dict[str, Any] = await admin.call(
            "revoke", {"sub": sub}, namespace="/admin", timeout=5
        )
        return ack


def health(node: LiveServer) -> str:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", node.port, context=node.pki.client_context(), timeout=5
    )
    try:
        connection.request("GET", "/healthz")
        return str(json.loads(connection.getresponse().read())["status"])
    finally:
        connection.close()


async def until(condition: Any, seconds: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.05)
    return time.monotonic() - started


# ---------------------------------------------------------------------------------- tests


async def test_a_broadcast_on_one_node_reaches_room_members_on_the_other(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """The manager shares emits: bob on node B hears alice on node A, and the other way."""
    settings = node_settings(pki, signing, redis)
    with live_server(settings, pki) as a, live_server(settings, pki) as b:
        async with (
            member(a, make_token(sub="alice")) as (alice, to_alice),
            member(b, make_token(sub="bob")) as (bob, to_bob),
        ):
            await delivered(alice, to_bob, "from-a", 5)
            await delivered(bob, to_alice, "from-b", 5)
            assert health(a) == health(b) == "ok"


async def test_a_revoke_on_one_node_ends_the_subject_everywhere_within_a_second(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """C07 across nodes: a revoke on A closes alice's session on B within 1 s, after its
    `revoked` notice, and her token is refused on both nodes."""
    settings = node_settings(pki, signing, redis)
    stolen = make_token(sub="alice")
    with live_server(settings, pki) as a, live_server(settings, pki) as b:
        async with (
            connected(b, stolen) as alice,
            connected(a, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin,
        ):
            notices = Notices(alice, "revoked")
            started = time.monotonic()
            ack = await admin.call("revoke", {"sub": "alice"}, namespace="/admin", timeout=5)
            assert ack == {"ok": True, "sub": "alice", "disconnected": 0, "shared": True}
            await notices.ended_by("revoked", 1.0)
            assert time.monotonic() - started < 1.0
        assert await refused(a, stolen) == "unauthorized"
        assert await refused(b, stolen) == "unauthorized"


async def test_the_session_cap_of_a_subject_counts_every_node(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """C11: two sessions per subject in all: one on A and one on B, a third on either is
    refused; once one closes, there is room again."""
    settings = node_settings(pki, signing, redis, max_sessions_per_subject=2)
    with live_server(settings, pki) as a, live_server(settings, pki) as b:
        async with connected(a, make_token(sub="carol")):
            async with connected(b, make_token(sub="carol")):
                assert await refused(a, make_token(sub="carol")) == "unauthorized"
                assert await refused(b, make_token(sub="carol")) == "unauthorized"
            async with connected(a, make_token(sub="carol")) as again:
                assert (await again.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


async def test_a_node_that_stops_frees_its_sessions_at_once(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """A rolling restart: the subject's sessions on a node that stops are no longer
    counted (its leases go at shutdown, not 30 s later), so the clients reconnect to
    another node at once, even at the cap."""
    settings = node_settings(pki, signing, redis, max_sessions_per_subject=1)
    with live_server(settings, pki) as b:
        with live_server(settings, pki) as a:
            async with connected(a, make_token(sub="gina")) as gina:
                notices = Notices(gina, "unused")
                assert await refused(b, make_token(sub="gina")) == "unauthorized"
        await notices.wait_disconnected(5)
        async with connected(b, make_token(sub="gina")) as again:
            assert (await again.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


async def test_redis_killed_local_traffic_flows_and_everything_comes_back(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """Redis killed: no handler waits longer than the deadline, members of the same node
    still hear each other, /healthz says degraded; a revocation made meanwhile on A is
    applied on B once Redis is back, and cross-node delivery resumes within 5 s of its
    return."""
    settings = node_settings(pki, signing, redis)
    with live_server(settings, pki) as a, live_server(settings, pki) as b:
        async with (
            member(a, make_token(sub="alice")) as (alice, _),
            member(a, make_token(sub="amy")) as (_, to_amy),
            member(b, make_token(sub="bob")) as (_, to_bob),
            connected(b, make_token(sub="dora")) as dora,
        ):
            doomed = Notices(dora, "revoked")
            redis.kill()
            killed = time.monotonic()
            for _ in range(5):
                waited, ack = await timed_call(alice, "message", {"room": "lobby", "text": "local"})
                assert ack["ok"] is True
                assert waited < TIMEOUT + 0.2
            await until(lambda: any(m["text"] == "local" for m in to_amy), 2)
            await until(lambda: health(a) == "degraded", 5)
            ack = await revoke(a, make_token, "dora")
            assert ack["shared"] is False
            assert (
                await refused(a, make_token(sub="dora", iat=int(time.time()) - 5)) == "unauthorized"
            )
            # Long enough that a listener retrying after 1, 2, 4, 8 s (python-socketio's
            # own back-off) would hear nothing until 15 s: 7 s after Redis is back.
            await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - killed))
            redis.start()
            returned = time.monotonic()
            await doomed.ended_by("revoked", RESUME_SECONDS)
            await delivered(alice, to_bob, "after-restart", RESUME_SECONDS)
            assert time.monotonic() - returned < RESUME_SECONDS
            await until(lambda: health(a) == health(b) == "ok", RESUME_SECONDS)


async def test_redis_frozen_no_handler_waits_past_the_deadline(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """Redis stopped with SIGSTOP (a hung server, not a closed port): no handler waits
    longer than the deadline (and none at all once the heartbeat has called the queue
    lost); delivery resumes within 5 s of SIGCONT."""
    settings = node_settings(pki, signing, redis)
    with live_server(settings, pki) as a, live_server(settings, pki) as b:
        async with (
            member(a, make_token(sub="alice")) as (alice, _),
            member(a, make_token(sub="amy")) as (_, to_amy),
            member(b, make_token(sub="bob")) as (_, to_bob),
        ):
            redis.freeze()
            try:
                waits = []
                for index in range(5):
                    waited, ack = await timed_call(
                        alice, "message", {"room": "lobby", "text": f"frozen-{index}"}
                    )
                    assert ack["ok"] is True
                    waits.append(waited)
                assert max(waits) < TIMEOUT + 0.2, waits
                await until(
                    lambda: len([m for m in to_amy if m["text"].startswith("frozen")]) == 5, 2
                )
                async with connected(b, make_token(sub="erin")) as erin:  # connects bounded too
                    assert (await erin.call("join", {"room": "lobby"}, timeout=5))["ok"] is True
            finally:
                redis.thaw()
            thawed = time.monotonic()
            await delivered(alice, to_bob, "thawed", RESUME_SECONDS)
            assert time.monotonic() - thawed < RESUME_SECONDS


async def test_a_restarted_node_and_a_restarted_redis_still_refuse_a_revoked_token(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, redis: services.RedisServer
) -> None:
    """The deny-list lives in Redis (AOF): after Redis and then node B restart, B still
    refuses a token revoked on A before both restarts."""
    settings = node_settings(pki, signing, redis)
    stolen = make_token(sub="frank")
    with live_server(settings, pki) as a:
        assert (await revoke(a, make_token, "frank"))["shared"] is True
    redis.stop()
    redis.start()
    with live_server(settings, pki) as b:
        assert await refused(b, stolen) == "unauthorized"
        fresh = make_token(sub="frank", iat=int(time.time()) + 1)
        async with connected(b, fresh):
            pass


def _plain(value: object) -> str:
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal() if reveal is not None else value)


def serve(settings: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`serve` as the command line runs it, with these settings only (run outside the
    project: no `.env`); it must refuse."""
    port = str(free_port())
    return subprocess.run(  # noqa: S603 - the project's own command
        [sys.executable, "-m", PACKAGE, "serve", "--port", port],
        env=subprocess_env(**settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "ca", "reason"),
    [
        ("wrong-password", True, "the message queue refused the user or password"),
        ("redis://node:{password}@127.0.0.1:{port}/0", True, "message_queue_plaintext"),
        ("rediss://:{password}@127.0.0.1:{port}/0", True, "message_queue_default_user"),
        ("rediss://default:{password}@127.0.0.1:{port}/0", True, "message_queue_default_user"),
        ("good", False, "message_queue_ca_missing"),
    ],
)
def test_serve_refuses_a_queue_it_must_not_trust(
    pki: Pki,
    signing: SigningKeys,
    redis: services.RedisServer,
    tmp_path: Path,
    url: str,
    ca: bool,
    reason: str,
) -> None:
    """C19 at startup: a wrong password, a plaintext URL, the default user, no CA: exit 2
    with the reason, and the password never printed."""
    good = redis.url
    url = {"good": good, "wrong-password": good.replace(redis.node_password, "wrong")}.get(url, url)
    url = url.format(port=redis.port, password=redis.node_password)
    settings = {
        "ENVIRONMENT": "production",
        "TLS_CERT_FILE": str(pki.cert),
        "TLS_KEY_FILE": str(pki.key),
        "CORS_ALLOWED_ORIGINS": "https://app.example.test",
        "JWT_ISSUER": "https://issuer.example.test/",
        "JWT_AUDIENCE": "rooms-test",
        "MESSAGE_QUEUE_URL": url,
        **{name.upper(): _plain(value) for name, value in signing.settings.items()},
    }
    if ca:
        settings["MESSAGE_QUEUE_CA_FILE"] = str(redis.ca_file)
    result = serve(settings, tmp_path)
    assert result.returncode == 2, result.stderr
    assert reason in result.stderr
    assert redis.node_password not in result.stderr + result.stdout
    assert "Started server process" not in result.stderr

"""C06, C07: a session lives no longer than its token (unless renewed with `reauth`), and
an admin can cut a subject off at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from live import (
    LiveServer,
    Notices,
    Pki,
    SigningKeys,
    TokenFactory,
    connected,
    frames_until_closed,
    live_server,
    make_settings,
    raw_socketio,
    refused,
)

SHORT_TTL = 2  # seconds; the server's leeway does not extend a live session
ADMIN = "admin:revoke"
CLOSE_SECONDS = 1.0  # the time a client has to answer the server's close frame


@pytest.fixture(scope="module")
def roomy(pki: Pki, signing: SigningKeys) -> Iterator[LiveServer]:
    """A server whose limits stay out of the way of these tests."""
    with live_server(make_settings(pki, signing), pki) as server:
        yield server


async def test_session_ends_with_a_notice_when_its_token_expires(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C06: an `auth_expired` notice, then the disconnect."""
    async with connected(roomy, make_token(ttl=SHORT_TTL)) as client:
        notices = Notices(client, "auth_expired")
        await notices.ended_by("auth_expired", SHORT_TTL + 5)
        assert notices.received["auth_expired"][0]["code"] == "auth_expired"


async def test_reauth_with_a_fresh_token_extends_the_session(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C06"""
    async with connected(roomy, make_token(ttl=SHORT_TTL)) as client:
        notices = Notices(client, "auth_expired")
        ack = await client.call("reauth", {"token": make_token(ttl=300)}, timeout=5)
        assert ack["ok"] is True
        assert ack["expires_at"] > 0
        with pytest.raises(TimeoutError):
            await notices.wait_disconnected(SHORT_TTL + 1)
        assert (await client.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


@pytest.mark.parametrize("why", ["another subject", "expired", "forged"])
async def test_reauth_with_a_worse_token_is_refused_and_the_session_still_expires(
    roomy: LiveServer, make_token: TokenFactory, why: str
) -> None:
    """C06: a token for another `sub`, an expired one or a forged one changes nothing."""
    worse = {
        "another subject": make_token(sub="mallory", ttl=300),
        "expired": make_token(ttl=-60),
        "forged": make_token(ttl=300)[:-4] + "AAAA",
    }[why]
    async with connected(roomy, make_token(ttl=SHORT_TTL)) as client:
        notices = Notices(client, "auth_expired")
        ack = await client.call("reauth", {"token": worse}, timeout=5)
        assert ack["error"]["code"] == "forbidden"
        await notices.ended_by("auth_expired", SHORT_TTL + 5)


async def test_revoke_disconnects_every_connection_of_the_subject(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C07: both of alice's connections get a `revoked` notice and are closed; bob stays."""
    async with (
        connected(roomy, make_token(sub="alice")) as alice1,
        connected(roomy, make_token(sub="alice")) as alice2,
        connected(roomy, make_token(sub="bob")) as bob,
        connected(roomy, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin,
    ):
        watched = [Notices(alice1, "revoked"), Notices(alice2, "revoked")]
        ack = await admin.call("revoke", {"sub": "alice"}, namespace="/admin", timeout=5)
        assert ack == {"ok": True, "sub": "alice", "disconnected": 2}
        for notices in watched:
            await notices.ended_by("revoked", 5)
        assert (await bob.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


async def test_revoked_tokens_cannot_reconnect_but_newer_ones_can(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C07: a stolen token does not simply reconnect after a revocation; a token issued
    after it (the user signed in again) does."""
    stolen = make_token(sub="carol")
    async with connected(roomy, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin:
        ack = await admin.call("revoke", {"sub": "carol"}, namespace="/admin", timeout=5)
        assert ack == {"ok": True, "sub": "carol", "disconnected": 0}
    assert await refused(roomy, stolen) == "unauthorized"
    fresh = make_token(sub="carol", iat=int(time.time()) + 1)
    async with connected(roomy, fresh) as carol:
        assert (await carol.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


async def test_one_node_keeps_its_revocations_across_a_restart(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory, tmp_path: Path
) -> None:
    """C07 without a message queue: with REVOCATIONS_FILE, a restarted server still refuses
    a token revoked before the restart (the file is written atomically, mode 0600)."""
    stolen = make_token(sub="erin")
    deny_list = tmp_path / "state" / "revocations.json"
    settings = make_settings(pki, signing, revocations_file=deny_list)
    admin_token = make_token(sub="ops", scope=ADMIN)
    with live_server(settings, pki) as first:
        async with connected(first, admin_token, namespace="/admin") as admin:
            ack = await admin.call("revoke", {"sub": "erin"}, namespace="/admin", timeout=5)
            assert ack["ok"] is True
    assert deny_list.stat().st_mode & 0o777 == 0o600
    assert [path.name for path in deny_list.parent.iterdir()] == ["revocations.json"]
    with live_server(settings, pki) as second:
        assert await refused(second, stolen) == "unauthorized"
        fresh = make_token(sub="erin", iat=int(time.time()) + 1)
        async with connected(second, fresh) as erin:
            assert (await erin.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


async def test_admin_namespace_requires_the_admin_scope(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C07/C08: an ordinary token cannot open `/admin`. (A subject no test revokes: a
    token issued in the second a subject was revoked is refused for that reason.)"""
    assert await refused(roomy, make_token(sub="dave"), namespace="/admin") == "unauthorized"


async def test_revoke_needs_a_valid_payload(roomy: LiveServer, make_token: TokenFactory) -> None:
    """C09 on the admin surface too."""
    async with connected(roomy, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin:
        ack = await admin.call("revoke", {"sub": ""}, namespace="/admin", timeout=5)
        assert ack["error"]["code"] == "invalid_payload"


async def test_events_of_the_main_namespace_are_not_served_on_admin(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C08: no catch-all namespace, and no handler of another namespace."""
    async with connected(roomy, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin:
        ack = await admin.call("join", {"room": "lobby"}, namespace="/admin", timeout=5)
        assert ack["error"]["code"] == "unknown_event"
    assert await refused(roomy, make_token(), namespace="/anything") == "Unable to connect"


# ---------------------------------------------------------------- the end of a session


async def test_expired_session_closes_the_websocket_whatever_the_client_does(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C06: a raw client that ignores the notice and the Socket.IO DISCONNECT still loses
    its websocket (it kept it, answering pings, and received its rooms' broadcasts). On
    the wire: the `auth_expired` notice, then the DISCONNECT, then the close."""
    async with raw_socketio(roomy, token=make_token(sub="ignorer", ttl=SHORT_TTL)) as ws:
        started = time.monotonic()
        frames = await frames_until_closed(ws, SHORT_TTL + CLOSE_SECONDS + 3)
        assert time.monotonic() - started < SHORT_TTL + CLOSE_SECONDS + 2
        # The notice, the Socket.IO DISCONNECT, the Engine.IO close; then the close frame.
        assert frames[-3].startswith('42["auth_expired",'), frames
        assert frames[-2:] == ["41", "1"], frames


async def test_revoke_closes_the_websockets_and_admin_sessions_of_the_subject(
    roomy: LiveServer, make_token: TokenFactory
) -> None:
    """C07: revocation closes the subject's websockets, and its `/admin` sessions too."""
    async with (
        raw_socketio(roomy, token=make_token(sub="mallory")) as ws,
        connected(roomy, make_token(sub="mallory", scope=ADMIN), namespace="/admin") as own,
        connected(roomy, make_token(sub="ops", scope=ADMIN), namespace="/admin") as admin,
    ):
        own_notices = Notices(own, "revoked", namespace="/admin")
        ack = await admin.call("revoke", {"sub": "mallory"}, namespace="/admin", timeout=5)
        assert ack == {"ok": True, "sub": "mallory", "disconnected": 2}
        frames = await frames_until_closed(ws, CLOSE_SECONDS + 3)
        # The notice, the Socket.IO DISCONNECT, the Engine.IO close; then the close frame.
        assert frames[-3].startswith('42["revoked",'), frames
        assert frames[-2:] == ["41", "1"], frames
        await own_notices.ended_by("revoked", CLOSE_SECONDS + 3)


async def test_sessions_per_subject_are_capped(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory
) -> None:
    """C11: one subject's sessions are bounded (a stolen token cannot open thousands, each
    with an event budget of its own); other subjects are unaffected."""
    settings = make_settings(pki, signing, max_sessions_per_subject=2)
    with live_server(settings, pki) as server:
        async with (
            connected(server, make_token(sub="erin")),
            connected(server, make_token(sub="erin")),
        ):
            assert await refused(server, make_token(sub="erin")) == "unauthorized"
            async with connected(server, make_token(sub="frank")) as frank:
                assert (await frank.call("join", {"room": "lobby"}, timeout=5))["ok"] is True
        async with connected(server, make_token(sub="erin")) as erin:
            assert (await erin.call("join", {"room": "lobby"}, timeout=5))["ok"] is True


# ---------------------------------------------------------------- session lifetime


async def test_reauth_cannot_extend_a_session_past_its_absolute_lifetime(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory
) -> None:
    """C06 (ASVS 7.3): `max_session_seconds` after it opened a session ends, however
    fresh the tokens it was renewed with."""
    settings = make_settings(pki, signing, max_session_seconds=SHORT_TTL)
    with live_server(settings, pki) as server:
        async with connected(server, make_token(sub="renewer", ttl=300)) as client:
            notices = Notices(client, "auth_expired")
            ack = await client.call("reauth", {"token": make_token(sub="renewer")}, timeout=5)
            assert ack["ok"] is True
            assert ack["expires_at"] <= time.time() + SHORT_TTL
            await notices.ended_by("auth_expired", SHORT_TTL + CLOSE_SECONDS + 3)


async def test_idle_session_ends_with_a_notice_and_an_active_one_stays(
    pki: Pki, signing: SigningKeys, make_token: TokenFactory
) -> None:
    """C06 (ASVS 7.3): with `idle_timeout_seconds`, a session that sends no event for that
    long ends with an `idle_timeout` notice; one that keeps sending stays."""
    settings = make_settings(pki, signing, idle_timeout_seconds=1.0)
    with live_server(settings, pki) as server:
        async with (
            connected(server, make_token(sub="idler")) as idler,
            connected(server, make_token(sub="worker")) as worker,
        ):
            idle = Notices(idler, "idle_timeout")
            busy = Notices(worker, "idle_timeout")
            for _ in range(6):  # 2.4 s of events, each well within the timeout
                assert (await worker.call("join", {"room": "lobby"}, timeout=5))["ok"] is True
                await asyncio.sleep(0.4)
            await idle.ended_by("idle_timeout", CLOSE_SECONDS + 3)
            assert busy.order == []

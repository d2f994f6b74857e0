"""Robustness: property-based fuzzing of every event's payload and of raw Engine.IO /
Socket.IO frames. The server never crashes, never shows a client a traceback, answers
every event with a well-formed envelope, and keeps serving a bystander.

The normal suite runs FUZZ_EXAMPLES examples per property (default 60); set it higher
to search harder, e.g. `FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from live import (
    LiveServer,
    Pki,
    SigningKeys,
    TokenFactory,
    live_server,
    make_settings,
    raw_socketio,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EVENTS = ["join", "leave", "message", "reauth"]
CODES = {
    "invalid_payload",
    "forbidden",
    "rate_limited",
    "not_member",
    "auth_expired",
    "unknown_event",
    "internal",
}
LEAKS = ("Traceback", "Exception", 'File "')
STEP_SECONDS = 10.0
T = TypeVar("T")

# python-engineio refuses integers over 100 digits before decoding a packet (its guard
# against quadratic int parsing): such packets are dropped, covered by the frame fuzzer.
integers = st.integers(min_value=-(10**60), max_value=10**60)
json_values = st.recursive(
    st.none() | st.booleans() | integers | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"room": json_values}),
    st.fixed_dictionaries({"room": st.text(max_size=70), "text": json_values}),
    st.fixed_dictionaries({"token": json_values}),
)


class RawClient:
    """A websocket speaking Engine.IO by hand, for the synchronous property tests;
    reconnects when closed. Use it as a context manager.

    It drives websockets' asyncio client on an event-loop thread of its own, so every TLS
    read and write happens in that one thread. (websockets' sync client reads in a
    background thread while the caller writes, both on one ssl.SSLSocket, which OpenSSL does
    not support: under load an upgrade could go unanswered and the client then hang joining
    its reader thread.)
    """

    def __init__(self, server: LiveServer, token: str) -> None:
        self._server, self._token = server, token
        self._ws: ClientConnection | None = None
        self._opened: AsyncExitStack | None = None
        self._ack = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.close()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=STEP_SECONDS)
            self._loop.close()

    def _run(self, step: Coroutine[Any, Any, T], seconds: float = STEP_SECONDS) -> T:
        """Run `step` on the client's loop; TimeoutError after `seconds`."""

        async def bounded() -> T:
            return await asyncio.wait_for(step, seconds)

        return asyncio.run_coroutine_threadsafe(bounded(), self._loop).result()

    async def _open(self) -> ClientConnection:
        self._opened = AsyncExitStack()
        return await self._opened.enter_async_context(raw_socketio(self._server, token=self._token))

    @property
    def ws(self) -> ClientConnection:
        if self._ws is None:
            self._ws = self._run(self._open())
        return self._ws

    def send(self, frame: str | bytes) -> list[str | bytes]:
        """Send a frame; return what the server sends back within a short wait."""
        replies: list[str | bytes] = []
        try:
            self._run(self.ws.send(frame))
            while True:
                reply = self._run(self.ws.recv(), seconds=0.05)
                if reply == "2":
                    self._run(self.ws.send("3"))
                replies.append(reply)
        except TimeoutError:
            pass
        except ConnectionClosed:
            self.close()
        return replies

    def call(self, event: str, payload: Any) -> Any:
        self._ack += 1
        prefix = f"43{self._ack}"
        self._run(self.ws.send(f"42{self._ack}" + json.dumps([event, payload])))
        while True:
            frame = self._run(self.ws.recv())
            if frame == "2":
                self._run(self.ws.send("3"))
            elif isinstance(frame, str) and frame.startswith(prefix):
                return json.loads(frame[len(prefix) :])[0]

    def close(self) -> None:
        opened, self._opened, self._ws = self._opened, None, None
        if opened is not None:
            self._run(opened.aclose())


@pytest.fixture(scope="module")
def fuzz_server(pki: Pki, signing: SigningKeys) -> Iterator[LiveServer]:
    # Limits high enough that the fuzzer measures robustness, not the rate limiter.
    settings_ = make_settings(
        pki, signing, events_per_second=10_000.0, event_burst=10_000, max_frames_per_second=10_000.0
    )
    with live_server(settings_, pki) as server:
        yield server


@pytest.fixture(scope="module")
def fuzzer(fuzz_server: LiveServer, make_token: TokenFactory) -> Iterator[RawClient]:
    with RawClient(fuzz_server, make_token(sub="fuzzer", ttl=3600)) as client:
        yield client


@pytest.fixture(scope="module")
def bystander(fuzz_server: LiveServer, make_token: TokenFactory) -> Iterator[RawClient]:
    with RawClient(fuzz_server, make_token(sub="bystander", ttl=3600)) as client:
        yield client


def assert_serving(bystander: RawClient) -> None:
    assert bystander.call("join", {"room": "lobby"}) == {"ok": True, "room": "lobby"}


@FUZZ
@pytest.mark.timeout(max(60, EXAMPLES // 10))
@given(event=st.sampled_from(EVENTS), payload=payloads)
@example(event="join", payload={"room": 10**60})
@example(event="message", payload={"room": "lobby", "text": "\ud800"})
@example(event="reauth", payload={"token": "a.b.c"})
def test_every_event_answers_any_payload_with_an_envelope(
    fuzzer: RawClient, event: str, payload: Any
) -> None:
    ack = fuzzer.call(event, payload)
    assert isinstance(ack, dict)
    assert isinstance(ack["ok"], bool)
    if not ack["ok"]:
        assert ack["error"]["code"] in CODES
        assert ack["error"]["code"] != "internal", (event, payload)
    assert not any(leak in json.dumps(ack) for leak in LEAKS)


frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(
        lambda kind, namespace, ack, body: f"{kind}{namespace}{ack}{body}",
        st.sampled_from(
            ["0", "1", "2", "3", "4", "5", "6", "7", "40", "41", "42", "43", "44", "45", "46", "9"]
        ),
        st.sampled_from(["", "/", "/admin,", "/nope,", "/admin", ","]),
        st.sampled_from(["", "1", "99999999999999999999", "-1"]),
        st.one_of(st.just(""), json_values.map(json.dumps), st.text(max_size=50)),
    ),
)


@FUZZ
@pytest.mark.timeout(max(60, EXAMPLES // 10))
@given(frame=frames)
@example(frame="42" + "[" * 30_000)
@example(frame='42["join",{"room":' + "9" * 5000 + "}]")
@example(frame='421["join",{"room":' + "9" * 101 + "}]")
@example(frame='451-["join",{"_placeholder":true,"num":0}]')
@example(frame='42["join",' + '{"a":' * 5000 + "1" + "}" * 5000 + "]")
@example(frame=b"\x04" + b"\xff" * 100)
def test_raw_frames_never_crash_the_server_or_leak_a_traceback(
    fuzzer: RawClient, bystander: RawClient, frame: str | bytes
) -> None:
    for reply in fuzzer.send(frame):
        text = reply if isinstance(reply, str) else reply.decode("latin-1")
        assert not any(leak in text for leak in LEAKS), (frame, reply)


@pytest.mark.parametrize("frame", ["x", "\x00", ""], ids=["letter", "nul", "empty"])
def test_malformed_engineio_packet_is_one_log_line_and_a_protocol_close(
    fuzz_server: LiveServer, make_token: TokenFactory, caplog: pytest.LogCaptureFixture, frame: str
) -> None:
    """C13: python-engineio raises on these out of the ASGI app; instead of uvicorn's
    traceback per frame, the guard logs one security line and closes with 1002."""
    with RawClient(fuzz_server, make_token(sub="fuzzer")) as client:
        client.send(frame)
    assert "Traceback" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
    lines = [r.getMessage() for r in caplog.records if r.name == "security"]
    closed = [line for line in lines if line.startswith("connection_closed reason=protocol_error")]
    assert len(closed) == 1
    assert closed[0].endswith("error=ValueError")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("41/nope,-1x", "malformed_packet"),
        (b"\xff", "binary_refused"),
        ("40{", "malformed_packet"),
        ("49", "malformed_packet"),
    ],
    ids=["namespace", "binary", "json", "type"],
)
def test_malformed_socketio_packet_is_one_log_line_without_traceback(
    fuzz_server: LiveServer,
    bystander: RawClient,
    make_token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    frame: str | bytes,
    reason: str,
) -> None:
    """C13: python-engineio logged a traceback quoting packet fragments for these; the
    packet gate cuts the sender off with one line naming the reason, and serves others."""
    with RawClient(fuzz_server, make_token(sub="fuzzer")) as client:
        client.send(frame)
    assert "Traceback" not in caplog.text
    lines = [r.getMessage() for r in caplog.records if r.name in {"security", "engineio.server"}]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"connection_closed reason={reason}")
    assert_serving(bystander)


async def test_events_before_connect_are_not_dispatched(fuzz_server: LiveServer) -> None:
    """Events on a websocket that never sent CONNECT reach no handler and get no ack."""
    async with raw_socketio(fuzz_server) as ws:
        await ws.send('421["join",{"room":"lobby"}]')
        replies = []
        try:
            while True:
                replies.append(await asyncio.wait_for(ws.recv(), 0.5))
        except (TimeoutError, ConnectionClosed):
            pass
        assert not [reply for reply in replies if str(reply).startswith("431")]


def test_server_still_serves_after_the_fuzzing(bystander: RawClient) -> None:
    assert_serving(bystander)

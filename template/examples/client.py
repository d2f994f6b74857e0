"""A client of this service, to copy from: connect, join a room, send a message, print
what the room says, and keep the session alive past its token's expiry.

Run it from the project's directory while `serve` runs, with a command that prints a fresh
token (in development, the project's own `token` command; in production, whatever asks
your identity provider):

    python examples/client.py --token-command "SCRIPT token --sub alice --ttl 60"

where SCRIPT is the project's console script (README.md shows the exact line), or with
one token in the environment, `TOKEN=... python examples/client.py` (without a command
it cannot renew: the session ends when that token expires).

What it shows:
- websocket only: the server serves no long-polling, and a client left on its default
  transports fails with "Unexpected status code 400 in server response";
- TLS verified against the development CA (`certs/ca.pem`), never switched off;
- the token in the Socket.IO `auth` payload, and an `Origin` header when the server
  requires one;
- the ack envelope of every event: `{"ok": true, ...}` or
  `{"ok": false, "error": {"code": C, "message": M}}`;
- renewal: a `reauth` event with a fresh token before the current one expires; and when
  the session ended anyway (an `auth_expired` notice, then the server disconnects), a new
  connection with a fresh token.

Exit codes: 0 done, 1 an event was refused or the session was ended by the server,
2 the connection was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import jwt
import socketio

# Renew when half of the token's lifetime has passed.
RENEW_AT = 0.5
CALL_TIMEOUT = 5.0
# Notices the server sends just before it ends a session.
NOTICES = ("auth_expired", "revoked", "idle_timeout", "rate_limited")


class Refused(Exception):
    """An event the server acknowledged with `{"ok": false, ...}`."""

    def __init__(self, event: str, ack: Any) -> None:
        error = ack.get("error", {}) if isinstance(ack, dict) else {}
        self.code = str(error.get("code", "?"))
        super().__init__(f"{event} refused: {self.code} ({error.get('message', ack)})")


class Tokens:
    """Fresh tokens from a command, or the one token in `$TOKEN`."""

    def __init__(self, command: str | None, token: str | None) -> None:
        if not command and not token:
            raise SystemExit("client.py: give --token-command or set TOKEN")
        self._command = shlex.split(command) if command else None
        self._first = token

    @property
    def renewable(self) -> bool:
        return self._command is not None

    def get(self) -> str:
        if self._first is not None:
            token, self._first = self._first, None
            return token
        if self._command is None:
            raise RuntimeError("no way to get a fresh token")
        result = subprocess.run(  # noqa: S603 - the command the user gave
            self._command, capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"client.py: the token command failed: {result.stderr.strip()}")
        return result.stdout.strip()


def renew_at(token: str) -> float:
    """When to renew `token`: a client reads its own token's `iat` and `exp` without
    verifying it (the server verifies; the client only needs the times)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    issued, expires = float(claims.get("iat", time.time())), float(claims["exp"])
    return issued + RENEW_AT * (expires - issued)


async def call(client: socketio.AsyncClient, event: str, payload: dict[str, Any]) -> Any:
    """Send `event` and return its ack; raise `Refused` on an error envelope."""
    ack = await client.call(event, payload, timeout=CALL_TIMEOUT)
    if not (isinstance(ack, dict) and ack.get("ok") is True):
        raise Refused(event, ack)
    return ack


class Session:
    """One connection: the notices and messages it receives, and how it ended."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.ended = asyncio.Event()
        self.notice: str | None = None
        self.refusal: Any = None  # the server's reason when it refuses the connection
        self.client = socketio.AsyncClient(
            reconnection=False,  # reconnecting needs a fresh token: see run()
            handle_sigint=False,
            websocket_extra_options={"ssl": ssl.create_default_context(cafile=args.ca)},
        )
        self.client.on("message", self.on_message)
        self.client.on("disconnect", self.on_disconnect)
        self.client.on("connect_error", self.on_connect_error)
        for name in NOTICES:
            self.client.on(name, self.notice_handler(name))

    async def on_message(self, data: dict[str, Any]) -> None:
        # The sender gets no copy of its own message: only the room's other members do.
        print(f"message in {data['room']} from {data['sub']}: {data['text']}", flush=True)

    def notice_handler(self, name: str) -> Any:
        async def on_notice(data: dict[str, Any]) -> None:
            print(f"notice {name}: {data['message']}", flush=True)
            self.notice = name

        return on_notice

    async def on_disconnect(self, reason: Any = None) -> None:
        self.ended.set()

    async def on_connect_error(self, data: Any = None) -> None:
        self.refusal = data.get("message") if isinstance(data, dict) else data

    async def connect(self, args: argparse.Namespace, token: str) -> None:
        await self.client.connect(
            args.url,
            transports=["websocket"],  # the only transport served
            auth={"token": token},
            headers={"Origin": args.origin} if args.origin else {},
            wait_timeout=10,
        )
        print(f"connected to {args.url} over {self.client.transport()}", flush=True)

    async def live(self, token: str, tokens: Tokens, until: float, renew: bool) -> None:
        """Wait until `until` (event-loop time) or the end of the session, renewing the
        token with `reauth` before it expires."""
        loop = asyncio.get_running_loop()
        while not self.ended.is_set() and loop.time() < until:
            wake = until
            if renew and tokens.renewable:
                wake = min(until, loop.time() + max(0.0, renew_at(token) - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), max(0.0, wake - loop.time()))
            if self.ended.is_set() or loop.time() >= until:
                return
            token = tokens.get()
            try:
                ack = await call(self.client, "reauth", {"token": token})
            except socketio.exceptions.SocketIOError:
                # Too late: the session ended while the fresh token was on its way.
                await asyncio.wait_for(self.ended.wait(), CALL_TIMEOUT)
                return
            print(f"reauth ok: session renewed until {ack['expires_at']:.0f}", flush=True)


async def run(args: argparse.Namespace) -> int:
    tokens = Tokens(args.token_command, os.environ.get("TOKEN"))
    loop = asyncio.get_running_loop()
    until = loop.time() + args.seconds if args.seconds else float("inf")
    while True:
        session = Session(args)
        token = tokens.get()
        try:
            await session.connect(args, token)
        except socketio.exceptions.ConnectionError as exc:
            # The server says only "unauthorized": its log has the reason.
            print(f"connection refused: {session.refusal or exc}", file=sys.stderr)
            return 2
        try:
            await call(session.client, "join", {"room": args.room})
            print(f"joined {args.room}", flush=True)
            if args.text:
                await call(session.client, "message", {"room": args.room, "text": args.text})
                print(f"sent to {args.room}: {args.text}", flush=True)
            await session.live(token, tokens, until, renew=not args.no_renew)
        except Refused as exc:
            print(exc, file=sys.stderr)
            return 1
        finally:
            await session.client.disconnect()
        if loop.time() >= until:
            print("done", flush=True)
            return 0
        if session.notice == "auth_expired" and tokens.renewable:
            # Too late for `reauth`: the server ended the session. Start a new one.
            print("session expired; connecting again with a fresh token", flush=True)
            continue
        print(f"the server ended the session ({session.notice or 'disconnected'})")
        return 1


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="https://localhost:8443", help="the server")
    parser.add_argument("--ca", default="certs/ca.pem", help="CA file to verify the server")
    parser.add_argument("--origin", help="Origin header (needed when REQUIRE_ORIGIN is on)")
    parser.add_argument("--token-command", help="a command that prints a fresh token")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--text", help="a message to send once joined")
    parser.add_argument(
        "--seconds", type=float, default=0, help="stay connected this long (default: until ^C)"
    )
    parser.add_argument(
        "--no-renew", action="store_true", help="let the token expire (to see `auth_expired`)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run(parse(argv)))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

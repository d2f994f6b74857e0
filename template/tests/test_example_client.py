"""The README's client, `examples/client.py`, run as the README says against a live server:
a project set up by the real `init-dev`, tokens from the real `token` command, the
development CA, websocket only."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from live import (
    AUDIENCE,
    ISSUER,
    ORIGIN,
    LiveServer,
    Pki,
    SigningKeys,
    connected,
    live_server,
    make_settings,
    subprocess_env,
)

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT / "examples" / "client.py"
# The console script and its package, as pyproject.toml names them.
((SCRIPT, ENTRY),) = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"][
    "scripts"
].items()
ENV_PREFIX = ENTRY.split(".")[0].upper() + "_"
BIN = Path(sys.executable).parent
# The test server's issuer and audience, for the `token` command (it reads .env too).
TOKEN_ENV = subprocess_env(JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE)


@pytest.fixture(scope="module")
def dev_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory set up as the README's first steps leave it: `init-dev` has run."""
    cwd = tmp_path_factory.mktemp("dev")
    subprocess.run(  # noqa: S603 - the project's own console script
        [BIN / SCRIPT, "init-dev"], cwd=cwd, env=TOKEN_ENV, check=True, capture_output=True
    )
    return cwd


@pytest.fixture(scope="module")
def dev_server(dev_project: Path) -> Iterator[LiveServer]:
    """The server `serve` would run from that `.env` (development mode, its certificate and
    JWT keys), on an ephemeral port, with the test issuer, audience and origin."""
    values: dict[str, Any] = {}
    for name, value in dotenv_values(dev_project / ".env").items():
        if name.startswith(ENV_PREFIX) and value is not None:
            path = dev_project / value
            values[name.removeprefix(ENV_PREFIX).lower()] = path if path.is_file() else value
    certs = dev_project / "certs"
    pki = Pki(ca=certs / "ca.pem", cert=values["tls_cert_file"], key=values["tls_key_file"])
    settings = make_settings(pki, SigningKeys(signing_key=None, settings={}), **values)
    assert not settings.is_production
    with live_server(settings, pki) as server:
        yield server


def cli_token(dev_project: Path, sub: str) -> str:
    return subprocess.run(  # noqa: S603 - the project's own console script
        [BIN / SCRIPT, "token", "--sub", sub],
        cwd=dev_project,
        env=TOKEN_ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class Example:
    """`python examples/client.py ARGS` in the project set up by init-dev; its output
    lines, awaitable."""

    def __init__(self, dev_project: Path, server: LiveServer, *args: str) -> None:
        self.args = [
            sys.executable,
            str(EXAMPLE),
            "--url",
            server.url,
            "--ca",
            "certs/ca.pem",
            "--origin",
            ORIGIN,
            *args,
        ]
        self.cwd = dev_project
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    async def run(self, env: dict[str, str] | None = None) -> int:
        process = await asyncio.create_subprocess_exec(
            *self.args,
            cwd=self.cwd,
            env=env or TOKEN_ENV,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(40):
                async for line in process.stdout:
                    self.lines.append(line.decode().rstrip())
                    self.changed.set()
                return await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def printed(self, text: str, seconds: float = 20) -> None:
        async with asyncio.timeout(seconds):
            while not any(text in line for line in self.lines):
                self.changed.clear()
                await self.changed.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


async def test_example_client_exchanges_messages_and_renews_its_token(
    dev_project: Path, dev_server: LiveServer
) -> None:
    """C06: the example renews its session with `reauth` before the token expires, so it
    outlives its first token; it trusts the dev CA and gets its tokens from `token`."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    bob_token = cli_token(dev_project, "bob")
    async with connected(dev_server, bob_token, origin=ORIGIN) as bob:
        bob.on("message", inbox.put)
        assert (await bob.call("join", {"room": "lobby"}, timeout=5))["ok"] is True
        token_command = f"{BIN / SCRIPT} token --sub alice --ttl 8"
        example = Example(
            dev_project,
            dev_server,
            "--token-command",
            token_command,
            "--text",
            "hello from the example",
            "--seconds",
            "11",
        )
        running = asyncio.create_task(example.run())
        received = await asyncio.wait_for(inbox.get(), 20)
        assert (received["sub"], received["text"]) == ("alice", "hello from the example")
        ack = await bob.call("message", {"room": "lobby", "text": "hello alice"}, timeout=5)
        assert ack == {"ok": True, "room": "lobby"}
        await example.printed("message in lobby from bob: hello alice")
        exit_code = await running
    assert exit_code == 0, example.output
    assert "connected to https://127.0.0.1" in example.output
    assert "over websocket" in example.output
    assert "reauth ok" in example.output
    assert "auth_expired" not in example.output
    # The sender gets no copy of its own broadcast.
    assert "from alice" not in example.output


async def test_example_client_connects_again_after_auth_expired(
    dev_project: Path, dev_server: LiveServer
) -> None:
    """C06: without renewal the server ends the session with an `auth_expired` notice; the
    example then connects again with a fresh token and joins its room again."""
    example = Example(
        dev_project,
        dev_server,
        "--token-command",
        f"{BIN / SCRIPT} token --sub alice --ttl 3",
        "--no-renew",
        "--seconds",
        "6",
    )
    assert await example.run() == 0, example.output
    notice = example.lines.index("notice auth_expired: the session's token has expired")
    assert example.lines[notice + 1] == "session expired; connecting again with a fresh token"
    # Joined again in a new session (more than once when the machine is slow: the server
    # accepts a token within its leeway after `exp`, and ends that session at once).
    assert "joined lobby" in example.lines[notice + 2 :], example.output
    assert example.lines[-1] == "done"


async def test_example_client_reports_a_refused_token(
    dev_project: Path, dev_server: LiveServer
) -> None:
    """C04: a token from `$TOKEN` that the server refuses: exit code 2 and the reason."""
    example = Example(dev_project, dev_server)
    exit_code = await example.run(env={**TOKEN_ENV, "TOKEN": "not-a-token"})
    assert exit_code == 2, example.output
    assert "connection refused: unauthorized" in example.output

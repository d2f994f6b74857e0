"""Issue 12: the rendered README works as written on a fresh machine, tested from its own
text. The fenced shell blocks between `<!-- steps -->` and `<!-- /steps -->` run in order,
in a fresh render, each line in its own `bash -c` in the project's directory.

What does not run here as written, and what runs instead:
- uv is the one of this template's `.venv` (tests/requirements.txt), alone on a directory
  put first on PATH: the README assumes it installed, not how.
- `UV_PYTHON_DOWNLOADS=never`: the test must not download a Python; `.python-version`
  names one that is on PATH here.
- `SKIP=actionlint` for the hooks (`pre-commit run` and `git commit`): pre-commit builds
  actionlint from its Go module, and this machine cannot reach the Go module proxy.
  test_supply_chain runs a stand-in actionlint build on the same workflow files.
- `. .venv/bin/activate`: each line runs in a shell of its own, so the activation is
  carried to the next lines as their environment (VIRTUAL_ENV, PATH), as `activate` sets it.
- `<script> serve` runs in the background, on a free port instead of 8443 (other tests run
  at the same time), until the example client is done; then it is stopped by its PID.
- the example client gets `--url` with that port, and `--seconds 3`: it runs until Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import SCRIPT, interpreter, render, run, uv

STEPS = re.compile(r"<!-- steps -->\n(.*?)<!-- /steps -->", re.DOTALL)
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
CLIENT_SECONDS = "3"


def steps(readme: str) -> list[str]:
    """The command lines of the README's getting-started blocks, in order."""
    found = STEPS.findall(readme)
    assert len(found) == 1, "the README marks its steps once: <!-- steps --> ... <!-- /steps -->"
    return [
        line
        for block in SHELL_BLOCK.findall(found[0])
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(project: Path, port: int, server: subprocess.Popen[str]) -> None:
    """Until the server answers `/healthz` over TLS, verified with the dev CA (bounded)."""
    context = ssl.create_default_context(cafile=project / "certs" / "ca.pem")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(
                f"https://localhost:{port}/healthz", context=context, timeout=2
            ) as response:
                assert response.read() == b'{"status":"ok"}'
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def stop_servers() -> Iterator[list[subprocess.Popen[str]]]:
    servers: list[subprocess.Popen[str]] = []
    yield servers
    for server in servers:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def test_rendered_readme_steps_run_as_written(
    tmp_path: Path, stop_servers: list[subprocess.Popen[str]]
) -> None:
    """From a fresh render: git init, uv sync --locked (on .python-version's Python), the
    hooks installed and run over every file, a first commit through them, init-dev, serve,
    and the README's example client against that server."""
    project = render(tmp_path / "fresh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").symlink_to(uv())
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env |= {
        "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
        "UV_PYTHON_DOWNLOADS": "never",
        "SKIP": "actionlint",
    }
    port = free_port()
    outputs: dict[str, str] = {}  # what each command printed, by its words
    served = False
    for line in steps((project / "README.md").read_text()):
        words = shlex.split(line, comments=True)
        if words == [".", ".venv/bin/activate"]:
            venv = project / ".venv"
            env |= {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
        elif words == [SCRIPT, "serve"]:
            server = subprocess.Popen(  # noqa: S603 - the project's console script, on PATH
                [*words, "--port", str(port)],
                cwd=project,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            stop_servers.append(server)
            wait_healthy(project, port, server)
            served = True
        elif words[:2] == ["python", "examples/client.py"]:
            assert served, "the README runs its client before it starts the server"
            client = [*words, "--url", f"https://localhost:{port}", "--seconds", CLIENT_SECONDS]
            outputs["client"] = run(client, cwd=project, env=env, timeout=60).stdout
        else:
            result = run(["bash", "-c", line], cwd=project, env=env)
            outputs[" ".join(words)] = result.stdout + result.stderr

    def output(command: str) -> str:
        found = [text for words, text in outputs.items() if words.startswith(command)]
        assert len(found) == 1, f"the steps run `{command}` once: {list(outputs)}"
        return found[0]

    # The hooks ran on the project's files, not on nothing (untracked files skip them all).
    assert re.search(
        r"^ruff check\.+Passed$", output("uv run pre-commit run --all-files"), re.MULTILINE
    )
    # The first commit went through the installed hook, and left nothing behind.
    assert re.search(r"^mypy --strict.*\.+Passed$", output("git commit"), re.MULTILINE)
    assert run(["git", "rev-list", "--count", "HEAD"], cwd=project).stdout.strip() == "1"
    assert run(["git", "status", "--porcelain"], cwd=project).stdout == ""
    # uv made the environment on the Python that .python-version names.
    version = (project / ".python-version").read_text().strip()
    assert f"version_info = {version}." in (project / ".venv" / "pyvenv.cfg").read_text()
    # The client connected websocket-only, verified TLS, joined and sent.
    assert "over websocket" in outputs["client"]
    assert "joined lobby" in outputs["client"]
    assert "sent to lobby: hello" in outputs["client"]
    assert outputs["client"].rstrip().endswith("done")


def test_python_version_file_chooses_the_interpreter_uv_syncs_with(tmp_path: Path) -> None:
    """`.python-version` holds the `python_version` answer, and `uv sync --locked` uses that
    Python, not the newest one on PATH (the lock's requires-python admits it)."""
    bins = [Path(interpreter("3.13")).parent, Path(interpreter("3.12")).parent]
    project = render(tmp_path / "p", python_version="3.12")
    assert (project / ".python-version").read_text() == "3.12\n"
    path = os.pathsep.join([*map(str, bins), str(Path(uv()).parent), "/usr/bin", "/bin"])
    result = run(
        [uv(), "sync", "--locked", "--dry-run"],
        cwd=project,
        env={"PATH": path, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""},
    )
    assert "Using CPython 3.12." in result.stderr, result.stderr

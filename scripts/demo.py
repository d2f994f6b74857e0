"""The main job, end to end, as a new user would do it by hand.

1. render a project with the default answers, without --trust;
2. install it in its own virtual environment;
3. `init-dev` (local CA, server certificate, dev key pair, .env) and `check`;
4. `serve` over TLS on a free loopback port;
5. two real python-socketio clients (websocket only, CA verified) connect with tokens
   from `token`, join a room and exchange messages with acks;
6. one refused attack each: a forged token, and a foreign Origin;
7. stop the server cleanly.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import PACKAGE, SCRIPT, make_venv, render, run

ORIGIN = "https://app.example.com"  # the default answer's allowed origin
CLIENT = Path(__file__).resolve().parent / "demo_client.py"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve exited early with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("serve did not start listening in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="render into this directory and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="secure-rooms-demo-"))
    project = workdir / SCRIPT
    if project.exists():
        raise SystemExit(f"{project} exists; choose another --keep directory")
    try:
        return demo(project)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def demo(project: Path) -> int:
    step(f"copier copy --defaults (no --trust) -> {project}")
    render(project)
    print("\n".join(sorted(str(p.relative_to(project)) for p in project.rglob("*.py"))))

    step("install the project in its own virtual environment (uv)")
    venv = make_venv(project)
    script, python = venv / "bin" / SCRIPT, venv / "bin" / "python"

    step(f"{SCRIPT} init-dev")
    print(run([script, "init-dev"], cwd=project).stdout.strip())
    step(f"{SCRIPT} check")
    print(run([script, "check"], cwd=project).stdout.strip())

    port = free_port()
    step(f"{SCRIPT} serve --port {port}")
    server = subprocess.Popen(  # noqa: S603 - the project's own script
        [str(script), "serve", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, server)
        print(f"listening on https://localhost:{port} (TLS, websocket only)")
        step(f"{SCRIPT} token --sub alice / --sub bob")
        tokens = [
            run([script, "token", "--sub", sub], cwd=project).stdout.strip()
            for sub in ("alice", "bob")
        ]
        print("two tokens signed with the development key (not printed)")
        step("clients connect, join a room and exchange messages")
        result = subprocess.run(  # noqa: S603 - the project's own interpreter
            [str(python), str(CLIENT), f"https://localhost:{port}", "certs/ca.pem", ORIGIN],
            cwd=project,
            input="\n".join(tokens),
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        step("stop the server (SIGTERM)")
        server.send_signal(signal.SIGTERM)
        try:
            log, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            log, _ = server.communicate()
    print("server log:")
    print("\n".join(f"  | {line}" for line in log.strip().splitlines()))
    if "Finished server process" not in log:
        print("the server did not shut down cleanly")
        return 1
    if result.returncode != 0:
        print(f"the client demo failed ({result.returncode})")
        return 1
    step(f"done: {PACKAGE} served, authenticated, exchanged messages and refused attacks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

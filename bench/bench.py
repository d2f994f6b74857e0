"""Benchmark: the hardened rendered server against a bare python-socketio server.

Both run on the same machine in the same run, on uvicorn with the same websocket
implementation and the same TLS certificate. In every run both servers are up and each
phase runs on one and then on the other (connect and echo `--repeats` times each, the
order swapped every run), so that drift of the machine hits both alike. Client load runs
in separate processes (bench/load.py) on loopback. Figures are medians over all samples,
and the median of the paired ratios (each hardened sample over the bare one measured
next to it); the server's own CPU time per operation is read from /proc, so that the
Python clients, which share the cores, do not hide the server's cost.

Usage: bench/run [--runs 5] [--repeats 3] [--connections 500] [--echo-seconds 10]
                 [--hold 1000 ...]
       bench/run --quick   (the smoke run the test suite makes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import PACKAGE, SCRIPT, make_venv, render, run  # noqa: E402

ORIGIN = "https://app.example.com"
PACKAGES = ("python-socketio", "python-engineio", "uvicorn", "websockets", "PyJWT", "pydantic")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The hardened server keeps every check; only the abuse limits are raised so that the
# benchmark measures their cost, not their refusals.
LIMITS = {
    "EVENTS_PER_SECOND": "1000000",
    "EVENT_BURST": "1000000",
    "MAX_FRAMES_PER_SECOND": "1000000",
    "MAX_CONNECTIONS": "50000",
    "MAX_CONNECTIONS_PER_ADDRESS": "50000",
    "CONNECTIONS_PER_SECOND_PER_ADDRESS": "1000000",
    "MAX_SESSIONS_PER_SUBJECT": "1000000",  # every load client is subject "bench"
    "CONNECT_TIMEOUT_SECONDS": "60",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class Project:
    root: Path
    python: Path
    script: Path
    env: dict[str, str]
    token: str

    @property
    def cert(self) -> Path:
        return self.root / "certs" / "server.pem"

    @property
    def key(self) -> Path:
        return self.root / "certs" / "server-key.pem"

    @property
    def ca(self) -> Path:
        return self.root / "certs" / "ca.pem"


def setup(work: Path) -> Project:
    root = render(work / "project")
    venv = make_venv(root)
    script = venv / "bin" / SCRIPT
    run([script, "init-dev"], cwd=root)
    prefix = PACKAGE.upper() + "_"
    env = {**os.environ, **{prefix + name: value for name, value in LIMITS.items()}}
    token = run([script, "token", "--sub", "bench", "--ttl", "3600"], cwd=root, env=env)
    return Project(root, venv / "bin" / "python", script, env, token.stdout.strip())


@dataclass
class Server:
    kind: str
    process: subprocess.Popen[bytes]
    port: int

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def settle(self, limit: float = 300.0) -> None:
        """Wait until the server is idle (under 5 % of a core for half a second), so that
        a phase is charged neither with the previous phase's disconnects nor with its own
        still running."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = self.cpu()
            time.sleep(0.5)
            if self.cpu() - before <= 0.025:
                return
        raise RuntimeError(f"the {self.kind} server stayed busy for {limit:.0f} s")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(kind: str, project: Project, env: dict[str, str] | None = None) -> Server:
    """Start the `hardened` (the project's `serve`) or the `bare` server on a free port, with
    the project's environment or `env`; returns once it answers a TLS handshake."""
    port = free_port()
    if kind == "hardened":
        command = [str(project.script), "serve", "--port", str(port)]
    else:
        bare = HERE / "bare_server.py"
        command = [str(project.python), str(bare), str(port), str(project.cert),
                   str(project.key), ORIGIN]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own servers
        command, cwd=project.root, env=env or project.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = Server(kind, process, port)
    context = ssl.create_default_context(cafile=project.ca)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {kind} server exited with {process.returncode}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the {kind} server did not start")


def load(project: Project, server: Server, mode: str, **options: Any) -> subprocess.Popen[str]:
    command = [str(project.python), str(HERE / "load.py"), mode, "--port", str(server.port),
               "--ca", str(project.ca), "--origin", ORIGIN]  # fmt: skip
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return subprocess.Popen(  # noqa: S603 - our load generator
        command, env={**project.env, "BENCH_TOKEN": project.token},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def result(process: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def phase_connect(project: Project, server: Server, count: int, procs: int) -> dict[str, float]:
    server.settle()
    before = server.cpu()
    runs = [
        load(project, server, "connect", n=n, slice=i) for i, n in enumerate(split(count, procs))
    ]
    # Wall time as each load process measured it (without its own start-up); the slices
    # run side by side, so the slowest one is the phase's.
    wall = max(result(process)["seconds"] for process in runs)
    server.settle()  # the connections' disconnects belong to this phase
    cpu = server.cpu() - before
    return {"connects_per_s": count / wall, "cpu_us_per_connect": 1e6 * cpu / count}


def phase_echo(
    project: Project, server: Server, count: int, seconds: float, procs: int
) -> dict[str, float]:
    server.settle()
    start_at = time.time() + 3 + count / 100
    runs = [
        load(project, server, "echo", n=n, seconds=seconds, slice=i, start_at=start_at)
        for i, n in enumerate(split(count, procs))
    ]
    time.sleep(max(0.0, start_at - time.time()))
    before = server.cpu()
    time.sleep(seconds)
    cpu = server.cpu() - before
    results = [result(process) for process in runs]
    messages = sum(r["messages"] for r in results)
    return {
        "echo_msgs_per_s": messages / seconds,
        "cpu_us_per_echo": 1e6 * cpu / messages,
        "echo_p50_ms": statistics.median(r["p50_ms"] for r in results),
        "echo_p99_ms": max(r["p99_ms"] for r in results),
    }


def phase_hold(project: Project, server: Server, count: int, procs: int) -> dict[str, float]:
    base = server.rss_kib()
    runs = [
        load(project, server, "hold", n=n, slice=i, seconds=300)
        for i, n in enumerate(split(count, procs))
    ]
    for process in runs:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"hold failed:\n{process.communicate()[1][-3000:]}")
    time.sleep(1)
    held = server.rss_kib()
    sent = result(load(project, server, "send"))["sent"]
    results = [result(process) for process in runs]
    received = sum(r["received"] for r in results)
    if received != count:
        raise RuntimeError(f"broadcast reached {received} of {count}")
    return {
        f"rss_kib_per_conn_{count}": (held - base) / count,
        f"broadcast_s_{count}": max(r["last"] for r in results) - sent,
    }


@dataclass
class Figures:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, kind: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.samples.setdefault(name, {}).setdefault(kind, []).append(value)

    def medians(self) -> dict[str, dict[str, float]]:
        """Per figure: each server's median, and the median of the runs' own ratios
        (`paired`: each hardened sample over the bare one measured next to it, the steadier
        figure)."""
        medians: dict[str, dict[str, float]] = {}
        for name, by_kind in self.samples.items():
            medians[name] = {kind: statistics.median(values) for kind, values in by_kind.items()}
            pairs = zip(by_kind.get("hardened", ()), by_kind.get("bare", ()), strict=False)
            ratios = [hardened / bare for hardened, bare in pairs if bare]
            if ratios:
                medians[name]["paired"] = statistics.median(ratios)
        return medians


def versions(project: Project) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys, ssl; print(json.dumps({"
        "'python': sys.version.split()[0], 'openssl': ssl.OPENSSL_VERSION, **{p: m.version(p) "
        "for p in PACKAGES}}))"
    ).replace("PACKAGES", repr(PACKAGES))
    return json.loads(run([project.python, "-c", code], cwd=project.root).stdout)  # type: ignore[no-any-return]


def table(medians: dict[str, dict[str, float]]) -> str:
    lines = [f"{'figure (median)':<28} {'bare':>10} {'hardened':>10} {'ratio':>7} {'paired':>7}",
             "-" * 66]  # fmt: skip
    nan = float("nan")
    for name, by_kind in medians.items():
        bare, hardened = by_kind.get("bare", nan), by_kind.get("hardened", nan)
        ratio = hardened / bare if bare else nan
        paired = by_kind.get("paired", nan)
        lines.append(f"{name:<28} {bare:>10.2f} {hardened:>10.2f} {ratio:>7.2f} {paired:>7.2f}")
    return "\n".join(lines)


def chart(medians: dict[str, dict[str, float]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(medians)
    ratios = [medians[n].get("paired", 0.0) for n in names]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    axes.barh(names, ratios, color="#4c72b0")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.axvline(1.1, color="#c44e52", linewidth=0.8, linestyle="--")
    axes.set_xlabel("hardened / bare (median of the runs' ratios)")
    axes.set_title(title, fontsize=10)
    axes.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--echo-connections", type=int, default=50)
    parser.add_argument("--echo-seconds", type=float, default=10.0)
    parser.add_argument("--hold", type=int, nargs="*", default=[1000])
    parser.add_argument("--procs", type=int, default=2, help="load processes per phase")
    parser.add_argument(
        "--repeats", type=int, default=3, help="connect and echo phases per server per run"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeats, args.connections, args.echo_connections = 1, 1, 40, 4
        args.echo_seconds, args.hold = 1.5, [40]

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        project = setup(Path(work))
        figures = Figures()
        for index in range(args.runs):
            # Both servers up, each phase run on one and then at once on the other, the
            # order swapped every run: a drift of the machine hits both alike.
            order = ("bare", "hardened") if index % 2 == 0 else ("hardened", "bare")
            servers: dict[str, Server] = {}
            try:
                for kind in order:
                    servers[kind] = start(kind, project)
                for count in args.hold:
                    procs = max(args.procs, count // 2500)
                    for kind in order:
                        figures.add(kind, phase_hold(project, servers[kind], count, procs))
                for _ in range(args.repeats):
                    for kind in order:
                        connect = (args.connections, args.procs)
                        figures.add(kind, phase_connect(project, servers[kind], *connect))
                for _ in range(args.repeats):
                    for kind in order:
                        echo = (args.echo_connections, args.echo_seconds, args.procs)
                        figures.add(kind, phase_echo(project, servers[kind], *echo))
            finally:
                for server in servers.values():
                    server.stop()
            print(
                f"run {index + 1}/{args.runs} done ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
            )
        medians = figures.medians()
        meta = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "versions": versions(project),
            "runs": args.runs,
            "options": {k: str(v) for k, v in vars(args).items() if k != "out"},
            "seconds": round(time.monotonic() - started),
        }
    print(table(medians))
    print(json.dumps(meta["versions"]))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "bench"
    (args.out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "medians": medians, "samples": figures.samples}, indent=2) + "\n"
    )
    if chart(medians, args.out / f"{stem}.png", f"{meta['date']} · {meta['machine']}"):
        print(f"chart: {args.out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: several nodes on one Redis (issue 13) against one node without a queue.

Three set-ups of the rendered project's own `serve` (the hardened server, as bench.py
runs it), each started afresh in every run and measured alone, the order rotated from run
to run (they cannot run side by side: every node on the queue hears every message of the
channel):

- `single`: one node, no queue (the embedded default);
- `queue`: one node on the queue (`MESSAGE_QUEUE_URL`, `rediss://` with its CA file):
  every emit goes to Redis and comes back before it is delivered;
- `two`: two nodes on the queue.

Redis is Debian's redis-server started by tests/services.py from the project's own
`deploy/redis/` files (TLS only, the `node` ACL user, AOF), with a CA made for the run;
everything listens on 127.0.0.1 and everything is stopped at the end. Phases, per set-up
and run:

- broadcast: `--hold` clients join `lobby` (two load processes: one per node for `two`,
  both on the one node otherwise); then `--broadcasts` broadcasts, one at a time, each
  sent by a client of the first node once every node is idle: the time until the last of
  the clients got it. Every client must get every broadcast within `--wait` s, or the run
  fails.
- messages: `--pairs` pairs per load process, two processes; a pair is a sender and a
  receiver in a room of their own (for `two`, every sender on one node and its receiver
  on the other, half of them each way). Each sender waits for its ack and for its
  receiver to get the message before it sends the next one (a message not delivered
  within `--wait` s fails the run). Server CPU time per delivered message, from /proc:
  the nodes', Redis's, and their sum.

Usage: bench/run nodes [--runs 3] [--hold 1000] [--broadcasts 5] [--pairs 25] [--seconds 6]
       bench/run nodes --quick   (the smoke run tests/test_bench.py makes)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import services

from bench import HERE, ORIGIN, Project, Server, load, result, setup, start, versions
from harness import PACKAGE, SCRIPT

SETUPS = ("single", "queue", "two")
PREFIX = PACKAGE.upper() + "_"
CHANNEL = SCRIPT  # the queue's default channel, the one deploy/redis/users.acl.example grants
SUBSCRIBE_SECONDS = 10.0
STOP_SECONDS = 10.0


class Lines:
    """A load process's stdout, one JSON line at a time, each awaited at most `timeout`."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"a load process said nothing for {timeout:.0f} s") from None
        if line is None:
            self.process.wait(STOP_SECONDS)
            assert self.process.stderr is not None
            error = self.process.stderr.read()[-3000:]
            raise RuntimeError(f"a load process exited {self.process.returncode}:\n{error}")
        return json.loads(line)  # type: ignore[no-any-return]

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def driven(project: Project, server: Server, mode: str, **options: Any) -> Lines:
    """A load process (bench/load.py) that the bench drives over stdin."""
    command = [str(project.python), str(HERE / "load.py"), mode, "--port", str(server.port),
               "--ca", str(project.ca), "--origin", ORIGIN]  # fmt: skip
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(  # noqa: S603 - our load generator
        command, env={**project.env, "BENCH_TOKEN": project.token},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Lines(process)


def finish(processes: list[subprocess.Popen[str]]) -> None:
    """Close their stdin (they then end on their own), wait, then kill what is left."""
    for process in processes:
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)


class Nodes:
    """The server processes of one set-up, and Redis (whose CPU time counts too)."""

    def __init__(self, name: str, project: Project, redis: services.RedisServer) -> None:
        self.name = name
        self.servers: list[Server] = []
        assert redis.process is not None
        self.redis = Server("redis", redis.process, redis.port)  # for its CPU time
        env = project.env
        if name != "single":
            env = {
                **project.env,
                PREFIX + "MESSAGE_QUEUE_URL": redis.url,
                PREFIX + "MESSAGE_QUEUE_CA_FILE": str(redis.ca_file),
            }
        count = 2 if name == "two" else 1
        with ThreadPoolExecutor(count) as pool:  # the nodes start side by side
            starting = [pool.submit(start, "hardened", project, env) for _ in range(count)]
        self.servers = [future.result() for future in starting if not future.exception()]
        try:
            for future in starting:
                future.result()  # a node that did not start fails the run
            if name != "single":
                self._subscribed(redis)
        except BaseException:
            self.stop()
            raise

    def _subscribed(self, redis: services.RedisServer) -> None:
        """Wait (at most SUBSCRIBE_SECONDS) until every node listens on the channel. Not
        a check: whether the nodes deliver is what the phases check, message by message."""
        deadline = time.monotonic() + SUBSCRIBE_SECONDS
        while time.monotonic() < deadline:
            answer = redis.cli("PUBSUB", "NUMSUB", CHANNEL).stdout.split()
            if answer[-1:] == [str(len(self.servers))]:
                return
            time.sleep(0.05)
        print(f"{self.name}: not every node subscribed after {SUBSCRIBE_SECONDS:.0f} s",
              file=sys.stderr)  # fmt: skip

    @property
    def first(self) -> Server:
        return self.servers[0]

    @property
    def last(self) -> Server:
        return self.servers[-1]

    def cpu(self) -> tuple[float, float]:
        return sum(server.cpu() for server in self.servers), self.redis.cpu()

    def settle(self, limit: float = 300.0) -> None:
        """Wait until every node is idle in the same half second (under 5 % of a core, as
        `Server.settle`)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = [server.cpu() for server in self.servers]
            time.sleep(0.5)
            after = [server.cpu() for server in self.servers]
            if all(end - begin <= 0.025 for begin, end in zip(before, after, strict=True)):
                return
        raise RuntimeError(f"{self.name}: the nodes stayed busy for {limit:.0f} s")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def phase_broadcast(
    project: Project, nodes: Nodes, count: int, broadcasts: int, wait: float
) -> list[float]:
    """`count` clients in `lobby`, half on the first node and half on the last (the same
    node but for `two`); the seconds until the last got each of `broadcasts` broadcasts."""
    nodes.settle()
    halves = [count // 2, count - count // 2]
    connect_seconds = 30 + count / 20
    listeners = [
        driven(project, server, "listen", n=n, slice=index, broadcasts=broadcasts, wait=wait,
               seconds=connect_seconds)
        for index, (server, n) in enumerate(zip((nodes.first, nodes.last), halves, strict=True))
    ]  # fmt: skip
    processes = [lines.process for lines in listeners]
    times = []
    try:
        for lines in listeners:
            lines.next(connect_seconds + 10)  # {"ready": n}
        sender = driven(project, nodes.first, "sender")
        processes.append(sender.process)
        sender.next(30)  # {"ready": 1}
        for index in range(broadcasts):
            nodes.settle()
            for lines in listeners:
                lines.say("next")
            sender.say(f"broadcast-{index}")
            sent = sender.next(wait + 10)["sent"]
            reports = [lines.next(wait + 10) for lines in listeners]
            received = [report["received"] for report in reports]
            if received != halves:
                raise RuntimeError(
                    f"{nodes.name}: broadcast {index + 1} reached {sum(received)} of {count} "
                    f"clients within {wait:g} s ({' + '.join(map(str, received))} of "
                    f"{' + '.join(map(str, halves))}, by load process)"
                )
            times.append(max(report["last"] for report in reports) - sent)
    finally:
        finish(processes)
    return times


def phase_messages(
    project: Project, nodes: Nodes, pairs: int, seconds: float, wait: float
) -> dict[str, float]:
    nodes.settle()
    ends = [(nodes.first, nodes.last), (nodes.last, nodes.first)]
    start_at = time.time() + 1.5 + 4 * pairs / 100
    runs = [
        load(project, sender, "pairs", n=pairs, seconds=seconds, slice=index, start_at=start_at,
             peer_port=receiver.port, wait=wait)
        for index, (sender, receiver) in enumerate(ends)
    ]  # fmt: skip
    try:
        time.sleep(max(0.0, start_at - time.time()))
        nodes_before, redis_before = nodes.cpu()
        time.sleep(seconds)
        nodes_after, redis_after = nodes.cpu()
        results = [result(process, timeout=seconds + 120) for process in runs]
    finally:
        for process in runs:  # after a failure, the other load process too
            if process.poll() is None:
                process.kill()
                process.wait(STOP_SECONDS)
    messages = sum(r["messages"] for r in results)
    nodes_cpu, redis_cpu = nodes_after - nodes_before, redis_after - redis_before
    return {
        "cpu_us_per_msg": 1e6 * (nodes_cpu + redis_cpu) / messages,
        "cpu_us_per_msg_nodes": 1e6 * nodes_cpu / messages,
        "cpu_us_per_msg_redis": 1e6 * redis_cpu / messages,
        "msgs_per_s": messages / seconds,
        "delivery_p50_ms": statistics.median(r["p50_ms"] for r in results),
        "delivery_p99_ms": max(r["p99_ms"] for r in results),
    }


def summary(samples: dict[str, dict[str, list[float]]], hold: int) -> dict[str, Any]:
    """Per figure and set-up: the median (and, for the broadcast, the maximum) of all
    samples; per message figure, the median of each run's own ratio to `single`."""
    medians: dict[str, dict[str, float]] = {}
    for name, by_setup in samples.items():
        medians[name] = {setup: statistics.median(values) for setup, values in by_setup.items()}
        if not name.startswith("broadcast"):
            for other in ("queue", "two"):
                pairs = zip(by_setup[other], by_setup["single"], strict=True)
                ratios = [value / single for value, single in pairs if single]
                if ratios:
                    medians[name][f"{other}/single"] = statistics.median(ratios)
    broadcast = samples[f"broadcast_s_{hold}"]
    maxima = {f"broadcast_s_{hold}": {setup: max(values) for setup, values in broadcast.items()}}
    return {"medians": medians, "maxima": maxima}


def table(figures: dict[str, Any]) -> str:
    lines = [f"{'figure (median)':<26} {'single':>9} {'queue':>9} {'two':>9} "
             f"{'queue/1':>8} {'two/1':>8}", "-" * 74]  # fmt: skip
    nan = float("nan")
    rows = list(figures["medians"].items())
    rows += [(f"{name} (max)", values) for name, values in figures["maxima"].items()]
    for name, values in rows:
        single, one, two = (values.get(setup, nan) for setup in SETUPS)
        queue_ratio = values.get("queue/single", one / single if single else nan)
        two_ratio = values.get("two/single", two / single if single else nan)
        lines.append(f"{name:<26} {single:>9.4g} {one:>9.4g} {two:>9.4g} "
                     f"{queue_ratio:>8.2f} {two_ratio:>8.2f}")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hold", type=int, default=1000, help="clients for the broadcasts")
    parser.add_argument("--broadcasts", type=int, default=5, help="broadcasts per run")
    parser.add_argument("--pairs", type=int, default=25, help="pairs per load process")
    parser.add_argument("--seconds", type=float, default=6.0, help="of the message phase")
    parser.add_argument("--wait", type=float, default=10.0, help="longest wait for a delivery")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.hold, args.broadcasts, args.pairs, args.seconds = 1, 40, 2, 4, 1.5
        args.wait = 5.0

    started = time.monotonic()
    samples: dict[str, dict[str, list[float]]] = {}

    def add(setup_name: str, name: str, values: list[float]) -> None:
        samples.setdefault(name, {}).setdefault(setup_name, []).extend(values)

    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as work:
        project = setup(Path(work))
        pki = services.Pki.create(Path(work) / "pki")
        with services.redis_server(project.root / "deploy", Path(work) / "redis", pki) as redis:
            for index in range(args.runs):
                order = SETUPS[index % 3 :] + SETUPS[: index % 3]
                for name in order:
                    began = time.monotonic()
                    nodes = Nodes(name, project, redis)
                    try:
                        times = phase_broadcast(project, nodes, args.hold, args.broadcasts,
                                                args.wait)  # fmt: skip
                        add(name, f"broadcast_s_{args.hold}", times)
                        figures = phase_messages(project, nodes, args.pairs, args.seconds,
                                                 args.wait)  # fmt: skip
                        for figure, value in figures.items():
                            add(name, figure, [value])
                    finally:
                        nodes.stop()
                        print(f"run {index + 1}, {name}: {time.monotonic() - began:.0f} s",
                              file=sys.stderr)  # fmt: skip
                print(
                    f"run {index + 1}/{args.runs} done ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
            info = redis.cli("INFO", "server").stdout.splitlines()
        meta = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "versions": {
                **versions(project),
                "redis-server": next(
                    (line.split(":", 1)[1].strip() for line in info if "redis_version:" in line),
                    "?",
                ),
            },
            "runs": args.runs,
            "options": {k: str(v) for k, v in vars(args).items() if k != "out"},
            "seconds": round(time.monotonic() - started),
        }
    figures = summary(samples, args.hold)
    print(table(figures))
    print(json.dumps(meta["versions"]))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "nodes-quick" if args.quick else "nodes"
    (args.out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, **figures, "samples": samples}, indent=2) + "\n"
    )
    print(f"figures: {args.out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Client load for the benchmark: Socket.IO spoken by hand over `websockets`, so that the
clients cost as little CPU as they can and the server is what is measured.

Run with the rendered project's Python (it has `websockets`); one process per slice of the
connections. Prints one JSON object on stdout. Modes:

- `connect N`: open N connections (CONNECT with the token, acknowledged), CONCURRENCY at
  a time; report the wall time, then close them.
- `echo N SECONDS`: N connections, each in its own room, each sending `message` with an
  ack id and waiting for the ack, in a loop, for SECONDS; report count and latencies.
- `hold N`: open N connections, join `lobby`, print `{"ready": N}`, answer pings, and record
  when each one receives the next broadcast; when all did (or after the timeout), report
  the receipt times and exit.
- `send`: one connection joins `lobby`, sends one `message`, and prints the send time.

For several nodes (bench/nodes.py), driven line by line over stdin and stdout:

- `pairs N SECONDS`: N pairs, each in its own room: a sender on `--port`, a receiver on
  `--peer-port` (another node, or the same); each sender sends `message` with an ack id,
  waits for the ack and for its receiver to get the message (at most `--wait` seconds,
  else it fails), in a loop, for SECONDS; report the messages delivered and the delivery
  latencies (send to receipt).
- `listen N --broadcasts K`: open N connections, join `lobby`, print `{"ready": N}`; then,
  for each line read on stdin (the bench is about to broadcast), wait at most `--wait`
  seconds until every connection got its next broadcast and print
  `{"got": k, "received": count, "last": epoch}`.
- `sender`: one connection joins `lobby` and prints `{"ready": 1}`; for each line read on
  stdin, sends `message` with that text, waits for the ack, and prints the send time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import statistics
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CONCURRENCY = 20


class Client:
    def __init__(self, args: argparse.Namespace, port: int | None = None) -> None:
        port = port or args.port
        self.url = f"wss://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        self.ssl = ssl.create_default_context(cafile=args.ca)
        self.origin = args.origin
        self.token = os.environ["BENCH_TOKEN"]  # not on the command line

    async def open(self) -> ClientConnection:
        ws = await connect(
            self.url,
            ssl=self.ssl,
            server_hostname="localhost",
            origin=self.origin,  # type: ignore[arg-type]
            compression=None,
            max_size=2**20,
            open_timeout=60,
            ping_interval=None,
        )
        opening = await ws.recv()
        if not (isinstance(opening, str) and opening.startswith("0{")):
            raise RuntimeError(f"no Engine.IO open packet: {opening!r}")
        await ws.send("40" + json.dumps({"token": self.token}))
        reply = await ws.recv()
        if not (isinstance(reply, str) and reply.startswith("40{")):
            raise RuntimeError(f"CONNECT refused: {reply!r}")
        return ws


async def call(ws: ClientConnection, ack_id: int, event: str, payload: dict[str, Any]) -> str:
    await ws.send(f"42{ack_id}" + json.dumps([event, payload]))
    prefix = f"43{ack_id}"
    while True:
        frame = await ws.recv()
        if isinstance(frame, str):
            if frame == "2":
                await ws.send("3")
            elif frame.startswith(prefix):
                return frame


async def gather_limited(count: int, make: Any) -> list[Any]:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> Any:
        async with semaphore:
            return await make(index)

    return await asyncio.gather(*(one(index) for index in range(count)))


def latency_summary(latencies: list[float], elapsed: float) -> dict[str, Any]:
    """Messages, seconds, and the median and 99th percentile of `latencies` in ms."""
    latencies = sorted(latencies)
    return {
        "messages": len(latencies),
        "seconds": elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def mode_connect(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    sockets = await gather_limited(args.n, lambda _: client.open())
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {"connections": args.n, "seconds": elapsed}


async def mode_echo(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    sockets = await gather_limited(args.n, lambda _: client.open())
    for index, ws in enumerate(sockets):
        await call(ws, 1, "join", {"room": f"echo-{args.slice}-{index}"})
    latencies: list[float] = []
    await asyncio.sleep(max(0.0, args.start_at - time.time()))  # all slices start together
    deadline = time.perf_counter() + args.seconds

    async def loop(index: int, ws: ClientConnection) -> None:
        ack_id = 2
        payload = {"room": f"echo-{args.slice}-{index}", "text": "x" * 64}
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            await call(ws, ack_id, "message", payload)
            latencies.append(time.perf_counter() - sent)
            ack_id += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(index, ws) for index, ws in enumerate(sockets)))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(ws.close() for ws in sockets))
    return latency_summary(latencies, elapsed)


async def mode_hold(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    # Each connection joins as soon as it is open and from then on answers the server's
    # pings (every 25 s), however long the others take to connect.
    semaphore = asyncio.Semaphore(CONCURRENCY)
    joined: list[ClientConnection] = []
    all_joined = asyncio.Event()
    received: list[float] = []

    async def hold() -> None:
        async with semaphore:
            ws = await client.open()
            await call(ws, 1, "join", {"room": "lobby"})
        joined.append(ws)
        if len(joined) == args.n:
            all_joined.set()
        while True:
            frame = await ws.recv()
            if frame == "2":
                await ws.send("3")
            elif isinstance(frame, str) and frame.startswith('42["message"'):
                received.append(time.time())
                return

    async def announce() -> None:
        await all_joined.wait()
        print(json.dumps({"ready": args.n}), flush=True)

    tasks = [asyncio.ensure_future(hold()) for _ in range(args.n)]
    announcer = asyncio.ensure_future(announce())
    done, _ = await asyncio.wait(tasks, timeout=args.seconds)
    for task in done:
        task.result()  # a failed connection fails the phase
    announcer.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in joined), return_exceptions=True)
    return {"connections": args.n, "received": len(received), "last": max(received, default=0)}


async def mode_send(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    ws = await client.open()
    await call(ws, 1, "join", {"room": "lobby"})
    sent = time.time()
    await call(ws, 2, "message", {"room": "lobby", "text": "broadcast"})
    await ws.close()
    return {"sent": sent}


def is_message(frame: str | bytes) -> bool:
    return isinstance(frame, str) and frame.startswith('42["message"')


async def stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def mode_pairs(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    peer = Client(args, port=args.peer_port or args.port)
    senders = await gather_limited(args.n, lambda _: client.open())
    receivers = await gather_limited(args.n, lambda _: peer.open())
    rooms = [f"pair-{args.slice}-{index}" for index in range(args.n)]
    for room, sender, receiver in zip(rooms, senders, receivers, strict=True):
        await call(sender, 1, "join", {"room": room})
        await call(receiver, 1, "join", {"room": room})
    inboxes: list[asyncio.Queue[float]] = [asyncio.Queue() for _ in range(args.n)]

    async def receive(ws: ClientConnection, inbox: asyncio.Queue[float]) -> None:
        while True:
            frame = await ws.recv()
            if frame == "2":
                await ws.send("3")
            elif is_message(frame):
                inbox.put_nowait(time.perf_counter())

    pairs = zip(receivers, inboxes, strict=True)
    readers = [asyncio.ensure_future(receive(ws, inbox)) for ws, inbox in pairs]
    latencies: list[float] = []
    await asyncio.sleep(max(0.0, args.start_at - time.time()))  # all slices start together
    deadline = time.perf_counter() + args.seconds

    async def loop(index: int) -> None:
        ack_id = 2
        payload = {"room": rooms[index], "text": "x" * 64}
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            await call(senders[index], ack_id, "message", payload)
            try:
                received = await asyncio.wait_for(inboxes[index].get(), args.wait)
            except TimeoutError:
                raise RuntimeError(
                    f"{rooms[index]}: message {ack_id} not delivered within {args.wait} s"
                ) from None
            latencies.append(received - sent)
            ack_id += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(index) for index in range(args.n)))
    elapsed = time.perf_counter() - start
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(ws.close() for ws in senders + receivers), return_exceptions=True)
    return latency_summary(latencies, elapsed)


async def mode_listen(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    opened: list[ClientConnection] = []
    members: list[ClientConnection] = []
    joined = asyncio.Event()
    changed = asyncio.Event()
    received: list[list[float]] = [[] for _ in range(args.broadcasts)]

    async def hold() -> None:
        # Each connection joins as soon as it is open and from then on answers pings.
        async with semaphore:
            ws = await client.open()
            opened.append(ws)
            await call(ws, 1, "join", {"room": "lobby"})
        members.append(ws)
        if len(members) == args.n:
            joined.set()
        count = 0
        while True:
            frame = await ws.recv()
            if frame == "2":
                await ws.send("3")
            elif is_message(frame) and count < args.broadcasts:
                received[count].append(time.time())  # the k-th broadcast this client got
                count += 1
                changed.set()

    tasks = [asyncio.ensure_future(hold()) for _ in range(args.n)]
    try:
        waiter = asyncio.ensure_future(joined.wait())
        done, _ = await asyncio.wait([waiter, *tasks], timeout=args.seconds,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        for task in done:
            task.result()  # a failed connection fails the run
        if not joined.is_set():
            raise RuntimeError(f"{len(members)} of {args.n} joined within {args.seconds} s")
        print(json.dumps({"ready": args.n}), flush=True)
        for index in range(args.broadcasts):
            if not await stdin_line():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.wait):
                    while len(received[index]) < args.n:
                        changed.clear()
                        await changed.wait()
            got = received[index]
            report = {"got": index, "received": len(got), "last": max(got, default=0.0)}
            print(json.dumps(report), flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    return {"connections": args.n}


async def mode_sender(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    ws = await client.open()
    await call(ws, 1, "join", {"room": "lobby"})
    print(json.dumps({"ready": 1}), flush=True)
    ack_id = 2
    while text := (await stdin_line()).strip():
        sent = time.time()
        await call(ws, ack_id, "message", {"room": "lobby", "text": text})
        print(json.dumps({"sent": sent}), flush=True)
        ack_id += 1
    await ws.close()
    return {"sent": ack_id - 2}


MODES = {
    "connect": mode_connect,
    "echo": mode_echo,
    "hold": mode_hold,
    "send": mode_send,
    "pairs": mode_pairs,
    "listen": mode_listen,
    "sender": mode_sender,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--slice", type=int, default=0)
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch to start echoing")
    parser.add_argument("--peer-port", type=int, default=0, help="the receivers' node (pairs)")
    parser.add_argument("--broadcasts", type=int, default=1, help="broadcasts to wait for (listen)")
    parser.add_argument("--wait", type=float, default=10.0, help="longest wait for a delivery")
    args = parser.parse_args()
    result = asyncio.run(MODES[args.mode](Client(args), args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())

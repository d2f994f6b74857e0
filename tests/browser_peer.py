"""The Python member of a room in test_browser.py, run by a rendered project's own Python
(its venv has python-socketio; the template's tools do not).

    python browser_peer.py '{"url": ..., "ca": ..., "token": ..., "room": ..., "origin": ...}'

Connects websocket-only, verifying the service against the CA, joins the room, then prints
one JSON object per line on standard output: `{"joined": ack}`, each message the room
sends `{"message": data}`, and the ack of each line `{"send": text}` read from standard
input `{"ack": ack}`. Ends at the end of its input. No tests in this module.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

import socketio

TIMEOUT = 10


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main(cfg: dict[str, Any]) -> None:
    client = socketio.AsyncClient(
        reconnection=False,
        handle_sigint=False,
        websocket_extra_options={"ssl": ssl.create_default_context(cafile=cfg["ca"])},
    )
    client.on("message", lambda data: say(message=data))
    await client.connect(
        cfg["url"],
        transports=["websocket"],
        auth={"token": cfg["token"]},
        headers={"Origin": cfg["origin"]},
        wait_timeout=TIMEOUT,
    )
    try:
        say(joined=await client.call("join", {"room": cfg["room"]}, timeout=TIMEOUT))
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            text = json.loads(line)["send"]
            ack = await client.call("message", {"room": cfg["room"], "text": text}, timeout=TIMEOUT)
            say(ack=ack)
    finally:
        await client.disconnect()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))

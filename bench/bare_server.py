"""The baseline: a bare python-socketio server on the same ASGI server, the same TLS
certificate and the same websocket implementation as the hardened one, websocket-only,
with the same events and acks, and nothing else (no auth, no validation, no limits).

Run with the rendered project's Python: bare_server.py PORT CERT KEY ORIGIN
"""

from __future__ import annotations

import sys
import time
from typing import Any

import socketio
import uvicorn

port, cert, key, origin = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sio = socketio.AsyncServer(
    async_mode="asgi", transports=["websocket"], allow_upgrades=False, cors_allowed_origins=[origin]
)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
    return True


@sio.event
async def join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    await sio.enter_room(sid, "room:" + data["room"])
    return {"ok": True, "room": data["room"]}


@sio.event
async def message(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    broadcast = {"room": data["room"], "sub": "bare", "text": data["text"], "ts": time.time()}
    await sio.emit("message", broadcast, room="room:" + data["room"], skip_sid=sid)
    return {"ok": True, "room": data["room"]}


uvicorn.run(
    socketio.ASGIApp(sio),
    host="127.0.0.1",
    port=port,
    ssl_certfile=cert,
    ssl_keyfile=key,
    ws="websockets-sansio",
    ws_per_message_deflate=False,
    log_level="warning",
    access_log=False,
)

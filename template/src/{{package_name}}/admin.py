"""The admin client behind `revoke` (C07): a websocket-only, CA-verified connection to the
`/admin` namespace with an admin token. The server side lives in `lifecycle.py`."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from .lifecycle import ADMIN_NAMESPACE


class AdminError(Exception):
    """The revocation did not happen; the message says why."""


async def revoke(url: str, token: str, sub: str, ca_file: Path | None) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca_file)
    refusals: list[object] = []
    async with aiohttp.ClientSession() as http:
        client = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            http_session=http,
            websocket_extra_options={"ssl": context},
        )
        client.on("connect_error", refusals.append, namespace=ADMIN_NAMESPACE)
        try:
            await client.connect(
                url,
                namespaces=[ADMIN_NAMESPACE],
                transports=["websocket"],
                auth={"token": token},
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError as exc:
            raise AdminError(f"cannot connect to {url}: {refusals or exc}") from None
        try:
            ack = await client.call("revoke", {"sub": sub}, namespace=ADMIN_NAMESPACE, timeout=10)
        finally:
            await client.disconnect()
    if not isinstance(ack, dict) or not ack.get("ok"):
        raise AdminError(f"the server refused: {ack}")
    return ack

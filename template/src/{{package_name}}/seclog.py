"""The security log: one grep-able line per security event, never a secret.

Lines carry a stable event name, a reason code, the subject, the client address and the
origin. They never carry a token, an `auth` payload or a message body.
"""

from __future__ import annotations

import logging
from typing import Any, Final

LOGGER: Final = logging.getLogger("security")


def client_address(environ: dict[str, Any]) -> str:
    """The peer address from the ASGI scope: python-engineio fakes REMOTE_ADDR=127.0.0.1."""
    client = environ.get("asgi.scope", {}).get("client")
    return str(client[0]) if client else "-"


def event(name: str, *, level: int = logging.INFO, **fields: object) -> None:
    parts = " ".join(f"{key}={_clean(value)}" for key, value in fields.items())
    LOGGER.log(level, "%s %s", name, parts)


def _clean(value: object) -> str:
    # Quote-free single tokens: a crafted Origin header must not forge log fields.
    text = "-" if value is None else str(value)
    return "".join(ch if ch.isprintable() and ch not in ' ="' else "_" for ch in text)[:200]

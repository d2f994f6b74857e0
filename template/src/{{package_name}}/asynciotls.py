"""Patches of asyncio's TLS layer (CPython's `asyncio/sslproto.py`), installed by `install()`.

uvicorn serves TLS through asyncio's `SSLProtocol` and passes it nothing but the SSLContext,
so three things a hardened server needs can only be had by changing that class:

1. A handshake deadline (C11). `SSLProtocol.__init__()` takes `ssl_handshake_timeout`, which
   `loop.create_server()` leaves at asyncio's 60 s and uvicorn offers no setting for: a
   client that connects and never sends its ClientHello holds a socket for a minute. The
   patched `__init__()` gives server-side connections of a `tls.ServerContext` the deadline
   that context carries.
2. One security-log line per failed handshake (C13). `SSLProtocol._fatal_error()` logs a
   refused or timed-out handshake only when the event loop is in debug mode. The patched
   method logs it (OpenSSL's reason code, the client address) and then does what asyncio does.
3. One receive buffer per event-loop thread (C10). `SSLProtocol.__init__()` gives every
   connection a zero-filled buffer of `SSLProtocol.max_size`, 256 KiB, kept until it closes:
   most of an idle TLS connection's memory. It is scratch space: the event loop receives
   encrypted bytes into it and `SSLProtocol.buffer_updated()` copies them into the
   connection's own TLS object (its MemoryBIO) at once, in the same callback, before any
   other connection is read (selector and proactor loops alike: `selector_events.py`,
   `proactor_events.py`). The patched `get_buffer()` hands every connection of a thread the
   same buffer; nothing about the protocol, the ciphers or the checks changes.

These read and replace private names of asyncio, the same in CPython 3.11.7, 3.12.1, 3.13.0
and 3.14 (their sslproto.py compared). Before touching anything, `install()` checks that the
running Python is one of `VERIFIED_PYTHONS` and that every name the patches use is there;
otherwise it leaves asyncio as it is (60 s handshakes, failed handshakes unlogged, a buffer
per connection) and says so in one security-log line, and `check` prints the same as a
warning. The server still serves TLS either way. On a new Python: compare its sslproto.py
with 3.13's (`__init__`, `get_buffer`, `buffer_updated`, `_fatal_error`, the states), run
the tests named in `VERIFIED_PYTHONS`' comment, then add it there.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import types
from asyncio import sslproto
from collections.abc import Mapping
from typing import Any, Final

from . import seclog
from .tls import ServerContext

# The Pythons whose asyncio/sslproto.py these patches were read against and tested on
# (tests/test_tls.py -k "receive_buffer or asyncio", tests/test_limits.py -k handshake,
# tests/test_security_log.py -k tls_handshakes). 3.14's sslproto.py (read from the 3.14
# standard library Pyodide 314.0.7 ships) differs from 3.13.0's only in
# _SSLProtocolTransport.is_closing(), which the patches do not touch, and its
# selector_events.py accepts as 3.13's does; its tests run in the project's CI.
VERIFIED_PYTHONS: Final = ((3, 11), (3, 12), (3, 13), (3, 14))
RECEIVE_BUFFER_BYTES: Final = 256 * 1024
# The size of each plaintext read, and of the buffer a connection holds until its first
# read. A TLS record carries at most 16 KiB of plaintext (RFC 8446, 5.1).
PLAINTEXT_READ_BYTES: Final = 32 * 1024
# SSLProtocol's methods the patches replace or rely on, the attributes its __init__() sets
# that they read or write, and the handshake states they test.
_METHODS: Final = ("__init__", "get_buffer", "buffer_updated", "_fatal_error")
_SET_BY_INIT: Final = (
    "_ssl_buffer",
    "_ssl_buffer_view",
    "_server_side",
    "_sslcontext",
    "_ssl_handshake_timeout",
    "_state",
    "_transport",
)
_STATES: Final = ("DO_HANDSHAKE", "UNWRAPPED")

# asyncio's own attributes of SSLProtocol, read (not changed) when this module is imported.
ASYNCIO_OWN: Final[Mapping[str, Any]] = types.MappingProxyType(
    {
        name: vars(sslproto.SSLProtocol)[name]
        for name in ("__init__", "get_buffer", "_fatal_error", "max_size")
        if name in vars(sslproto.SSLProtocol)
    }
)

_scratch = threading.local()


def _shared_receive_buffer(self: sslproto.SSLProtocol, n: int) -> memoryview:
    """SSLProtocol.get_buffer(): whatever size is asked for, the thread's buffer."""
    view: memoryview | None = getattr(_scratch, "view", None)
    if view is None:
        view = _scratch.view = memoryview(bytearray(RECEIVE_BUFFER_BYTES))
    # buffer_updated() copies from _ssl_buffer_view; the connection's own buffer is dropped.
    vars(self).update(_ssl_buffer=view.obj, _ssl_buffer_view=view)
    return view


def _bounded_init(self: sslproto.SSLProtocol, *args: Any, **kwargs: Any) -> None:
    """SSLProtocol.__init__(), then the handshake deadline of a server's ServerContext."""
    ASYNCIO_OWN["__init__"](self, *args, **kwargs)
    if self._server_side and isinstance(self._sslcontext, ServerContext):
        # typeshed has int | None; asyncio's call_later() takes any number of seconds.
        self._ssl_handshake_timeout = self._sslcontext.handshake_seconds  # type: ignore[assignment]


def _logged_fatal_error(
    self: sslproto.SSLProtocol, exc: BaseException, message: str = "Fatal error on transport"
) -> None:
    """SSLProtocol._fatal_error(), with one security-log line when a server's handshake
    failed or ran out of time."""
    timed_out = isinstance(exc, ConnectionAbortedError)
    if (
        self._server_side
        and isinstance(self._sslcontext, ServerContext)
        and getattr(self, "_state", None)
        in (sslproto.SSLProtocolState.DO_HANDSHAKE, sslproto.SSLProtocolState.UNWRAPPED)
        # A refused handshake or one out of time; not a peer that closed (a TCP health
        # check, a port probe), which would fill the log with nothing to act on.
        and (timed_out or isinstance(exc, ssl.SSLError))
    ):
        peer = self._transport.get_extra_info("peername") if self._transport else None
        seclog.event(
            "tls_handshake_failed",
            level=logging.WARNING,
            reason="handshake_timeout" if timed_out else "handshake_error",
            client=peer[0] if isinstance(peer, tuple) else "-",
            # OpenSSL's reason code (NO_SHARED_CIPHER, UNSUPPORTED_PROTOCOL...): not client text.
            error=None if timed_out else getattr(exc, "reason", None) or type(exc).__name__,
        )
    ASYNCIO_OWN["_fatal_error"](self, exc, message)


def installed() -> bool:
    return vars(sslproto.SSLProtocol).get("__init__") is _bounded_init


def _missing() -> list[str]:
    """The names the patches use that this asyncio lacks."""
    protocol = getattr(sslproto, "SSLProtocol", None)
    states = getattr(sslproto, "SSLProtocolState", None)
    if protocol is None or states is None:
        return ["sslproto.SSLProtocol" if protocol is None else "sslproto.SSLProtocolState"]
    missing = [name for name in _METHODS if not callable(vars(protocol).get(name))]
    if not isinstance(vars(protocol).get("max_size"), int):
        missing.append("max_size")
    own_init = ASYNCIO_OWN.get("__init__")
    if "__init__" not in missing and vars(protocol)["__init__"] is not own_init:
        missing.append("__init__:replaced")
    elif own_init is not None:
        # Attribute names the constructor's code stores or loads: the instance's layout.
        names = own_init.__code__.co_names
        missing += [name for name in _SET_BY_INIT if name not in names]
    missing += [f"SSLProtocolState.{name}" for name in _STATES if not hasattr(states, name)]
    return [f"SSLProtocol.{name}" if "." not in name else name for name in missing]


def _obstacle() -> tuple[str, list[str]] | None:
    """Why the patches cannot go in here: ("python_unverified", [this Python]) or
    ("asyncio_changed", [the names it lacks]); None when they can."""
    if sys.version_info[:2] not in VERIFIED_PYTHONS:
        return "python_unverified", [f"{sys.version_info.major}.{sys.version_info.minor}"]
    missing = _missing()
    return ("asyncio_changed", missing) if missing else None


def unavailable() -> str | None:
    """Why `install()` would leave asyncio's TLS layer unpatched here, or None. Changes
    nothing; `check` prints it."""
    obstacle = None if installed() else _obstacle()
    if obstacle is None:
        return None
    reason, details = obstacle
    consequence = (
        "TLS handshakes keep asyncio's 60 s deadline, failed handshakes are not logged and "
        "every TLS connection holds its own 256 KiB receive buffer"
    )
    if reason == "python_unverified":
        verified = ", ".join(f"{major}.{minor}" for major, minor in VERIFIED_PYTHONS)
        return (
            f"asyncio's TLS layer is not patched on Python {details[0]} "
            f"(verified on {verified}): {consequence}"
        )
    return f"asyncio's TLS layer is not patched: it lacks {', '.join(details)}: {consequence}"


def install() -> bool:
    """Install the three patches, process-wide (idempotent; call before serving). On a
    Python they were not verified on, or an asyncio without the names they use, change
    nothing, log one security-log line, and return False."""
    if installed():
        return True
    obstacle = _obstacle()
    if obstacle is not None:
        reason, details = obstacle
        field = "python" if reason == "python_unverified" else "missing"
        seclog.event(
            "asyncio_tls_unpatched",
            level=logging.WARNING,
            reason=reason,
            **{field: ",".join(details)},
        )
        return False
    protocol = sslproto.SSLProtocol
    protocol.max_size = PLAINTEXT_READ_BYTES
    protocol.get_buffer = _shared_receive_buffer  # type: ignore[method-assign]
    protocol._fatal_error = _logged_fatal_error  # type: ignore[method-assign]
    protocol.__init__ = _bounded_init  # type: ignore[method-assign]
    return True

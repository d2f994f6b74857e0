"""Key-exchange groups of the server's TLS (C01): X25519, P-256 and P-384, in that order.

OpenSSL 3 accepts more groups than that by default: X448 and secp521r1, under TLS 1.3 also
the finite-field groups ffdhe2048 to ffdhe8192 (and from OpenSSL 3.5 the hybrid
X25519MLKEM768). Mozilla's intermediate and modern profiles list only X25519, prime256v1
(P-256) and secp384r1 (P-384), and a scanner holding a server to them
(`sslyze --mozilla_config=intermediate`) reports every other group it accepts. X25519 comes
first, as in Mozilla's list: every current browser sends an X25519 key share (beside any
post-quantum hybrid), so TLS 1.3 needs no HelloRetryRequest round trip, and TLS 1.2 picks
X25519 whenever the client has it.

Python's `ssl` can set the groups only from 3.15 on (`SSLContext.set_groups()`, CPython
issue 136306); before that, `set_ecdh_curve()` sets ONE group. On those Pythons this
module calls OpenSSL's `SSL_CTX_set1_groups_list()` itself, through ctypes, on the
`SSL_CTX` inside the `SSLContext`: a patch of CPython's internals. It checks that it holds
the right pointer into the right library before it changes anything, checks OpenSSL's
answer, and then proves the result with handshakes in memory.

Where OpenSSL is out of reach (python-build-standalone, the builds uv installs, link it
statically into the interpreter with its symbols hidden), the server falls back to P-256
alone through `set_ecdh_curve()`: still inside the profile and offered by every TLS client,
at the price of a HelloRetryRequest round trip for TLS 1.3 clients whose first key share is
X25519. Whatever else goes wrong raises `GroupsError`: a server that cannot prove its groups
does not start.
"""

from __future__ import annotations

import _ssl
import ctypes
import ssl
import sys
from typing import Final

GROUPS: Final = ("X25519", "P-256", "P-384")
FALLBACK: Final = ("P-256",)
# Names for `set_ecdh_curve()`, which the in-memory probe clients use.
PROBES_ACCEPTED: Final = ("X25519", "prime256v1", "secp384r1")
PROBES_REFUSED: Final = ("secp521r1", "X448", "ffdhe2048")

# SSL_CTX_set1_groups_list(ctx, list) is a macro: SSL_CTX_ctrl(ctx, 92, 0, list), in
# OpenSSL 1.1.1 to 3.x (include/openssl/ssl.h).
_SSL_CTRL_SET_GROUPS_LIST: Final = 92
# Modules/_ssl.c, the same since CPython 3.2: `typedef struct { PyObject_HEAD SSL_CTX *ctx;
# ...} PySSLContext;`. object.__basicsize__ is the size of PyObject_HEAD in this build.
_CTX_OFFSET: Final = object.__basicsize__
_PROBE_ROUNDS: Final = 8


class GroupsError(RuntimeError):
    """The key-exchange groups could not be restricted; the server must not start."""


class _OutOfReach(GroupsError):
    """This Python's OpenSSL cannot be called safely from here."""


def restrict_groups(context: ssl.SSLContext) -> tuple[str, ...]:
    """Limit a server context's key-exchange groups to `GROUPS` (or `FALLBACK`), prove it
    with handshakes in memory (call after `load_cert_chain()`), and return the groups in
    force. Raises `GroupsError`."""
    groups = ":".join(GROUPS)
    set_groups = getattr(context, "set_groups", None)
    in_force: tuple[str, ...] = GROUPS
    if set_groups is not None:
        try:
            set_groups(groups)
        except ssl.SSLError as exc:
            raise GroupsError(f"this OpenSSL refuses the group list {groups}: {exc}") from exc
    else:
        try:
            _set_groups_list(context, groups)
        except _OutOfReach:
            context.set_ecdh_curve("prime256v1")
            in_force = FALLBACK
    _prove(context, in_force)
    return in_force


def _set_groups_list(context: ssl.SSLContext, groups: str) -> None:
    """SSL_CTX_set1_groups_list() on the context's SSL_CTX, through the OpenSSL that the
    ssl module itself is linked to."""
    if sys.implementation.name != "cpython" or not isinstance(context, _ssl._SSLContext):
        raise _OutOfReach("the group patch needs CPython's own ssl.SSLContext")
    library = getattr(_ssl, "__file__", None)
    if library is None:
        raise _OutOfReach(
            "this Python's ssl module is built in, its OpenSSL linked statically and its "
            "symbols hidden (as in python-build-standalone, the builds uv installs): use a "
            "Python linked to a shared libssl (a distribution's, pyenv, the python Docker "
            "images) or Python 3.15+"
        )
    # dlopen() of the already loaded _ssl module; dlsym() on its handle also searches the
    # libraries it was linked with, so these are the libssl and libcrypto the ssl module
    # uses, whichever others are installed.
    lib = ctypes.CDLL(library)
    try:
        version = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int)(("OpenSSL_version", lib))
        get_options = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(
            ("SSL_CTX_get_options", lib)
        )
        get_level = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(
            ("SSL_CTX_get_security_level", lib)
        )
        ctrl = ctypes.CFUNCTYPE(
            ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p
        )(("SSL_CTX_ctrl", lib))
        clear_errors = ctypes.CFUNCTYPE(None)(("ERR_clear_error", lib))
    except AttributeError as exc:
        raise _OutOfReach(
            f"{library} exports no OpenSSL functions (OpenSSL linked statically with "
            "hidden symbols): use a Python linked to a shared libssl, or Python 3.15+"
        ) from exc

    # Before touching anything: the same OpenSSL, and a pointer that behaves as this
    # context's SSL_CTX (its options and security level read the same both ways).
    found = version(0)  # OPENSSL_VERSION
    if found is None or found.decode() != ssl.OPENSSL_VERSION:
        raise _OutOfReach(f"{library} resolves {found!r}, not {ssl.OPENSSL_VERSION}")
    ctx = ctypes.c_void_p.from_address(id(context) + _CTX_OFFSET).value
    if not ctx:
        raise _OutOfReach("no SSL_CTX where CPython keeps it: unknown SSLContext layout")
    if get_options(ctx) != int(context.options) or get_level(ctx) != context.security_level:
        raise _OutOfReach("the pointer read is not this context's SSL_CTX: unknown layout")

    if ctrl(ctx, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) != 1:
        clear_errors()  # leave no stale error for the ssl module's next call to report
        raise GroupsError(f"this OpenSSL refuses the group list {groups}")


def _prove(server: ssl.SSLContext, in_force: tuple[str, ...]) -> None:
    """Handshakes in memory with clients that each offer one group: the profile's groups
    are accepted, OpenSSL's other defaults refused. A group the probe client cannot offer
    is not probed (the `set_ecdh_curve()` of older releases, 3.11.2 for one, knows only
    the NIST curves)."""
    accepted_probes = PROBES_ACCEPTED if in_force == GROUPS else ("prime256v1",)
    for group in accepted_probes:
        accepted = _handshake(server, group)
        if accepted is False:
            raise GroupsError(f"a client offering only {group} is refused")
        if accepted is None and group == "prime256v1":
            # Every probe client can offer P-256: without that handshake nothing is proven.
            raise GroupsError("the probe client cannot offer P-256")
    for group in PROBES_REFUSED:
        if _handshake(server, group):
            raise GroupsError(f"a client offering only {group} is still accepted")


def _handshake(server: ssl.SSLContext, group: str) -> bool | None:
    """Whether a client offering only `group` (TLS 1.3 where the server allows it)
    completes a handshake with `server`; None if the client cannot offer it."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE  # only the key exchange is under test
    try:
        client_context.set_ecdh_curve(group)
    except (ValueError, ssl.SSLError):
        return None
    try:
        return handshake_in_memory(client_context, server) is not None
    except TimeoutError:
        raise GroupsError(f"the probe handshake offering {group} did not finish") from None


def handshake_in_memory(client: ssl.SSLContext, server: ssl.SSLContext) -> ssl.SSLObject | None:
    """A TLS handshake between `client` and `server` through memory buffers, no socket:
    the client's side once both finished, None when either refused it, `TimeoutError` when
    it does not finish within a few rounds. (Also how reload.py reads the certificate a
    new connection gets.)"""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(to_client, to_server)
    pending = [client_side, server.wrap_bio(to_server, to_client, server_side=True)]
    for _ in range(_PROBE_ROUNDS):
        for side in list(pending):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLError:
                return None
            pending.remove(side)
        if not pending:
            return client_side
    raise TimeoutError("the handshake did not finish")

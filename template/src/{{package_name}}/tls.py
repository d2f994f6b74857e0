"""TLS for the server (C01): the Mozilla profile this project was rendered with.

"intermediate" accepts TLS 1.2 and 1.3. Under TLS 1.2 only ECDHE key exchange with AEAD
ciphers is offered (no CBC, no RSA key transport, no finite-field DHE); every TLS 1.3 suite
is an AEAD with ephemeral keys. "modern" accepts TLS 1.3 only. The key exchange uses X25519,
P-256 or P-384 and no other group (see tlsgroups).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

from .answers import TLS_PROFILE
from .tlsgroups import restrict_groups

PROFILE: Final = TLS_PROFILE
# Offered under TLS 1.2 by the intermediate profile (modern has no TLS 1.2).
TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


class ServerContext(ssl.SSLContext):
    """The server's SSLContext, carrying the deadline for its TLS handshakes (C11), which
    asynciotls applies."""

    handshake_seconds: float = 60.0  # asyncio's own
    key_exchange_groups: tuple[str, ...] = ()  # in force, as tlsgroups proved them


def server_context(
    cert_file: Path, key_file: Path, *, handshake_seconds: float = 60.0
) -> ServerContext:
    """The server's SSLContext; raises `OSError`/`ssl.SSLError` on unusable files, and
    `tlsgroups.GroupsError` where the key-exchange groups cannot be restricted."""
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.handshake_seconds = handshake_seconds
    if PROFILE == "modern":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
    # No compression (CRIME), no renegotiation, no session tickets (their keys would
    # undo forward secrecy until the process restarts).
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    # X25519, P-256 and P-384 only, as both Mozilla profiles list (OpenSSL adds X448,
    # secp521r1 and ffdhe groups): see tlsgroups.
    context.key_exchange_groups = restrict_groups(context)
    return context

"""Certificates and keys that change without a restart (C01, C05): what SIGHUP reloads.

`serve` reloads on SIGHUP (`systemctl reload`, a certbot deploy hook): the TLS certificate
chain and key (C01), and the JWT verification material (C05): the public key file, a fresh
JWKS client (its key cache dropped), or the HS256 secret. They are read with the settings
of the same environment and `.env` the process started with. Live connections are not
touched: they keep the certificate of their handshake and the session of their token.

All or nothing: the new settings must pass `posture.findings()` (an unreadable file, a key
of another certificate, an expired certificate, a key of another algorithm are findings),
and the new TLS context and key source are built in full, before anything is switched. A
failed reload keeps the old material entirely and says why in one security-log line (codes
and setting names, never a value); a successful one names what changed in one line, and
warns about changed settings that only a restart applies.

Why the certificate is switched per handshake rather than loaded into the listener's
context: `SSLContext.load_cert_chain()` on a context in use is not atomic. OpenSSL installs
the certificate first and drops the key that no longer matches it, so a key of another
certificate leaves the listener with a certificate and no key, and every later handshake
fails ("no shared cipher"; measured with OpenSSL 3.0). Validating the files first narrows
that to a race with whoever writes them, but does not close it. Here the listener's context
is never changed: its `sni_callback`, which OpenSSL calls for every ClientHello (with or
without a server name), points each new handshake at the newest context that passed every
check (`SSLObject.context = ...`, Python's documented way to pick a certificate per
connection). A switch is one reference, taken or not. OpenSSL then takes some parameters
from the listener's context (those it copied into the connection when it was created: the
key-exchange groups, seen with a switch to an unrestricted context) and others from the
chosen one (certificate chain, key, ALPN, and the TLS 1.2 cipher list, seen the same way).
Both are built by `tls.server_context()`, so the profile is the same whichever applies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import keys, posture, seclog, tls
from .settings import ENV_PREFIX, Settings, SettingsError
from .tlsgroups import GroupsError, handshake_in_memory

# What a reload applies; every other setting needs a restart. (The development private key
# is read by `token`, never by `serve`.)
RELOADED: Final = frozenset(
    {
        "tls_cert_file",
        "tls_key_file",
        "jwt_secret",
        "jwt_public_key_file",
        "jwt_jwks_url",
        "jwt_dev_private_key_file",
    }
)
# RFC 7638: the members a JWK thumbprint is computed from, by key type.
_THUMBPRINT_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


class SwitchableKeys:
    """The key source the token verifier asks (C05), switched by a reload: a token is
    checked against the material in force when it arrives. The verifier still pins the one
    algorithm before it asks for a key."""

    def __init__(self, source: keys.KeySource) -> None:
        self.source = source

    async def key_for(self, header: Mapping[str, Any]) -> keys.VerificationKey:
        return await self.source.key_for(header)


@dataclass(frozen=True, slots=True)
class _Material:
    settings: Settings
    context: tls.ServerContext
    keys: keys.KeySource


class Reloader:
    """The listener's TLS context and the verifier's key source, and what reloads them.

    Build it from the settings `serve` starts with, and `read_settings` that reads them
    again (the same environment and `.env`); hand `tls_context` to `server.uvicorn_config()`
    and `keys` to `server.create_app()`. `reload()` may be called from any thread;
    `run()` calls it on SIGHUP.
    """

    def __init__(self, settings: Settings, read_settings: Callable[[], Settings]) -> None:
        self._started = settings
        self._read_settings = read_settings
        self._current = _prepare(settings)
        self._lock = threading.Lock()
        self.tls_context = self._current.context
        self.tls_context.sni_callback = self._select
        self._served = _served_certificate(self.tls_context)
        self.keys = SwitchableKeys(self._current.keys)

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        # OpenSSL's servername callback, in every handshake of the listener: the newest
        # certificate that passed every check.
        chosen = self._current.context
        if connection.context is not chosen:
            connection.context = chosen

    def reload(self) -> bool:
        """Read the settings, certificate and keys again and switch to them, all or
        nothing; one security-log line says which. True when switched."""
        with self._lock:
            try:
                return self._reload()
            except Exception as exc:  # noqa: BLE001 - a reload must never end the server
                # The class only: a message could quote a file's contents.
                _failed("internal", error=type(exc).__name__)
                return False

    def _reload(self) -> bool:
        try:
            settings = self._read_settings()
        except SettingsError as exc:
            # Its text names the settings and never echoes a value.
            _failed("settings_invalid", detail=" ".join(str(exc).split()))
            return False
        found = posture.findings(settings)
        if found:
            _failed(
                ",".join(finding.code for finding in found),
                settings=",".join(sorted({_env_name(finding.setting) for finding in found})),
                detail=found[0].message,
            )
            return False
        try:
            material = _prepare(settings)
        except (OSError, ssl.SSLError, GroupsError, ValueError) as exc:
            # The files changed again since posture read them, or cannot be read twice.
            _failed("material_invalid", error=type(exc).__name__)
            return False
        old, self._current = self._current, material
        try:
            served = _served_certificate(self.tls_context)
        except (ssl.SSLError, ValueError) as exc:
            self._current = old
            _failed("tls_switch_failed", error=type(exc).__name__)
            return False
        self.keys.source = material.keys
        old_served, self._served = self._served, served
        details: dict[str, object] = {
            "tls": "changed" if _fingerprint(served) != _fingerprint(old_served) else "unchanged",
            "cert_serial": format(served.serial_number, "x"),
            "cert_not_after": f"{served.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
            "cert_sha256": _fingerprint(served),
            "jwt": _jwt_change(old, material),
        }
        key_id = _jwt_key_id(material.keys)
        if key_id is not None:
            details["jwt_key"] = key_id
        seclog.event("reloaded", level=logging.INFO, **details)
        restart = sorted(
            _env_name(name)
            for name in type(settings).model_fields
            if name not in RELOADED and getattr(settings, name) != getattr(self._started, name)
        )
        if restart:
            seclog.event("reload_restart_needed", level=logging.WARNING, settings=",".join(restart))
        return True

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP, in a worker thread (reading files and proving the TLS groups
        takes milliseconds the event loop should not wait). Main thread only."""
        pending: set[asyncio.Future[bool]] = set()

        def on_sighup() -> None:
            future = loop.run_in_executor(None, self.reload)
            pending.add(future)
            future.add_done_callback(pending.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)


def run(server: uvicorn.Server, sockets: list[socket.socket], reloader: Reloader) -> None:
    """`server.run(sockets=...)`, with `reloader` installed on SIGHUP (main thread only:
    the tests' servers in threads call `reload()` themselves)."""

    async def serve() -> None:
        reloader.install(asyncio.get_running_loop())
        await server.serve(sockets=sockets)

    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(serve())


def _prepare(settings: Settings) -> _Material:
    """The TLS context and key source of `settings`, built in full; raises as at startup."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS certificate and key are required")
    context = tls.server_context(
        settings.tls_cert_file,
        settings.tls_key_file,
        handshake_seconds=settings.request_timeout_seconds,
    )
    return _Material(settings, context, keys.key_source(settings))


def _served_certificate(listener: ssl.SSLContext) -> x509.Certificate:
    """The certificate a new handshake with `listener` gets now: a handshake in memory,
    which proves the switch as a client sees it."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE  # only the certificate offered is read
    try:
        client_side = handshake_in_memory(client, listener)
    except TimeoutError:
        raise ValueError("the probe handshake did not finish") from None
    der = client_side.getpeercert(binary_form=True) if client_side is not None else None
    if der is None:
        raise ValueError("the probe handshake was refused or offered no certificate")
    return x509.load_der_x509_certificate(der)


def _failed(reason: str, **fields: object) -> None:
    seclog.event("reload_failed", level=logging.WARNING, reason=reason, **fields)


def _env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def _fingerprint(certificate: x509.Certificate) -> str:
    # As `openssl x509 -fingerprint -sha256` shows it, without the colons.
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _jwt_change(old: _Material, new: _Material) -> str:
    if isinstance(new.keys, keys.JwksKeySource):
        return "jwks_cache_dropped"  # a fresh client fetches the issuer's keys again
    if keys.IS_HMAC:
        return "changed" if new.settings.jwt_secret != old.settings.jwt_secret else "unchanged"
    return "changed" if _jwt_key_id(new.keys) != _jwt_key_id(old.keys) else "unchanged"


def _jwt_key_id(source: keys.KeySource) -> str | None:
    """The RFC 7638 thumbprint of a public key file's key (what many issuers use as `kid`);
    none for a secret (nothing about it is logged) or a JWKS URL."""
    if not isinstance(source, keys.PublicKeySource):
        return None
    jwk = jwt.get_algorithm_by_name(keys.ALGORITHM).to_jwk(source.key, as_dict=True)
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[str(jwk["kty"])]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()

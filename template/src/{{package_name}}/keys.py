"""JWT keys (C05) for the project's one algorithm (`answers.JWT_ALGORITHM`).

HS256: one shared secret of at least 32 random bytes. HMAC lets whoever holds the secret
mint tokens; keep it out of the repository (it lives in `.env` or the deployment's secret
store) and rotate it with a reload (SIGHUP, see reload) or a restart.

RS256, ES256, EdDSA: the server holds public keys only. The verification key is a PEM
public key file, or the keys of a JWKS URL. PyJWKClient is synchronous, so it is called off
the event loop; a token's `kid` only selects among the keys of that URL, and a key is used
only if it is a key of the project's algorithm. A private key exists in development only,
for the `token` command.

Each algorithm reads only its own settings; one of the others' set is a finding.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol, TypeGuard

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .answers import JWT_ALGORITHM
from .devcerts import write_private, write_public
from .settings import Finding, Settings

ALGORITHM: Final = JWT_ALGORITHM
IS_HMAC: Final = ALGORITHM == "HS256"
MIN_SECRET_BYTES: Final = 32
MIN_RSA_BITS: Final = 2048
JWKS_TIMEOUT_SECONDS: Final = 5.0
HMAC_SETTINGS: Final = ("jwt_secret",)
PUBLIC_KEY_SETTINGS: Final = ("jwt_public_key_file", "jwt_jwks_url", "jwt_dev_private_key_file")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
# What a token is verified with: the HS256 secret, or a public key of the algorithm.
VerificationKey = bytes | PublicKey


class UnknownKeyError(Exception):
    """No configured key fits the token."""


class KeySource(Protocol):
    async def key_for(self, header: Mapping[str, Any]) -> VerificationKey: ...


# The public and private key classes of each asymmetric algorithm.
KEY_CLASSES: Final[Mapping[str, tuple[type, type]]] = {
    "RS256": (rsa.RSAPublicKey, rsa.RSAPrivateKey),
    "ES256": (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey),
    "EdDSA": (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey),
}


def is_public_key(key: object) -> TypeGuard[PublicKey]:
    """Whether `key` is a public key of the project's algorithm (never, under HS256)."""
    return ALGORITHM in KEY_CLASSES and isinstance(key, KEY_CLASSES[ALGORITHM][0])


def is_private_key(key: object) -> TypeGuard[PrivateKey]:
    """Whether `key` is a private key of the project's algorithm (never, under HS256)."""
    return ALGORITHM in KEY_CLASSES and isinstance(key, KEY_CLASSES[ALGORITHM][1])


class SecretKeySource:
    """HS256: the one secret, whatever the token's header says."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    async def key_for(self, header: Mapping[str, Any]) -> bytes:
        return self._secret


class PublicKeySource:
    """One public key loaded from a PEM file (at startup, and again on a reload)."""

    def __init__(self, key: PublicKey) -> None:
        self._key = key

    @property
    def key(self) -> PublicKey:
        return self._key

    async def key_for(self, header: Mapping[str, Any]) -> PublicKey:
        return self._key


class JwksKeySource:
    """Keys of a JWKS URL, cached by PyJWKClient and refetched at most every 30 s."""

    def __init__(self, url: str) -> None:
        self._client = jwt.PyJWKClient(url, cache_keys=True, timeout=JWKS_TIMEOUT_SECONDS)

    async def key_for(self, header: Mapping[str, Any]) -> PublicKey:
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            raise UnknownKeyError("token has no usable kid")
        try:
            jwk = await asyncio.to_thread(self._client.get_signing_key, kid)
        except jwt.PyJWKClientError as exc:
            raise UnknownKeyError("no such key in the JWKS") from exc
        if jwk.algorithm_name != ALGORITHM or not is_public_key(jwk.key):
            raise UnknownKeyError(f"JWKS key is not a {ALGORITHM} public key")
        return jwk.key


def load_public_key(path: Path) -> PublicKey:
    """The public key in `path`; `ValueError` if it is not a usable key of the algorithm."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not is_public_key(key):
        raise ValueError(f"{path} does not hold a {ALGORITHM} public key")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"{path} holds an RSA key of fewer than {MIN_RSA_BITS} bits")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path} does not hold a P-256 key, which ES256 requires")
    return key


def key_source(settings: Settings) -> KeySource:
    if IS_HMAC:
        if settings.jwt_secret is None:
            raise ValueError("no JWT secret configured")
        return SecretKeySource(settings.jwt_secret.get_secret_value().encode())
    if settings.jwt_public_key_file is not None:
        return PublicKeySource(load_public_key(settings.jwt_public_key_file))
    if settings.jwt_jwks_url is not None:
        return JwksKeySource(settings.jwt_jwks_url)
    raise ValueError("no JWT verification key configured")


def key_findings(settings: Settings) -> list[Finding]:
    unread = PUBLIC_KEY_SETTINGS if IS_HMAC else HMAC_SETTINGS
    found = [
        Finding(
            "jwt_setting_unused",
            name,
            f"{ALGORITHM} does not read this setting: remove it (or render for another algorithm)",
        )
        for name in unread
        if getattr(settings, name) is not None
    ]
    return found + (_secret_findings(settings) if IS_HMAC else _public_key_findings(settings))


def _secret_findings(settings: Settings) -> list[Finding]:
    if settings.jwt_secret is None:
        return [Finding("jwt_key_missing", "jwt_secret", "set the HS256 signing secret")]
    secret = settings.jwt_secret.get_secret_value()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return [
            Finding(
                "jwt_secret_short",
                "jwt_secret",
                f"use at least {MIN_SECRET_BYTES} random bytes (e.g. secrets.token_urlsafe(48))",
            )
        ]
    if "-----BEGIN" in secret:
        return [Finding("jwt_secret_is_key", "jwt_secret", "a PEM key is not an HMAC secret")]
    return []


def _public_key_findings(settings: Settings) -> list[Finding]:
    public_file, jwks_url = settings.jwt_public_key_file, settings.jwt_jwks_url
    found = []
    if public_file is None and jwks_url is None:
        found.append(
            Finding("jwt_key_missing", "jwt_public_key_file", "set a public key file or a JWKS URL")
        )
    elif public_file is not None and jwks_url is not None:
        found.append(
            Finding(
                "jwt_key_ambiguous", "jwt_jwks_url", "set a public key file or a JWKS URL, not both"
            )
        )
    if public_file is not None:
        try:
            load_public_key(public_file)
        except (OSError, ValueError) as exc:
            found.append(Finding("jwt_public_key_invalid", "jwt_public_key_file", str(exc)))
    if jwks_url is not None and not jwks_url.startswith("https://"):
        found.append(Finding("jwks_url_insecure", "jwt_jwks_url", "the JWKS URL must be https://"))
    if settings.is_production and settings.jwt_dev_private_key_file is not None:
        found.append(
            Finding(
                "dev_signing_key",
                "jwt_dev_private_key_file",
                "a production server holds no private key: tokens come from your issuer",
            )
        )
    return found


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh key pair of the algorithm as (private PKCS#8 PEM, public PEM); HS256 has
    none (`ValueError`)."""
    private: PrivateKey
    if ALGORITHM == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    elif ALGORITHM == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif ALGORITHM == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"{ALGORITHM} signs with a shared secret, not a key pair")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def dev_signing_key(settings: Settings) -> bytes | PrivateKey | None:
    """The key the `token` command signs with (development only)."""
    if settings.is_production:
        return None
    if IS_HMAC:
        secret = settings.jwt_secret
        return None if secret is None else secret.get_secret_value().encode()
    path = settings.jwt_dev_private_key_file
    if path is None:
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not is_private_key(key):
        raise ValueError(f"{path} does not hold a {ALGORITHM} private key")
    return key


def init_dev(certs: Path) -> dict[str, str]:
    """Create development signing material; return the settings that point to it."""
    if IS_HMAC:
        return {"JWT_SECRET": secrets.token_urlsafe(48)}
    private_pem, public_pem = new_key_pair()
    private_path, public_path = certs / "jwt-dev-private.pem", certs / "jwt-dev-public.pem"
    write_private(private_path, private_pem)
    write_public(public_path, public_pem)
    return {
        "JWT_PUBLIC_KEY_FILE": str(public_path),
        "JWT_DEV_PRIVATE_KEY_FILE": str(private_path),
    }

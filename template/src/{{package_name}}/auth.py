"""Connection authentication (C04, C05): strict verification of the CONNECT token.

The token travels in the Socket.IO CONNECT packet's `auth` payload, never in the query
string or a header (those land in access logs and proxies). Verification pins the one
algorithm of this project, requires every claim it relies on, and names why a token was
refused with a stable reason code for the security log; the client only hears
"unauthorized".
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import jwt

from .keys import ALGORITHM, KeySource, UnknownKeyError

MAX_TOKEN_CHARS: Final = 8192
MAX_HEADER_CHARS: Final = 1024
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
MAX_SUB_CHARS: Final = 256
REQUIRED_CLAIMS: Final = ("exp", "iat", "sub", "iss", "aud")
# Headers that ask a verifier to fetch or trust a key the token itself names.
KEY_REFERENCE_HEADERS: Final = frozenset({"jku", "jwk", "x5u", "x5c"})


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, from a verified token."""

    sub: str
    scopes: frozenset[str]
    expires_at: float
    issued_at: float
    token_id: str | None = None
    # The `rooms` claim: the rooms (or `prefix*` patterns) the subject may join; none if
    # absent. Read by the example domain (events.py), the pattern of data-level checks.
    rooms: tuple[str, ...] = ()


class AuthError(Exception):
    """A refused token. `reason` is a stable code for logs; it never holds token text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_DECODE_ERRORS: Final[tuple[tuple[type[jwt.InvalidTokenError], str], ...]] = (
    (jwt.ExpiredSignatureError, "token_expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid"),
    (jwt.InvalidAudienceError, "token_audience"),
    (jwt.InvalidIssuerError, "token_issuer"),
    (jwt.MissingRequiredClaimError, "token_claims_missing"),
    (jwt.InvalidSignatureError, "token_signature"),
    (jwt.DecodeError, "token_malformed"),  # after InvalidSignatureError, its subclass
)


class TokenVerifier:
    def __init__(
        self,
        *,
        keys: KeySource,
        issuer: str,
        audience: str,
        leeway: int,
        max_lifetime: float = float("inf"),
        required_type: str | None = None,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._required_type = _media_type(required_type) if required_type else None

    async def verify_auth(self, auth: object) -> Identity:
        """Verify a CONNECT `auth` payload, which must be exactly `{"token": "<jwt>"}`."""
        if not isinstance(auth, dict) or auth.keys() != {"token"}:
            raise AuthError("auth_missing")
        return await self.verify(auth["token"])

    async def verify(self, token: object) -> Identity:
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise AuthError("token_malformed")
        header = _unverified_header(token)
        # Pin the algorithm before any key is chosen: this is what defeats `alg: none` and
        # HMAC-signed-with-the-public-key confusion, whatever the key source returns.
        if header.get("alg") != ALGORITHM:
            raise AuthError("token_algorithm")
        if KEY_REFERENCE_HEADERS & header.keys():
            raise AuthError("token_key_reference")
        # RFC 8725 3.11: a token of another kind (an ID token of the same issuer, say) is
        # not an access token, even with a valid signature and audience.
        if self._required_type is not None and _media_type(header.get("typ")) != (
            self._required_type
        ):
            raise AuthError("token_type")
        try:
            key = await self._keys.key_for(header)
        except UnknownKeyError:
            raise AuthError("token_key_unknown") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(_reason(exc)) from None
        identity = _identity(claims)
        if identity.expires_at - identity.issued_at > self._max_lifetime:
            # A long-lived token is a long-lived credential to steal (ASVS 7.3).
            raise AuthError("token_lifetime")
        return identity


def _media_type(value: object) -> str | None:
    """A `typ` header as a media type, RFC 7515 4.1.9: case-insensitive, and
    `application/` may be left out."""
    if not isinstance(value, str):
        return None
    lowered = value.lower()
    return lowered.removeprefix("application/")


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header alone, for the checks that come before any key is chosen.

    `jwt.get_unverified_header` would decode and check all three segments, character by
    character in Python, and `jwt.decode` does it all again; reading only the header here
    halves that cost per connection. `jwt.decode` still checks the whole token.
    """
    segment, dot, _ = token.partition(".")
    if not dot or len(segment) > MAX_HEADER_CHARS or not _BASE64URL.fullmatch(segment):
        raise AuthError("token_malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise AuthError("token_malformed") from None
    if not isinstance(header, dict):
        raise AuthError("token_malformed")
    return header


def _reason(exc: jwt.InvalidTokenError) -> str:
    for error_type, reason in _DECODE_ERRORS:
        if isinstance(exc, error_type):
            return reason
    return "token_invalid"


def is_subject(value: object) -> TypeGuard[str]:
    """The `sub` claim a token must carry; `token` (cli.py) refuses others before signing."""
    return isinstance(value, str) and 0 < len(value) <= MAX_SUB_CHARS


def _identity(claims: Mapping[str, Any]) -> Identity:
    sub, exp, jti = claims["sub"], claims["exp"], claims.get("jti")
    if not is_subject(sub):
        raise AuthError("token_subject")
    if not isinstance(jti, str | None):
        raise AuthError("token_claims_invalid")
    return Identity(
        sub=sub,
        scopes=_scopes(claims.get("scope")),
        expires_at=float(exp),
        issued_at=float(claims["iat"]),
        token_id=jti,
        rooms=_rooms(claims.get("rooms")),
    )


MAX_ROOM_GRANTS: Final = 64
_ROOM_GRANT: Final = re.compile(r"\*|[a-z0-9][a-z0-9_-]{0,63}\*?")


def is_room_grant(value: object) -> bool:
    """One item of the `rooms` claim: a room name, a `prefix*` pattern, or `*`."""
    return isinstance(value, str) and _ROOM_GRANT.fullmatch(value) is not None


def _rooms(value: object) -> tuple[str, ...]:
    """The `rooms` claim: a list of room names, `prefix*` patterns, or `*`."""
    if value is None:
        return ()
    if (
        isinstance(value, list)
        and len(value) <= MAX_ROOM_GRANTS
        and all(is_room_grant(item) for item in value)
    ):
        return _room_grants(tuple(value))
    raise AuthError("token_claims_invalid")


@functools.lru_cache(maxsize=256)
def _room_grants(grants: tuple[str, ...]) -> tuple[str, ...]:
    # One shared tuple per distinct claim, as for scopes.
    return grants


@functools.lru_cache(maxsize=256)
def _scope_set(scope: str) -> frozenset[str]:
    # Most tokens carry one of a few scope strings: one shared set each, not one per
    # connection (a few hundred bytes per idle connection otherwise).
    return frozenset(scope.split())


def _scopes(value: object) -> frozenset[str]:
    """The `scope` claim: a space-separated string (RFC 8693) or a list of strings."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return _scope_set(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise AuthError("token_claims_invalid")

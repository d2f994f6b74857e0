"""Security posture (C14): what is unsafe about a configuration.

The server refuses to start on any finding, in every mode; development mode relaxes only
what `findings()` says (http:// origins on loopback, DEBUG logging). The `check` command
prints the posture and exits non-zero on any finding.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from . import asynciotls, cluster, devcerts, keys, revocations, tls
from .settings import Finding, Settings
from .tlsgroups import GroupsError

MIN_MESSAGE_BYTES = 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_LEEWAY_SECONDS = 120
CERTIFICATE_WARNING = dt.timedelta(days=14)
_ORIGIN = re.compile(
    r"^https?://([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\])(:[1-9][0-9]{0,4})?$"
)


def findings(settings: Settings) -> list[Finding]:
    """Everything unsafe about `settings`. Development mode relaxes only what it says."""
    found = [*_tls_findings(settings), *_origin_findings(settings)]
    found += keys.key_findings(settings)
    found += cluster.queue_findings(settings) + revocations.findings(settings)
    if not settings.jwt_issuer.strip():
        found.append(Finding("jwt_issuer_missing", "jwt_issuer", "tokens need an issuer"))
    if not settings.jwt_audience.strip():
        found.append(Finding("jwt_audience_missing", "jwt_audience", "tokens need an audience"))
    if settings.jwt_leeway_seconds > MAX_LEEWAY_SECONDS:
        found.append(
            Finding(
                "jwt_leeway_too_large",
                "jwt_leeway_seconds",
                f"at most {MAX_LEEWAY_SECONDS} s: leeway keeps expired tokens alive",
            )
        )
    if not MIN_MESSAGE_BYTES <= settings.max_message_bytes <= MAX_MESSAGE_BYTES:
        found.append(
            Finding(
                "max_message_bytes_out_of_range",
                "max_message_bytes",
                f"must be between {MIN_MESSAGE_BYTES} and {MAX_MESSAGE_BYTES}",
            )
        )
    if settings.revocation_ttl_seconds < settings.max_token_lifetime_seconds:
        found.append(
            Finding(
                "revocation_ttl_too_short",
                "revocation_ttl_seconds",
                "must be at least MAX_TOKEN_LIFETIME_SECONDS: a revoked token would be "
                "accepted again before it expires",
            )
        )
    if settings.is_production and settings.events_per_second == 0:
        found.append(Finding("rate_limits_off", "events_per_second", "event rate limiting is off"))
    if "*" in settings.forwarded_allow_ips:
        found.append(
            Finding(
                "forwarded_from_anyone",
                "forwarded_allow_ips",
                "list the proxies' addresses: '*' lets any client choose its own address",
            )
        )
    if settings.is_production and settings.log_level == "DEBUG":
        found.append(Finding("debug_logging", "log_level", "DEBUG logging is not for production"))
    return found


def _tls_findings(settings: Settings) -> list[Finding]:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return [
            Finding(
                "tls_missing",
                "tls_cert_file",
                "TLS is required: set the certificate and key files "
                "(for development, run init-dev)",
            )
        ]
    unreadable = [
        Finding("tls_unreadable", name, f"cannot read {path}")
        for name, path in (
            ("tls_cert_file", settings.tls_cert_file),
            ("tls_key_file", settings.tls_key_file),
        )
        if not path.is_file()
    ]
    if unreadable:
        return unreadable
    try:
        # Loads the chain and its key (a key of another certificate fails here) and proves
        # the key-exchange groups.
        tls.server_context(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError, GroupsError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return [
            Finding("tls_invalid", "tls_key_file", f"certificate and key do not load: {reason}")
        ]
    return _certificate_findings(settings, _certificate(settings.tls_cert_file))


def _certificate(path: Path) -> x509.Certificate:
    """The server's own certificate: the first of the chain file."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def _certificate_findings(settings: Settings, cert: x509.Certificate) -> list[Finding]:
    now = dt.datetime.now(dt.UTC)
    found = []
    if cert.not_valid_after_utc <= now:
        found.append(
            Finding(
                "tls_certificate_expired",
                "tls_cert_file",
                f"expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it "
                "(for development, run init-dev again)",
            )
        )
    if cert.not_valid_before_utc > now:
        found.append(
            Finding(
                "tls_certificate_not_yet_valid",
                "tls_cert_file",
                f"valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)",
            )
        )
    units = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if settings.is_production and any(unit.value == devcerts.DEV_CA_UNIT for unit in units):
        found.append(
            Finding(
                "tls_dev_certificate",
                "tls_cert_file",
                "issued by init-dev's development CA, which no client should trust: "
                "use a certificate of a real CA",
            )
        )
    return found


def warnings(settings: Settings) -> list[str]:
    """What is not unsafe but weaker than it should be: a certificate about to expire, a
    deny-list kept in memory only, or asyncio's TLS layer left unpatched on this Python
    (see asynciotls)."""
    unpatched = asynciotls.unavailable()
    found = _certificate_warnings(settings) + revocations.warnings(settings)
    return found + ([unpatched] if unpatched else [])


def _certificate_warnings(settings: Settings) -> list[str]:
    path = settings.tls_cert_file
    if path is None or not path.is_file():
        return []
    try:
        cert = _certificate(path)
    except ValueError:
        return []
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if dt.timedelta(0) < left <= CERTIFICATE_WARNING:
        return [f"the TLS certificate expires in {left.days} day(s): renew it ({path})"]
    return []


def _origin_findings(settings: Settings) -> list[Finding]:
    setting = "cors_allowed_origins"
    if not settings.cors_allowed_origins:
        # python-engineio treats an empty list as "do not check origins at all".
        return [Finding("origins_empty", setting, "list at least one allowed origin")]
    found = []
    for origin in settings.cors_allowed_origins:
        if "*" in origin:
            found.append(Finding("origin_wildcard", setting, "wildcards are not allowed"))
        elif not _ORIGIN.match(origin):
            found.append(
                Finding(
                    "origin_malformed",
                    setting,
                    f"{origin!r} is not an exact lower-case scheme://host[:port] origin",
                )
            )
        elif origin.startswith("http://") and (
            settings.is_production or not _is_loopback(urlsplit(origin).hostname)
        ):
            found.append(
                Finding(
                    "origin_insecure",
                    setting,
                    f"{origin!r} is not https (development allows http:// on loopback only)",
                )
            )
    return found


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False

"""Typed settings from the environment (and `.env`).

Every setting is an environment variable with the prefix below; `.env.example` documents
each one. What is unsafe about a configuration is judged in `posture.py` (C14).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import answers

ENV_PREFIX = answers.ENV_PREFIX
ENV_NAME = ".env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        # No implicit `./.env`: load() passes the project's (find_env_file), so that a
        # command run in `src/` reads the same file as one run next to pyproject.toml.
        env_file=None,
        env_file_encoding="utf-8",
        # Other tools' variables may share `.env`; our own misspelt ones are caught in load().
        extra="ignore",
        frozen=True,
    )

    environment: Literal["production", "development"] = "production"
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    cors_allowed_origins: Annotated[tuple[str, ...], NoDecode] = answers.CORS_ALLOWED_ORIGINS
    require_origin: bool = False
    jwt_issuer: str = answers.JWT_ISSUER
    jwt_audience: str = answers.JWT_AUDIENCE
    jwt_leeway_seconds: int = Field(default=answers.JWT_LEEWAY_SECONDS, ge=0)
    # C05: the verification key. HS256 reads only jwt_secret; RS256, ES256 and EdDSA read
    # only the other three. Setting one the algorithm does not read is a finding (see keys).
    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    jwt_jwks_url: str | None = None
    jwt_dev_private_key_file: Path | None = None
    max_message_bytes: int = answers.MAX_MESSAGE_BYTES
    # C11: limits. events_per_second = 0 switches event rate limiting off (refused in production).
    events_per_second: float = Field(default=20.0, ge=0)
    event_burst: int = Field(default=40, ge=1)
    max_frames_per_second: float = Field(default=100.0, gt=0)
    max_connections: int = Field(default=10_000, ge=1)
    max_connections_per_address: int = Field(default=50, ge=1)
    # New TCP connections per second from one address (a TLS handshake costs the server a
    # few milliseconds of CPU); bursts up to twice as many.
    connections_per_second_per_address: float = Field(default=50.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # The TLS handshake, and then each HTTP request (a websocket upgrade included), must
    # arrive whole within this many seconds.
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    max_rooms_per_connection: int = Field(default=20, ge=1)
    # Open sessions of one subject (`sub`) per namespace; more are refused.
    max_sessions_per_subject: int = Field(default=20, ge=1)
    # Output a client may leave unread before it is cut off (a slow or stalled reader).
    send_buffer_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    # Engine.IO heartbeat: the server pings every interval; no answer within the timeout
    # closes the connection (a half-open TCP connection is found within their sum).
    ping_interval_seconds: float = Field(default=25.0, gt=0, le=300)
    ping_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    # C07: how long a revocation refuses the subject's older tokens; at least the longest
    # token lifetime (refused otherwise: an older token would outlive its revocation).
    revocation_ttl_seconds: int = Field(default=86_400, ge=60)
    # C05/C06: tokens that live longer than this (exp - iat) are refused.
    max_token_lifetime_seconds: int = Field(default=3600, ge=60)
    # C06: a session ends this long after it opened, however often it is renewed with
    # `reauth`; and, when not 0, after this many seconds without a client event.
    max_session_seconds: int = Field(default=86_400, ge=1)
    idle_timeout_seconds: float = Field(default=0.0, ge=0)
    # C05: when set, the JOSE header `typ` every token must carry, e.g. `at+jwt` (RFC 9068);
    # tokens of other types (an ID token, say) are refused.
    jwt_required_type: str | None = None
    # C12: proxies whose X-Forwarded-For / X-Forwarded-Proto are trusted; none by default.
    forwarded_allow_ips: Annotated[tuple[str, ...], NoDecode] = ()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Several nodes (C07, C19): the message queue they share, `rediss://USER:{PASSWORD}@HOST:
    # PORT/DB` (or `valkeys://`), and the CA file that signed its certificate. Unset, the
    # service is one process and needs nothing else. See cluster.py and docs/deploy.md.
    message_queue_url: SecretStr | None = None
    message_queue_ca_file: Path | None = None
    # One channel per deployment; the shared keys (deny-list, session counts) live under
    # `<channel>:`. The Redis ACL grants the nodes' user exactly these.
    message_queue_channel: str = Field(
        default=answers.SCRIPT, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )
    # No handler waits on the queue longer than this; past it the queue counts as lost
    # (local traffic goes on, cross-node delivery stops until it is back).
    message_queue_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    # One node without a queue: the file that keeps revocations across restarts (written
    # atomically, mode 0600). Unset, they live in memory only (a warning says so).
    revocations_file: Path | None = None

    @field_validator("cors_allowed_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # A comma-separated list reads better in an environment variable than JSON.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


@dataclass(frozen=True, slots=True)
class Finding:
    """One unsafe aspect of a configuration: a stable code, the setting, and what to do."""

    code: str
    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message} ({ENV_PREFIX}{self.setting.upper()})"


def find_env_file(start: Path | None = None) -> Path:
    """The project's `.env`: the first one from `start` (the current directory) upward, up
    to the directory holding the project's `pyproject.toml`; that directory's `.env` (where
    `init-dev` writes it) when there is none yet. Outside a project, `start/.env` only: a
    `.env` in some parent directory (the home directory, say) belongs to something else.
    """
    here = (start or Path.cwd()).absolute()
    directories = (here, *here.parents)
    root = next((path for path in directories if (path / "pyproject.toml").is_file()), None)
    if root is None:
        return here / ENV_NAME
    inside = directories[: directories.index(root) + 1]
    found = (path / ENV_NAME for path in inside if (path / ENV_NAME).is_file())
    return next(found, root / ENV_NAME)


def load(env_file: Path | None = None) -> Settings:
    """Settings from the environment and `env_file` (default: `find_env_file()`);
    `SettingsError` with readable text.

    A variable with our prefix that names no setting is an error, not silently ignored:
    a misspelt security setting would otherwise fall back to its default.
    """
    env_file = find_env_file() if env_file is None else env_file
    from_file = dotenv_values(env_file) if env_file.is_file() else {}
    names = set(os.environ) | set(from_file)
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    unknown = sorted(name for name in names if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        raise SettingsError(f"unknown settings (check the spelling): {', '.join(unknown)}")
    try:
        settings = Settings(_env_file=env_file)
    except ValidationError as exc:
        raise SettingsError.from_validation(exc) from None
    # A relative file name in `.env` names a file beside it (init-dev writes `certs/...`),
    # whichever directory of the project a command runs in; one set in the environment
    # stays relative to the current directory, as usual.
    beside = {
        name: env_file.parent / value
        for name, value in settings
        if isinstance(value, Path)
        and not value.is_absolute()
        and ENV_PREFIX + name.upper() in from_file
        and ENV_PREFIX + name.upper() not in os.environ
    }
    return settings.model_copy(update=beside) if beside else settings


class SettingsError(Exception):
    """A setting that cannot be parsed. The message names it and never echoes its value."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> SettingsError:
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            name = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"{ENV_PREFIX}{name.upper()}: {error['msg']}")
        return cls("invalid settings:\n  " + "\n  ".join(lines))

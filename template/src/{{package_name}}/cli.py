"""The command line: `init-dev`, `serve`, `token`, `revoke`, `check`, `asyncapi`.

Exit codes: 0 success; 1 findings (`check`); 2 refused, before anything is printed on
standard output: bad settings, an insecure posture (`serve`), a port already in use
(`serve`), a token the server would refuse (`token`: an empty or over-long `--sub`, a
`--scope` the server does not know, a `--room` that is no room grant, a `--ttl` over
MAX_TOKEN_LIFETIME_SECONDS), a command that needs something missing, or a usage error
(argparse's own). Each problem is one line on standard error that names the option or
setting and what to do; no command prints a secret except `token`, whose output is the
token asked for.

Settings come from the environment and the project's `.env`, found from any directory
inside the project (settings.find_env_file); `serve` and `check` say which one they read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib.metadata
import logging
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn

import jwt
import uvicorn

from . import admin, asyncapi, cluster, devcerts, keys, posture, reload, seclog, tls
from .answers import PROJECT_NAME, SCRIPT
from .auth import MAX_ROOM_GRANTS, MAX_SUB_CHARS, is_room_grant, is_subject
from .events import SCOPE_JOIN, SCOPE_WRITE
from .lifecycle import ADMIN_SCOPE
from .server import create_app, listen, prepare_process, uvicorn_config
from .settings import ENV_PREFIX, Finding, Settings, SettingsError, find_env_file, load

PROG: Final = SCRIPT
# The scopes the server checks (events.py, lifecycle.py): a token with any other is a typo
# that would only show later, as `forbidden`. Add yours here with their events.
SCOPES: Final = frozenset({SCOPE_JOIN, SCOPE_WRITE, ADMIN_SCOPE})
# What a development token grants unless `token --scope/--room` says otherwise.
DEV_SCOPES: Final = (SCOPE_JOIN, SCOPE_WRITE)
DEV_ROOMS: Final = ("*",)
CERTS_DIR: Final = "certs"
ASYNCAPI_FILE: Final = Path("docs") / "asyncapi.json"
EXIT_FINDINGS: Final = 1
EXIT_REFUSED: Final = 2


class Refused(Exception):
    """A command refused before it did anything; the message is its one line of error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other refusal (argparse adds the whole usage); the usage is
        # one `--help` away.
        self.exit(EXIT_REFUSED, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, Refused) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def _distribution(field: str) -> str | None:
    # The project's own metadata (pyproject.toml), so that nothing here is rendered from
    # an answer; absent only when the package runs without being installed.
    try:
        if field == "Version":
            return importlib.metadata.version(SCRIPT)
        return importlib.metadata.metadata(SCRIPT)[field]
    except (importlib.metadata.PackageNotFoundError, KeyError):
        return None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=_distribution("Summary"),
        epilog="exit status: 0 done, 1 findings (check), 2 refused (one line says why)",
    )
    version = _distribution("Version") or "(not installed)"
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init-dev",
        help="write a dev CA, certificate, keys and .env",
        description="Write a development CA and server certificate under certs/, "
        "development JWT key material, and a .env (mode 0600) in development mode, next "
        "to the project's pyproject.toml (in the current directory outside a project).",
    )
    init.add_argument("--force", action="store_true", help="replace an existing .env")
    init.set_defaults(run=init_dev)

    serve = commands.add_parser(
        "serve",
        help="serve Socket.IO over TLS",
        description="Serve Socket.IO over TLS websockets, with the settings of the "
        "environment and the project's .env (named on standard error). Refuses to start "
        "(exit 2) on any finding of `check`, or when the port is in use. SIGHUP reloads "
        "the TLS certificate and the JWT verification key without dropping connections.",
    )
    serve.add_argument("--host", help="address to bind (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to bind (default from settings: 8443)")
    serve.set_defaults(run=serve_command)

    token = commands.add_parser(
        "token",
        help="print a signed development token",
        description="Print a token signed with the development key (development mode "
        "only). Refuses (exit 2), before printing anything, what the server would refuse: "
        "an empty or too long subject, an unknown scope, a bad room grant, a lifetime "
        f"over {ENV_PREFIX}MAX_TOKEN_LIFETIME_SECONDS.",
    )
    token.add_argument(
        "--sub",
        required=True,
        type=_subject,
        help=f"subject (user id) of the token, 1 to {MAX_SUB_CHARS} characters",
    )
    token.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        metavar="SCOPE",
        help=f"a granted scope, one of {', '.join(sorted(SCOPES))}; repeat for more "
        f"(default: {SCOPE_JOIN} {SCOPE_WRITE})",
    )
    token.add_argument(
        "--room",
        action="append",
        type=_room_grant,
        help="a room the token may join, `prefix*` or `*`; repeat for more, at most "
        f"{MAX_ROOM_GRANTS} (default: *)",
    )
    token.add_argument(
        "--ttl",
        type=int,
        default=900,
        help=f"lifetime in seconds, at most {ENV_PREFIX}MAX_TOKEN_LIFETIME_SECONDS (default 900)",
    )
    token.set_defaults(run=token_command)

    revoke = commands.add_parser(
        "revoke",
        help="disconnect every connection of a subject now",
        description="Disconnect every connection of a subject now, and refuse its older "
        "tokens for REVOCATION_TTL_SECONDS, through the server's admin namespace "
        f"(an admin token with scope {ADMIN_SCOPE}).",
    )
    revoke.add_argument("--sub", required=True, type=_subject, help="the subject to cut off")
    revoke.add_argument("--url", help="server URL (default https://localhost:PORT)")
    revoke.add_argument("--ca-file", type=Path, help="CA to verify the server (default: dev CA)")
    revoke.add_argument(
        "--token-stdin",
        action="store_true",
        help=f"read an admin token (scope {ADMIN_SCOPE}) from standard input; "
        "in development a short-lived one is signed with the dev key",
    )
    revoke.set_defaults(run=revoke_command)

    check = commands.add_parser(
        "check",
        help="print the security posture; non-zero on findings",
        description="Print the security posture of the settings (the environment and the "
        "project's .env, named on standard error); exit 1 on any finding, the ones that "
        "make `serve` refuse to start.",
    )
    check.set_defaults(run=check_command)

    spec = commands.add_parser(
        "asyncapi",
        help="print the AsyncAPI document of the service's events",
        description="Print the AsyncAPI 3.0 document of the service's events, built from "
        "the code: the events the routers register, their payload models and scopes, the "
        f"ack envelope and its error codes. {ASYNCAPI_FILE} is its committed copy, which "
        f"the tests hold equal to it: after changing an event, run `{PROG} asyncapi "
        f"--output {ASYNCAPI_FILE}`. Reads no settings: the document gives their defaults.",
    )
    spec.add_argument("--output", type=Path, help="write it to this file, not standard output")
    spec.set_defaults(run=asyncapi_command)
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError("must be a port number from 1 to 65535")
    return int(text)


def _subject(text: str) -> str:
    # The server's own rule (auth.py): a token it would refuse as `token_subject` is not
    # worth printing.
    if not is_subject(text):
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_SUB_CHARS} characters")
    return text


def _room_grant(text: str) -> str:
    if not is_room_grant(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is no room grant: a room name (up to 64 of a-z 0-9 _ -, starting "
            "with a letter or digit), such a name followed by * (a prefix), or *"
        )
    return text


def _settings() -> tuple[Settings, Path]:
    """The settings, and the `.env` they were read from (which may not exist)."""
    env_file = find_env_file()
    return load(env_file), env_file


def _source(env_file: Path) -> str:
    # Which .env a command read: a command run in another directory than the user thinks
    # (`src/`) must not silently switch to other settings. Its name only, never a value.
    found = f"and {env_file}" if env_file.is_file() else f"only (no {env_file})"
    return f"settings from the environment {found}"


def _beside(value: str | Path, root: Path) -> str:
    # init-dev writes its files under the project, and names them relative to `.env` (see
    # settings.load): the project still works when moved.
    path = Path(value)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(value)


def init_dev(args: argparse.Namespace) -> int:
    env_file = find_env_file()
    if env_file.exists() and not args.force:
        raise Refused(f"{env_file} exists; keeping it (use --force to replace it)")
    root = env_file.parent
    certs = root / CERTS_DIR
    pki = devcerts.make_dev_pki(certs, PROJECT_NAME)
    values: dict[str, str | Path] = {
        "ENVIRONMENT": "development",
        "TLS_CERT_FILE": pki["cert"],
        "TLS_KEY_FILE": pki["key"],
        **keys.init_dev(certs),
        # Revocations outlive a restart of the development server too.
        "REVOCATIONS_FILE": root / "state" / "revocations.json",
    }
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    lines = [f"# Written by `{PROG} init-dev` at {stamp}: development only, never commit."]
    lines += [f"{ENV_PREFIX}{name}={_beside(value, root)}" for name, value in values.items()]
    devcerts.write_private(env_file, ("\n".join(lines) + "\n").encode())
    print(f"wrote {certs}/: development CA ({pki['ca'].name}), server certificate, keys")
    print(f"wrote {env_file} (mode 0600): development mode, TLS files, JWT key settings")
    print(f"next: `{PROG} serve`, then `{PROG} token --sub alice` for a client token")
    return 0


def _refusals(settings: Settings) -> list[Finding]:
    found = posture.findings(settings)
    for finding in found:
        print(f"{PROG}: refusing to start: {finding}", file=sys.stderr)
    return found


def serve_command(args: argparse.Namespace) -> int:
    # A SIGHUP (`systemctl reload`, a certbot hook) before the reload handler is installed
    # must not end the process: until then it has nothing newer to read anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings, env_file = _settings()
    overrides = {name: value for name, value in (("host", args.host), ("port", args.port)) if value}
    if overrides:
        settings = settings.model_copy(update=overrides)
    handler = logging.StreamHandler()
    handler.setFormatter(seclog.UTCFormatter(seclog.LOG_FORMAT))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    logging.getLogger(PROG).info("%s", _source(env_file))
    if _refusals(settings):
        return EXIT_REFUSED
    if settings.message_queue_url is not None:
        # A wrong password or a missing permission is a configuration error: refuse now,
        # not once per reconnection later. A queue that does not answer is an outage:
        # serve degraded (local traffic flows) until it does.
        try:
            unreachable = asyncio.run(cluster.preflight(settings))
        except cluster.QueueRefused as exc:
            raise Refused(f"refusing to start: {exc}") from None
        if unreachable:
            logging.getLogger(PROG).warning("%s", unreachable)
    # Bind before the app is built or its warnings logged: a busy port is one line and
    # exit 2, never after a report that the server started.
    try:
        sock = listen(settings)
    except OSError as exc:
        raise Refused(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} "
            f"(is another server running? choose another with --port or {ENV_PREFIX}PORT)"
        ) from None
    for warning in posture.warnings(settings):
        logging.getLogger(PROG).warning("%s", warning)
    if not settings.is_production:
        logging.getLogger(PROG).warning(
            "DEVELOPMENT MODE: the server trusts a local CA and may hold a signing key. "
            "Never expose it; set %sENVIRONMENT=production to deploy.",
            ENV_PREFIX,
        )
    # SIGHUP reloads the certificate and the JWT keys from the same environment and .env,
    # with the same overrides (see reload).
    reloader = reload.Reloader(settings, lambda: load(env_file).model_copy(update=overrides))
    app = create_app(settings, key_source=reloader.keys)
    config = uvicorn_config(settings, app, tls_context=reloader.tls_context)
    prepare_process(settings)
    # Everything built so far lives as long as the process: freeze it, so that the garbage
    # collector's full passes scan only what connections allocate, not every module and
    # schema again (about half of the collector's time per connection, see the benchmark).
    gc.collect()
    gc.freeze()
    reload.run(uvicorn.Server(config), [sock], reloader)
    return 0


def _sign(
    settings: Settings,
    key: object,
    sub: str,
    scopes: Sequence[str],
    ttl: int,
    rooms: Sequence[str] = ("*",),
) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": sub,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
        "scope": " ".join(scopes),
        "rooms": list(rooms),
    }
    return jwt.encode(claims, key, algorithm=keys.ALGORITHM)  # type: ignore[arg-type]


def _signing_key(settings: Settings, refusal: str) -> object:
    try:
        key = keys.dev_signing_key(settings)
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read the development signing key: {exc}") from None
    if key is None:
        raise Refused(refusal)
    return key


def dev_token(
    sub: str,
    ttl: int,
    scopes: Sequence[str] = DEV_SCOPES,
    rooms: Sequence[str] = DEV_ROOMS,
) -> str:
    """A development token, signed with the development key of the settings in the
    environment and `.env`; raises `Refused` (one line) wherever the service would refuse
    the token or production settings forbid signing. The `token` command prints one; the
    browser example's page server (examples/browser/serve.py) hands them to its page."""
    if len(rooms) > MAX_ROOM_GRANTS:
        raise Refused(f"at most {MAX_ROOM_GRANTS} --room grants (the server refuses more)")
    settings, env_file = _settings()
    longest = settings.max_token_lifetime_seconds
    if not 0 < ttl <= longest:
        raise Refused(
            f"--ttl must be from 1 to {longest} seconds: the server refuses tokens that live "
            f"longer than {ENV_PREFIX}MAX_TOKEN_LIFETIME_SECONDS"
        )
    key = _signing_key(
        settings,
        "token signs only in development mode with a dev key, and found none in the "
        f"environment or {env_file}: run `{PROG} init-dev` (in production, tokens come "
        "from your identity provider)",
    )
    return _sign(settings, key, sub, scopes, ttl, rooms)


def token_command(args: argparse.Namespace) -> int:
    print(dev_token(args.sub, args.ttl, args.scope or DEV_SCOPES, args.room or DEV_ROOMS))
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    settings, env_file = _settings()
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    else:
        key = _signing_key(settings, "outside development, pass an admin token with --token-stdin")
        token = _sign(settings, key, "admin-cli", (ADMIN_SCOPE,), 60)
    dev_ca = env_file.parent / CERTS_DIR / "ca.pem"
    ca_file = args.ca_file or (dev_ca if not settings.is_production else None)
    url = args.url or f"https://localhost:{settings.port}"
    try:
        ack = asyncio.run(admin.revoke(url, token, args.sub, ca_file))
    except admin.AdminError as exc:
        raise Refused(f"revoke failed: {exc}") from None
    print(f"revoked {args.sub}: {ack['disconnected']} connection(s) closed on that node")
    if ack.get("shared") is True:
        print("shared through the message queue: every node refuses it and closes its connections")
    elif ack.get("shared") is False:
        print(
            "the message queue is down: the other nodes apply it when it is back "
            "(that node refuses it now)"
        )
    return 0


def asyncapi_command(args: argparse.Namespace) -> int:
    version, summary = _distribution("Version"), _distribution("Summary")
    if version is None or summary is None:
        raise Refused(
            "the document gives the project's version and description, and the project is "
            "not installed: run `uv sync`"
        )
    text = asyncapi.dumps(asyncapi.document(version, summary))
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8", newline="\n")
        except OSError as exc:
            raise Refused(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def check_command(args: argparse.Namespace) -> int:
    settings, env_file = _settings()
    print(f"{PROG}: {_source(env_file)}", file=sys.stderr)
    print(f"environment       {settings.environment}")
    print(f"tls profile       {tls.PROFILE} (certificate: {settings.tls_cert_file})")
    print(f"jwt               {keys.ALGORITHM}, issuer {settings.jwt_issuer!r},")
    print(f"                  audience {settings.jwt_audience!r},")
    print(f"                  leeway {settings.jwt_leeway_seconds} s")
    print(f"allowed origins   {', '.join(settings.cors_allowed_origins) or '(none)'}")
    print(f"require origin    {settings.require_origin}")
    print(f"max message bytes {settings.max_message_bytes}")
    events = f"{settings.events_per_second:g}/s, burst {settings.event_burst}"
    print(f"event rate        {events if settings.events_per_second else 'OFF'}")
    print(
        f"connections       {settings.max_connections} in total, "
        f"{settings.max_connections_per_address} per address, "
        f"authenticate within {settings.connect_timeout_seconds:g} s"
    )
    print(f"request deadline  {settings.request_timeout_seconds:g} s (TLS handshake, each request)")
    print(f"trusted proxies   {', '.join(settings.forwarded_allow_ips) or '(none)'}")
    print(f"message queue     {cluster.describe(settings)}")
    kept = str(settings.revocations_file or "in memory only")
    if settings.message_queue_url is not None:
        unread = " (REVOCATIONS_FILE not read)" if settings.revocations_file else ""
        kept = f"in the message queue{unread}"
    print(f"revocations       {kept}, {settings.revocation_ttl_seconds} s")
    found = posture.findings(settings)
    for warning in posture.warnings(settings):
        print(f"WARNING {warning}")
    for finding in found:
        print(f"FINDING {finding}")
    print(f"{len(found)} finding(s)" if found else "no findings")
    return EXIT_FINDINGS if found else 0

"""Real servers for the template's tests, started from a rendered project's `deploy/` files:
Debian's `redis-server` (TLS, ACL users, AOF) and `nginx`, on free 127.0.0.1 ports, with a
certificate authority made here. No tests in this module.

The rendered files are used as written; what a test machine must change (ports, paths,
the pid and log files, passwords) is overridden on the server's command line
(`redis-server FILE --tls-port N ...`) or, for nginx, whose site file has no command-line
overrides, by replacing whole directives of the site, each of which must be found (a
renamed directive fails here rather than silently testing something else).

Every process is stopped by its PID with bounded waits (SIGTERM, then SIGKILL); the
context managers `redis_server()` and `nginx_server()` stop theirs whatever happens.

    pki = Pki.create(tmp / "pki")
    with redis_server(project / "deploy", tmp / "redis", pki) as redis:
        redis.url        # rediss://node:{password}@127.0.0.1:{port}/0, CA: redis.ca_file
        redis.freeze(); redis.thaw(); redis.kill(); redis.start()   # same port, same data
    with nginx_server(project / "deploy", tmp / "nginx", pki, node_ports=[p1, p2]) as nginx:
        nginx.port       # TLS, the site's profile; nodes verified against pki.ca_file
"""

from __future__ import annotations

import ctypes.util
import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REDIS_SERVER = "redis-server"
REDIS_CLI = "redis-cli"
NGINX = "nginx"
START_SECONDS = 10.0
STOP_SECONDS = 10.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def missing_tools() -> list[str]:
    """The programs and libraries of the deployment tests that are not installed
    (`.ci/run` installs them)."""
    found = {
        name: shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        for name in (REDIS_SERVER, REDIS_CLI, NGINX, "systemd-analyze")
    }
    missing = [name for name, path in found.items() if path is None]
    # sandbox_exec.py loads the unit's seccomp filters with it.
    return missing + ([] if ctypes.util.find_library("seccomp") else ["libseccomp"])


def tool_path(name: str) -> str:
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError(f"{name} is not installed (see .ci/run)")
    return path


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Pki:
    """A certificate authority of its own in `directory`, and certificates it issues.

    `ca_file` is what a client (nginx verifying a node, a node verifying Redis, a test
    client verifying nginx) trusts. Keys are ECDSA P-256, served with the ECDHE-ECDSA
    suites of both Mozilla profiles."""

    directory: Path
    ca_file: Path
    _ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    _ca_cert: x509.Certificate = field(repr=False)

    @classmethod
    def create(cls, directory: Path, name: str = "deploy tests CA") -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, ca_file, key, cert)

    @classmethod
    def load(cls, directory: Path) -> Pki:
        """The CA already in `directory` (`ca.pem`, `ca-key.pem`: a project's init-dev
        `certs/`), issuing its certificates there."""
        ca_file = directory / "ca.pem"
        key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{directory / 'ca-key.pem'} is not an EC key")
        return cls(directory, ca_file, key, x509.load_pem_x509_certificate(ca_file.read_bytes()))

    def issue(
        self, stem: str, names: Sequence[str] = ("localhost",), ips: Sequence[str] = (HOST,)
    ) -> tuple[Path, Path]:
        """A server certificate for the DNS `names` and `ips`, usable by clients too, as
        (`<stem>-fullchain.pem` holding it and the CA, `<stem>-privkey.pem`, mode 0600)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        chain = self.directory / f"{stem}-fullchain.pem"
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + self._ca_cert.public_bytes(serialization.Encoding.PEM)
        )
        private = self.directory / f"{stem}-privkey.pem"
        private.touch(mode=0o600)
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return chain, private


# ------------------------------------------------------------------ processes


def _spawn(
    args: Sequence[str | Path],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603 - Debian's servers, our arguments
            [str(arg) for arg in args],
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal meant for the test runner is not theirs
        )


@contextmanager
def running(
    args: Sequence[str | Path], log: Path, *, cwd: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours (a project's command), output to `log`, with `env` over this
    environment; stopped by its PID when the block ends, whatever happens."""
    process = _spawn(args, log, cwd=cwd, env=env)
    try:
        yield process
    finally:
        _end(process)


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode} before listening:\n{_tail(log)}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                _end(process)
                raise RuntimeError(
                    f"not listening after {START_SECONDS} s:\n{_tail(log)}"
                ) from None
            time.sleep(0.02)


def _end(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal `process` by its PID (continuing it first if stopped), wait, then SIGKILL."""
    if process.poll() is not None:
        return
    if sig != signal.SIGKILL:
        process.send_signal(signal.SIGCONT)
    process.send_signal(sig)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_SECONDS)


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else "(no log)"


# ------------------------------------------------------------------ redis


@dataclass
class RedisServer:
    """A redis-server of the rendered `deploy/redis/redis.conf`, TLS only, with the users
    of the rendered ACL example under fresh random passwords.

    `url` is the node user's `rediss://` URL; clients verify the server with `ca_file`.
    The ops user (`ops_user`, `ops_password`) is for checks and maintenance: `cli()`."""

    config: Path
    acl_file: Path
    data_dir: Path
    log_file: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    port: int
    node_password: str = field(repr=False)
    ops_password: str = field(repr=False)
    ops_user: str = "ops"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"rediss://node:{self.node_password}@{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def command_line(self) -> list[str]:
        """redis-server with the rendered file, and this machine's ports and paths."""
        # `port` (0: no plaintext) and `bind` stay as the rendered file says.
        overrides = {
            "tls-port": str(self.port),
            "dir": str(self.data_dir),
            "aclfile": str(self.acl_file),
            "tls-cert-file": str(self.cert_file),
            "tls-key-file": str(self.key_file),
            "tls-ca-cert-file": str(self.ca_file),
            "logfile": str(self.log_file),
            "pidfile": str(self.data_dir.parent / "redis.pid"),
            "daemonize": "no",
            "supervised": "no",
        }
        args = [tool_path(REDIS_SERVER), str(self.config)]
        for name, value in overrides.items():
            args += [f"--{name}", value]
        return args

    def start(self) -> None:
        """Start (again) on the same port with the same data directory: the AOF brings
        back what was written. Returns once the TLS port answers a PING of the ops user."""
        if self.pid is not None:
            raise RuntimeError("redis-server is already running")
        self.process = _spawn(self.command_line(), self.log_file.with_suffix(".out"))
        _wait_listening(self.process, self.port, self.log_file.with_suffix(".out"))
        deadline = time.monotonic() + START_SECONDS
        while self.cli("PING", check=False).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server does not answer:\n{_tail(self.log_file)}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (Redis writes its AOF and exits), waiting at most STOP_SECONDS."""
        if self.process is not None:
            _end(self.process)

    def kill(self) -> None:
        """SIGKILL: a crash; the AOF keeps what was fsynced (every second)."""
        if self.process is not None:
            _end(self.process, signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the port stays open and nothing answers."""
        if self.pid is None:
            raise RuntimeError("redis-server is not running")
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze()`."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    def cli(
        self,
        *args: str,
        user: str | None = None,
        password: str | None = None,
        check: bool = True,
        timeout: float = STOP_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        """`redis-cli` over TLS as the ops user (or `user`/`password`); the password goes
        through the environment, never the command line. A frozen server makes it raise
        `subprocess.TimeoutExpired` after `timeout` seconds."""
        user = user or self.ops_user
        password = self.ops_password if password is None else password
        result = subprocess.run(  # noqa: S603 - redis-cli, our arguments
            [
                tool_path(REDIS_CLI),
                "--tls",
                "--cacert",
                str(self.ca_file),
                "-h",
                HOST,
                "-p",
                str(self.port),
                "--user",
                user,
                "--no-auth-warning",
                *args,
            ],
            env={**os.environ, "REDISCLI_AUTH": password},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)}: {result.stderr}")
        return result


def acl_from_example(example: str, passwords: dict[str, str]) -> str:
    """The rendered ACL example with each `#<USER>_PASSWORD_SHA256` placeholder replaced by
    the SHA-256 of `passwords[user]`; every placeholder must be replaced."""
    text = example
    for user, password in passwords.items():
        placeholder = f"#{user.upper()}_PASSWORD_SHA256"
        if placeholder not in text:
            raise ValueError(f"no {placeholder} in the ACL example")
        text = text.replace(placeholder, "#" + hashlib.sha256(password.encode()).hexdigest())
    left = re.findall(r"#[A-Z_]+_SHA256", text)
    if left:
        raise ValueError(f"placeholders left in the ACL example: {left}")
    return text


def start_redis(deploy: Path, workdir: Path, pki: Pki) -> RedisServer:
    """redis-server from `deploy/redis/` on a free port, data and logs under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    cert_file, key_file = pki.issue("redis")
    node_password, ops_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    acl_file = workdir / "users.acl"
    acl_file.touch(mode=0o600)
    example = (deploy / "redis" / "users.acl.example").read_text()
    acl_file.write_text(acl_from_example(example, {"node": node_password, "ops": ops_password}))
    server = RedisServer(
        config=deploy / "redis" / "redis.conf",
        acl_file=acl_file,
        data_dir=data_dir,
        log_file=workdir / "redis.log",
        ca_file=pki.ca_file,
        cert_file=cert_file,
        key_file=key_file,
        port=free_port(),
        node_password=node_password,
        ops_password=ops_password,
    )
    server.start()
    return server


@contextmanager
def redis_server(deploy: Path, workdir: Path, pki: Pki) -> Iterator[RedisServer]:
    """`start_redis()`, stopped (SIGTERM, then SIGKILL) when the block ends."""
    server = start_redis(deploy, workdir, pki)
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ nginx


def set_directive(text: str, name: str, value: str, *, count: int = 1) -> str:
    """Replace the value of every `name ...;` directive line of an nginx file; exactly
    `count` must exist."""
    pattern = re.compile(rf"^(\s*){re.escape(name)}\s[^;]*;", re.MULTILINE)
    found = len(pattern.findall(text))
    if found != count:
        raise ValueError(f"{found} `{name}` directives in the site, expected {count}")
    return pattern.sub(lambda match: f"{match.group(1)}{name} {value};", text)


def site_for_test(
    site: str,
    *,
    port: int,
    node_ports: Sequence[int],
    cert_file: Path,
    key_file: Path,
    nodes_ca: Path,
    logs: Path,
) -> str:
    """The rendered site with this machine's listening port, nodes, files and logs. The
    upstream's `server` lines are replaced by one per node port; nothing else changes."""
    upstream = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+;\n", re.MULTILINE)
    indent = upstream.findall(site)
    if not indent:
        raise ValueError("no `server 127.0.0.1:PORT;` lines in the site's upstream")
    lines = "".join(f"{indent[0]}server {HOST}:{node};\n" for node in node_ports)
    site = upstream.sub("", site)
    site = re.sub(r"(\n\s*least_conn;\n)", lambda m: m.group(1) + lines, site, count=1)
    listen = re.compile(r"^(\s*)listen [^;]*;\n", re.MULTILINE)
    if len(listen.findall(site)) != 2:
        raise ValueError("expected the site's two `listen` lines (IPv4 and IPv6)")
    site = listen.sub("", site, count=1)
    site = listen.sub(lambda m: f"{m.group(1)}listen {HOST}:{port} ssl;\n", site)
    site = set_directive(site, "ssl_certificate", str(cert_file))
    site = set_directive(site, "ssl_certificate_key", str(key_file))
    site = set_directive(site, "proxy_ssl_trusted_certificate", str(nodes_ca))
    access = re.search(r"^\s*access_log \S+ (\S+);", site, re.MULTILINE)
    if access is None:
        raise ValueError("no access_log with a format in the site")
    site = set_directive(site, "access_log", f"{logs / 'access.log'} {access.group(1)}")
    return set_directive(site, "error_log", f"{logs / 'error.log'} info")


@dataclass
class NginxServer:
    """nginx serving the rendered site on 127.0.0.1:`port`, proxying to `node_ports`."""

    prefix: Path
    conf: Path
    site: Path
    port: int
    node_ports: tuple[int, ...]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    def test_config(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` of the site as prepared (whatever the exit code)."""
        args = [tool_path(NGINX), "-t", "-p", f"{self.prefix}/", "-c", str(self.conf),
                "-e", str(self.prefix / "logs" / "test.log")]  # fmt: skip
        return subprocess.run(  # noqa: S603 - nginx, our arguments
            args, capture_output=True, text=True, timeout=STOP_SECONDS, check=False
        )

    def start(self) -> None:
        args = [
            tool_path(NGINX),
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.conf),
            "-e",
            str(self.prefix / "logs" / "startup.log"),
            "-g",
            "daemon off;",
        ]
        self.process = _spawn(args, self.prefix / "logs" / "nginx.out")
        try:
            _wait_listening(self.process, self.port, self.prefix / "logs" / "nginx.out")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{_tail(self.prefix / 'logs' / 'startup.log')}") from None

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown) by PID, bounded, then SIGKILL."""
        if self.process is not None:
            _end(self.process)


def main_conf(prefix: Path, site: Path) -> str:
    """A minimal nginx.conf around the site, as Debian's includes sites-enabled/."""
    temp = prefix / "temp"
    return "\n".join(
        [
            "worker_processes 1;",
            f"pid {prefix / 'nginx.pid'};",
            f"error_log {prefix / 'logs' / 'global-error.log'} info;",
            "events { worker_connections 1024; }",
            "http {",
            *(
                f"    {kind}_temp_path {temp / kind};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            f"    include {site};",
            "}",
            "",
        ]
    )


def prepare_nginx(
    deploy: Path,
    workdir: Path,
    pki: Pki,
    *,
    node_ports: Sequence[int],
    nodes_ca: Path | None = None,
) -> NginxServer:
    """The files of nginx with the rendered `deploy/nginx/*.conf` site on a free port, a
    certificate from `pki` for localhost/127.0.0.1, verifying the nodes against `nodes_ca`
    (default: `pki.ca_file`); not started."""
    (site_file,) = (deploy / "nginx").glob("*.conf")
    prefix = workdir
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    cert_file, key_file = pki.issue("proxy")
    port = free_port()
    site = prefix / site_file.name
    site.write_text(
        site_for_test(
            site_file.read_text(),
            port=port,
            node_ports=node_ports,
            cert_file=cert_file,
            key_file=key_file,
            nodes_ca=nodes_ca or pki.ca_file,
            logs=prefix / "logs",
        )
    )
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, site))
    return NginxServer(prefix, conf, site, port, tuple(node_ports))


def start_nginx(
    deploy: Path,
    workdir: Path,
    pki: Pki,
    *,
    node_ports: Sequence[int],
    nodes_ca: Path | None = None,
) -> NginxServer:
    """`prepare_nginx()`, started; returns once it listens."""
    server = prepare_nginx(deploy, workdir, pki, node_ports=node_ports, nodes_ca=nodes_ca)
    server.start()
    return server


@contextmanager
def nginx_server(
    deploy: Path,
    workdir: Path,
    pki: Pki,
    *,
    node_ports: Sequence[int],
    nodes_ca: Path | None = None,
) -> Iterator[NginxServer]:
    """`start_nginx()`, stopped when the block ends."""
    server = start_nginx(deploy, workdir, pki, node_ports=node_ports, nodes_ca=nodes_ca)
    try:
        yield server
    finally:
        server.stop()

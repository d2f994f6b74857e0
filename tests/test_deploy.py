"""The deployment files rendered into every project (`deploy/`), each run for real on
127.0.0.1: the nginx site in front of two production nodes (`<script> serve`), the Redis
configuration with its ACL users, and the systemd unit under systemd's own analysis.

Clients: raw TLS sockets from this process, and python-socketio clients run by the rendered
project's Python (deploy_client.py). Servers: services.py, stopped by PID.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import services
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from services import HOST, NginxServer, Pki, RedisServer, free_port, nginx_server, redis_server

from harness import PACKAGE, SCRIPT, make_venv, render, tool, tooling

ENV_PREFIX = PACKAGE.upper() + "_"
CLIENT = Path(__file__).parent / "deploy_client.py"
SANDBOX = Path(__file__).parent / "sandbox_exec.py"
ORIGIN = "https://app.example.com"  # the default answer's allowed origin
ISSUER = "https://auth.example.com/"
START_SECONDS = 30.0
STOP_SECONDS = 10.0
MAX_EXPOSURE = 2.0

pytestmark = [
    pytest.mark.timeout(300),
    # The refused old versions are offered on purpose.
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning"),
]


@dataclass(frozen=True)
class Project:
    path: Path
    venv: Path

    @property
    def deploy(self) -> Path:
        return self.path / "deploy"

    @property
    def site(self) -> str:
        return (self.deploy / "nginx" / f"{SCRIPT}.conf").read_text()


@pytest.fixture(scope="module", autouse=True)
def servers_installed() -> None:
    missing = services.missing_tools()
    # Never skipped: scripts/test installs them (scripts/system-packages); where it could
    # not, these tests fail and say what to install.
    assert not missing, f"not installed: {missing} (scripts/system-packages installs them)"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def project(workdir: Path) -> Project:
    path = render(workdir / "project")
    return Project(path, make_venv(path))


@pytest.fixture(scope="module")
def pki(workdir: Path) -> Pki:
    return Pki.create(workdir / "pki")


@pytest.fixture(scope="module")
def signing_key(workdir: Path) -> tuple[Path, Path]:
    """An RS256 key pair: the nodes hold the public key, the test clients sign."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    private, public = workdir / "jwt-private.pem", workdir / "jwt-public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def directive(conf: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{re.escape(name)}\s+([^;]*);", conf, re.MULTILINE)


# ------------------------------------------------------------------ nodes and proxy


@dataclass
class Node:
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def security_lines(self, event: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if f" security {event} " in line]


@pytest.fixture(scope="module")
def node_env(project: Project, pki: Pki, signing_key: tuple[Path, Path]) -> dict[str, str]:
    """The environment of a production node, with node.env.example's settings: a
    certificate for the name nginx verifies, the proxy's address as the only one whose
    forwarded headers count."""
    (name,) = directive(project.site, "proxy_ssl_name")
    cert, key = pki.issue("node", names=(name, "localhost"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(
        {
            ENV_PREFIX + "ENVIRONMENT": "production",
            ENV_PREFIX + "TLS_CERT_FILE": str(cert),
            ENV_PREFIX + "TLS_KEY_FILE": str(key),
            ENV_PREFIX + "JWT_PUBLIC_KEY_FILE": str(signing_key[1]),
            ENV_PREFIX + "FORWARDED_ALLOW_IPS": HOST,
            # The proxy's per-address cap is under test: the nodes' own is set above it.
            ENV_PREFIX + "MAX_CONNECTIONS_PER_ADDRESS": "500",
            ENV_PREFIX + "CONNECT_TIMEOUT_SECONDS": "30",
        }
    )
    return env


@contextmanager
def running_node(
    project: Project, env: dict[str, str], log: Path, wrapper: Sequence[str] = ()
) -> Iterator[Node]:
    """`<script> serve --port P` as the unit starts it (behind `wrapper`, if any), stopped
    by its PID."""
    port = free_port()
    command = [
        *wrapper,
        str(tool(project.venv, SCRIPT)),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - the project's own command
            command, cwd=log.parent, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    node = Node(port, log, process)
    try:
        wait_listening(node)
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)


@pytest.fixture(scope="module")
def nodes(project: Project, node_env: dict[str, str], workdir: Path) -> Iterator[list[Node]]:
    """Two production nodes."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(running_node(project, node_env, workdir / f"node-{index}.log"))
            for index in range(2)
        ]


def wait_listening(node: Node) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if node.process.poll() is not None:
            pytest.fail(f"serve exited {node.process.returncode}:\n{node.log.read_text()}")
        try:
            socket.create_connection((HOST, node.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not listen in {START_SECONDS} s:\n{node.log.read_text()}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def proxy(project: Project, pki: Pki, nodes: list[Node], workdir: Path) -> Iterator[NginxServer]:
    """The site in front of one node: clients that chat meet on it (without a message
    queue, a room's members on another node would not get its messages)."""
    with nginx_server(project.deploy, workdir / "nginx", pki, node_ports=[nodes[0].port]) as server:
        yield server


@pytest.fixture(scope="module")
def proxy_two(
    project: Project, pki: Pki, nodes: list[Node], workdir: Path
) -> Iterator[NginxServer]:
    """The site in front of both nodes."""
    with nginx_server(
        project.deploy, workdir / "nginx-two", pki, node_ports=[node.port for node in nodes]
    ) as server:
        yield server


def run_client(project: Project, command: str, cfg: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603 - the project's Python, our script
        [str(tool(project.venv, "python")), str(CLIENT), command, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def chat(
    project: Project,
    port: int,
    pki: Pki,
    key: Path,
    source: str,
    *,
    expect_message: bool = True,
    **headers: str,
) -> dict[str, Any]:
    """Two clients (alice, bob) from `source` join a room at https://localhost:`port`;
    alice sends, bob receives."""
    cfg = {
        "url": f"https://localhost:{port}",
        "ca": str(pki.ca_file),
        "key": str(key),
        "issuer": ISSUER,
        "audience": SCRIPT,
        "algorithm": "RS256",
        "origin": ORIGIN,
        "source": source,
        "headers": headers,
        "expect_message": expect_message,
    }
    return run_client(project, "chat", cfg)


def tls_client(
    port: int, ca_file: Path, source: str = HOST, *, context: ssl.SSLContext | None = None
) -> ssl.SSLSocket:
    context = context or ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection((HOST, port), timeout=10, source_address=(source, 0))
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def http_request(
    port: int,
    ca_file: Path,
    target: str,
    *,
    method: str = "GET",
    source: str = HOST,
    headers: dict[str, str] | None = None,
    keep: list[ssl.SSLSocket] | None = None,
) -> tuple[int, str]:
    """One HTTP/1.1 request over TLS; (status, head). With `keep`, the socket stays open
    there (an upgraded websocket, say)."""
    sock = tls_client(port, ca_file, source)
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: localhost:{port}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
        "",
        "",
    ]
    sock.sendall("\r\n".join(lines).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    if keep is None:
        sock.close()
    else:
        keep.append(sock)
    text = head.decode(errors="replace")
    return int(text.split(" ", 2)[1]), text


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Origin": ORIGIN,
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


# ------------------------------------------------------------------ systemd


def unit_for_analysis(project: Project, directory: Path) -> Path:
    """The rendered unit as an instance file, its ExecStart pointing at the project's real
    console script (systemd-analyze checks that the program exists)."""
    text = (project.deploy / "systemd" / f"{SCRIPT}@.service").read_text()
    installed = f"/opt/{SCRIPT}/.venv/bin/{SCRIPT}"
    assert f"ExecStart={installed} serve" in text
    directory.mkdir(exist_ok=True)
    unit = directory / f"{SCRIPT}@8001.service"
    unit.write_text(text.replace(installed, str(tool(project.venv, SCRIPT))))
    return unit


def test_systemd_unit_passes_systemd_analyze_verify(project: Project, workdir: Path) -> None:
    """The unit parses and every directive is known to systemd 252 (Debian 12)."""
    unit = unit_for_analysis(project, workdir / "systemd-verify")
    result = subprocess.run(  # noqa: S603
        [services.tool_path("systemd-analyze"), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_systemd_unit_sandbox_is_rated_at_most_2(project: Project, workdir: Path) -> None:
    """`systemd-analyze security` (offline, on the file) rates the unit's exposure at most
    2.0 of 10, and `--threshold` agrees."""
    unit = unit_for_analysis(project, workdir / "systemd-security")
    result = subprocess.run(  # noqa: S603
        [
            services.tool_path("systemd-analyze"),
            "security",
            "--offline=yes",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"systemd-analyze security: {found.group(1)}")
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout


def test_systemd_unit_runs_serve_and_reloads_with_sighup(project: Project) -> None:
    text = (project.deploy / "systemd" / f"{SCRIPT}@.service").read_text()
    assert f"ExecStart=/opt/{SCRIPT}/.venv/bin/{SCRIPT} serve --port %i" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "Restart=on-failure" in text
    assert f"EnvironmentFile=/etc/{SCRIPT}/node.env" in text


def sandboxed(project: Project, workdir: Path) -> list[str]:
    unit = unit_for_analysis(project, workdir / "systemd-sandbox")
    return [sys.executable, str(SANDBOX), str(unit), "--"]


@pytest.mark.parametrize(
    ("code", "refusal"),
    [
        (
            "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)",
            "PermissionError",
        ),
        ("import os; os.setuid(0)", "PermissionError"),
        ("import os; os.setpriority(os.PRIO_PROCESS, 0, 1)", "PermissionError"),
        (
            "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
            "Address family not supported",
        ),
        (
            "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
            "Address family not supported",
        ),
    ],
)
def test_sandbox_emulation_refuses_what_the_unit_forbids(
    project: Project, workdir: Path, code: str, refusal: str
) -> None:
    """Control of the next test: the unit's filters, as sandbox_exec.py loads them, refuse
    writable executable memory (MemoryDenyWriteExecute), @privileged and @resources, and
    address families other than IPv4, IPv6 and Unix sockets."""
    result = subprocess.run(  # noqa: S603
        [*sandboxed(project, workdir), str(tool(project.venv, "python")), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stderr
    assert refusal in result.stderr, result.stderr


def test_node_serves_under_the_units_seccomp_filters(
    project: Project,
    node_env: dict[str, str],
    pki: Pki,
    signing_key: tuple[Path, Path],
    workdir: Path,
) -> None:
    """A node started under the unit's SystemCallFilter and MemoryDenyWriteExecute (as
    seccomp filters, the way systemd 252 loads them) starts (cryptography reads its
    certificate, ctypes restricts the TLS groups), serves TLS and verifies RS256 tokens:
    Python's ssl, cryptography (Rust, cffi) and uvicorn need no writable code."""
    log = workdir / "node-sandboxed.log"
    with running_node(project, node_env, log, sandboxed(project, workdir)) as node:
        answer = chat(project, node.port, pki, signing_key[0], "127.0.0.10")
    assert [m["text"] for m in answer["received"]] == ["through nginx"], answer
    assert "Operation not permitted" not in log.read_text()


# ------------------------------------------------------------------ nginx in front of nodes


def test_messages_flow_through_the_proxy_and_the_node_sees_the_real_client(
    project: Project,
    proxy: NginxServer,
    pki: Pki,
    nodes: list[Node],
    signing_key: tuple[Path, Path],
) -> None:
    """C12 behind nginx: two clients from 127.0.0.2 chat through the proxy over TLS; the
    nodes log 127.0.0.2 (nginx reaches them from 127.0.0.1)."""
    answer = chat(project, proxy.port, pki, signing_key[0], "127.0.0.2")
    assert answer["transport"] == "websocket"
    assert all(ack["ok"] for ack in answer["acks"]), answer
    assert [m["text"] for m in answer["received"]] == ["through nginx"], answer
    connected = [line for node in nodes for line in node.security_lines("connected")]
    assert len(connected) >= 2, connected
    assert all("client=127.0.0.2" in line for line in connected), connected


def test_upstream_spreads_connections_over_the_nodes(
    project: Project,
    proxy_two: NginxServer,
    pki: Pki,
    nodes: list[Node],
    signing_key: tuple[Path, Path],
) -> None:
    """least_conn, no stickiness needed (websocket-only): two clients open at once land on
    two nodes, each of which sees the client's own address."""
    before = [len(node.security_lines("connected")) for node in nodes]
    chat(project, proxy_two.port, pki, signing_key[0], "127.0.0.9", expect_message=False)
    new = [
        node.security_lines("connected")[count:] for node, count in zip(nodes, before, strict=True)
    ]
    assert [len(lines) for lines in new] == [1, 1], new
    assert all("client=127.0.0.9" in lines[0] for lines in new), new


def test_spoofed_forwarded_for_does_not_become_the_client_address(
    project: Project,
    proxy: NginxServer,
    pki: Pki,
    nodes: list[Node],
    signing_key: tuple[Path, Path],
) -> None:
    """C12: nginx overwrites X-Forwarded-For; what a client sends never reaches a node."""
    before = sum(len(node.security_lines("connected")) for node in nodes)
    answer = chat(
        project,
        proxy.port,
        pki,
        signing_key[0],
        "127.0.0.3",
        **{"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
    )
    assert answer["received"], answer
    connected = [line for node in nodes for line in node.security_lines("connected")][before:]
    lines = [line for node in nodes for line in node.security_lines("connected")]
    assert len(lines) - before == 2, lines
    assert not any(
        "203.0.113.9" in line for node in nodes for line in node.log.read_text().splitlines()
    )
    assert sum("client=127.0.0.3" in line for line in lines) == 2, connected


def access_lines(proxy: NginxServer, marker: str, count: int = 1) -> list[str]:
    """The access-log lines holding `marker` (a User-Agent), once `count` are written:
    nginx writes a line when the request ends, after its response."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in proxy.access_log.read_text().splitlines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count, lines
            return lines
        time.sleep(0.02)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in node that records the request headers nginx sends it."""

    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.seen.append(headers)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recording_node(node_env: dict[str, str]) -> Iterator[tuple[int, list[dict[str, list[str]]]]]:
    """A TLS server with the nodes' certificate on a free port, recording headers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        node_env[ENV_PREFIX + "TLS_CERT_FILE"], node_env[ENV_PREFIX + "TLS_KEY_FILE"]
    )
    server = http.server.ThreadingHTTPServer((HOST, 0), _Recorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_SECONDS)


@pytest.mark.parametrize(
    ("target", "headers"),
    [("/healthz", {}), ("/socket.io/?EIO=4&transport=websocket", UPGRADE)],
)
def test_proxy_sends_the_client_address_alone_and_the_clients_host_and_origin(
    project: Project,
    pki: Pki,
    workdir: Path,
    target: str,
    headers: dict[str, str],
    recording_node: tuple[int, list[dict[str, list[str]]]],
) -> None:
    """C12, C03: whatever forwarding headers a client sends, a node gets X-Forwarded-For
    = the client's address alone (overwritten, not appended to), X-Forwarded-Proto https,
    no Forwarded or X-Real-IP, and the client's own Host and Origin."""
    port, seen = recording_node
    spoofed = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "http",
        "Forwarded": "for=203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "Origin": ORIGIN,
    }
    with nginx_server(
        project.deploy, workdir / f"nginx-recording-{len(target)}", pki, node_ports=[port]
    ) as server:
        status, head = http_request(
            server.port, pki.ca_file, target, source="127.0.0.11", headers={**headers, **spoofed}
        )
    assert status == 200, head
    (got,) = seen
    assert got["x-forwarded-for"] == ["127.0.0.11"], got
    assert got["x-forwarded-proto"] == ["https"], got
    assert "forwarded" not in got, got
    assert "x-real-ip" not in got, got
    assert "x-forwarded-host" not in got, got
    assert got["host"] == [f"localhost:{server.port}"], got
    assert got["origin"] == [ORIGIN], got


@pytest.mark.parametrize(
    ("target", "method", "headers"),
    [
        ("/socket.io/?EIO=4&transport=polling", "GET", {}),
        ("/socket.io/?EIO=4", "GET", {}),
        ("/socket.io/?EIO=4&transport=polling", "POST", {"Content-Length": "0"}),
        ("/socket.io/?EIO=4&transport=websocket", "GET", {}),  # no Upgrade header
        ("/socket.io/?EIO=4", "GET", UPGRADE),  # no transport: engineio's polling
        ("/socket.io/?EIO=4&transport=websocket", "POST", {**UPGRADE, "Content-Length": "0"}),
        ("/socket.io/?EIO=3&transport=websocket", "GET", UPGRADE),
        ("/socket.io/?EIO=4&transport=websocket&transport=polling", "GET", UPGRADE),
        ("/socket.io/?EIO=4&Transport=websocket&transport=polling", "GET", UPGRADE),
        ("/socket.io/?EIO=4&transport=websocket&tr%61nsport=polling", "GET", UPGRADE),
        ("/socket.io/other?EIO=4&transport=websocket", "GET", UPGRADE),
    ],
)
def test_polling_and_other_socketio_requests_are_refused_at_the_proxy(
    proxy: NginxServer, pki: Pki, target: str, method: str, headers: dict[str, str]
) -> None:
    """C02 at the proxy: 400 from nginx, and the access log shows no upstream was asked."""
    agent = secrets.token_hex(8)
    status, head = http_request(
        proxy.port,
        pki.ca_file,
        target,
        method=method,
        source="127.0.0.5",
        headers={**headers, "User-Agent": agent},
    )
    assert status == 400, head
    assert "strict-transport-security: max-age=63072000" in head.lower(), head
    (line,) = access_lines(proxy, agent)
    assert f'"{method} {target.partition("?")[0]} ' in line, line
    assert " 400 " in line, line
    assert "upstream=- " in line, line


def test_websocket_upgrade_and_health_check_pass_the_proxy(proxy: NginxServer, pki: Pki) -> None:
    """The one websocket request is passed (101 from a node), /healthz too, each answer
    with one HSTS header; the access log holds no query string."""
    agent = secrets.token_hex(8)
    kept: list[ssl.SSLSocket] = []
    status, head = http_request(
        proxy.port,
        pki.ca_file,
        "/socket.io/?EIO=4&transport=websocket&secret=hunter2",
        headers={**UPGRADE, "User-Agent": agent},
        source="127.0.0.6",
        keep=kept,
    )
    for sock in kept:
        sock.close()
    assert status == 101, head
    status, head = http_request(
        proxy.port, pki.ca_file, "/healthz", source="127.0.0.6", headers={"User-Agent": agent}
    )
    assert status == 200, head
    assert head.lower().count("strict-transport-security: max-age=63072000") == 1, head
    websocket, health = access_lines(proxy, agent, count=2)
    assert re.search(r'"GET /socket.io/ HTTP/1.1" 101 .* upstream=127\.0\.0\.1:\d+ ', websocket)
    assert re.search(r'"GET /healthz HTTP/1.1" 200 .* upstream=127\.0\.0\.1:\d+ ', health)
    log = proxy.access_log.read_text()
    assert "hunter2" not in log
    assert "EIO=" not in log


def test_proxy_refuses_request_bodies_and_oversized_headers(proxy: NginxServer, pki: Pki) -> None:
    """Size limits at the proxy: a body over 1 KiB (413) and a header over the header
    buffers (400) are refused by nginx, before any node."""
    status, head = http_request(
        proxy.port,
        pki.ca_file,
        "/healthz",
        method="GET",
        headers={"Content-Length": "2048"},
        source="127.0.0.12",
    )
    assert status == 413, head
    status, head = http_request(
        proxy.port, pki.ca_file, "/healthz", source="127.0.0.12", headers={"X-Padding": "a" * 9000}
    )
    assert status == 400, head


def test_per_address_connection_cap_is_enforced_by_the_proxy(
    proxy: NginxServer, pki: Pki, project: Project
) -> None:
    """C11 with several nodes: `limit_conn` caps open websockets per client address
    (the nodes' own cap is set higher here); past it, 429 from nginx."""
    (cap,) = (int(v.split()[1]) for v in directive(project.site, "limit_conn"))
    kept: list[ssl.SSLSocket] = []

    def upgrade(source: str, *, keep: bool = True) -> tuple[int, str]:
        return http_request(
            proxy.port,
            pki.ca_file,
            "/socket.io/?EIO=4&transport=websocket",
            headers=UPGRADE,
            source=source,
            keep=kept if keep else None,
        )

    try:
        for _ in range(cap):
            status, head = upgrade("127.0.0.7")
            assert status == 101, head
        status, head = upgrade("127.0.0.7", keep=False)
        assert status == 429, head
        # Another address is not affected.
        status, head = upgrade("127.0.0.8")
        assert status == 101, head
    finally:
        for sock in kept:
            sock.close()
    assert "limiting connections by zone" in proxy.error_log.read_text()


def test_proxy_read_timeout_exceeds_ping_interval_plus_timeout(project: Project) -> None:
    """An idle connection answers Engine.IO pings only: nginx must wait longer than the
    ping interval plus the ping timeout (the nodes' defaults) before it cuts it."""
    probe = subprocess.run(  # noqa: S603
        [
            str(tool(project.venv, "python")),
            "-c",
            f"from {PACKAGE}.settings import Settings as S; f = S.model_fields; "
            "print(f['ping_interval_seconds'].default + f['ping_timeout_seconds'].default)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    heartbeat = float(probe.stdout)
    location = project.site.split("location = /socket.io/ {", 1)[1].split("\n    }\n", 1)[0]
    (read_timeout,) = directive(location, "proxy_read_timeout")
    seconds = int(read_timeout.removesuffix("s"))
    print(f"proxy_read_timeout {seconds} s, ping interval + timeout {heartbeat} s")
    assert seconds > heartbeat


def protocol_context(ca_file: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client can offer it
    return context


def handshake(port: int, ca_file: Path, version: ssl.TLSVersion) -> str:
    try:
        with tls_client(port, ca_file, context=protocol_context(ca_file, version)) as sock:
            return str(sock.version())
    except ssl.SSLError as exc:
        return f"refused: {exc.reason}"


def test_proxy_tls_profile_intermediate(proxy: NginxServer, pki: Pki) -> None:
    """C01 at the proxy: TLS 1.2 and 1.3; TLS 1.1 and 1.0 refused by the server (its
    protocol-version alert), a CBC suite under TLS 1.2 too."""
    assert handshake(proxy.port, pki.ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert handshake(proxy.port, pki.ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        assert handshake(proxy.port, pki.ca_file, old) == "refused: TLSV1_ALERT_PROTOCOL_VERSION"
    context = protocol_context(pki.ca_file, ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        tls_client(proxy.port, pki.ca_file, context=context).close()


def test_proxy_key_exchange_groups_are_the_profiles(proxy: NginxServer, pki: Pki) -> None:
    """C01 at the proxy: X25519, P-256 and P-384 only (`ssl_ecdh_curve`); a client that
    offers nothing but P-521 or X448 (OpenSSL's defaults include both) is refused. Under
    TLS 1.3, where the groups are about the key exchange alone (under TLS 1.2 they also
    name the curves of ECDSA certificates the client accepts)."""
    version = ssl.TLSVersion.TLSv1_3
    for group, accepted in (("X25519", True), ("prime256v1", True), ("secp384r1", True),
                            ("secp521r1", False), ("X448", False)):  # fmt: skip
        context = protocol_context(pki.ca_file, version)
        context.set_ecdh_curve(group)  # the one group this client offers
        try:
            tls_client(proxy.port, pki.ca_file, context=context).close()
            outcome = True
        except ssl.SSLError:
            outcome = False
        assert outcome is accepted, (group, version)


def test_proxy_tls_profile_modern(workdir: Path, pki: Pki) -> None:
    """C01 at the proxy of a project rendered `modern`: TLS 1.3 only."""
    modern = render(workdir / "modern", tls_profile="modern")
    with nginx_server(
        modern / "deploy", workdir / "nginx-modern", pki, node_ports=[free_port()]
    ) as server:
        assert handshake(server.port, pki.ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        for old in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_1):
            assert (
                handshake(server.port, pki.ca_file, old) == "refused: TLSV1_ALERT_PROTOCOL_VERSION"
            )
    redis_conf = (modern / "deploy" / "redis" / "redis.conf").read_text()
    assert 'tls-protocols "TLSv1.3"' in redis_conf
    assert (
        "proxy_ssl_protocols TLSv1.3;"
        in (modern / "deploy" / "nginx" / f"{SCRIPT}.conf").read_text()
    )


def test_proxy_refuses_a_node_whose_certificate_it_cannot_verify(
    project: Project, nodes: list[Node], workdir: Path
) -> None:
    """Re-encryption is verified: with another CA as the nodes' trust, nginx refuses to
    pass anything (502) rather than talk to an unverified node."""
    other = Pki.create(workdir / "other-pki", name="another CA")
    with nginx_server(
        project.deploy, workdir / "nginx-other-ca", other, node_ports=[nodes[0].port]
    ) as server:
        status, head = http_request(server.port, other.ca_file, "/healthz")
    assert status == 502, head
    assert "upstream SSL certificate verify error" in server.error_log.read_text()


LONGEST_NAME = "Secret Password Key-Pass_0123456789abcdef"[:40]


def test_files_of_an_awkward_project_name_load(workdir: Path, pki: Pki) -> None:
    """The longest project name, made of words a secret scanner looks for: the project's
    detect-secrets finds nothing in deploy/, nginx accepts the site (`nginx -t`), Redis
    starts with the ACL users, systemd verifies the unit."""
    project = render(workdir / "awkward", project_name=LONGEST_NAME)
    deploy = project / "deploy"
    scan = subprocess.run(  # noqa: S603 - the template's detect-secrets, rendered files
        [str(tooling("detect-secrets-hook")), *(str(f) for f in deploy.rglob("*") if f.is_file())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert scan.returncode == 0, scan.stdout
    nginx = services.prepare_nginx(deploy, workdir / "nginx-awkward", pki, node_ports=[1])
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
    with redis_server(deploy, workdir / "redis-awkward", pki) as server:
        assert server.cli("ACL", "WHOAMI").stdout.strip() == "ops"
    (unit,) = (deploy / "systemd").glob("*@.service")
    script = unit.name.removesuffix("@.service")
    verified = workdir / "awkward-unit" / unit.name.replace("@.service", "@8001.service")
    verified.parent.mkdir()
    fake = verified.parent / script
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    verified.write_text(unit.read_text().replace(f"/opt/{script}/.venv/bin/{script}", str(fake)))
    check = subprocess.run(  # noqa: S603
        [services.tool_path("systemd-analyze"), "verify", "--man=no", str(verified)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr


# ------------------------------------------------------------------ redis


@pytest.fixture(scope="module")
def redis(project: Project, pki: Pki, workdir: Path) -> Iterator[RedisServer]:
    with redis_server(project.deploy, workdir / "redis", pki) as server:
        yield server


def test_redis_node_user_runs_its_commands_on_its_channel_and_keys_only(
    project: Project, redis: RedisServer
) -> None:
    """C19: the node user (redis-py 8.1's asyncio client, as the nodes connect) runs every
    command the nodes send on `<channel>` and `<channel>:*`, python-socketio's manager
    round-trips through it, and everything else is refused."""
    answer = run_client(
        project, "redis", {"url": redis.url, "ca": str(redis.ca_file), "channel": SCRIPT}
    )
    assert set(answer["allowed"].values()) == {"ok"}, answer
    assert set(answer["refused"].values()) == {"NOPERM"}, answer["refused"]
    assert answer["manager_round_trip"] == {"method": "emit", "event": "probe"}, answer


def test_redis_default_user_is_off_and_nothing_runs_unauthenticated(redis: RedisServer) -> None:
    assert "off" in redis.cli("ACL", "GETUSER", "default").stdout.split()
    with tls_client(redis.port, redis.ca_file) as sock:
        sock.sendall(b"PING\r\nAUTH default anything\r\n")
        time.sleep(0.2)
        answer = sock.recv(4096).decode()
    assert answer.startswith("-NOAUTH"), answer
    assert "WRONGPASS" in answer or "disabled" in answer, answer
    wrong = redis.cli("PING", user="node", password=secrets.token_urlsafe(16), check=False)
    assert "PONG" not in wrong.stdout


def test_redis_ops_user_maintains_but_cannot_flush_debug_or_reconfigure(
    redis: RedisServer,
) -> None:
    """The ops user inspects, rotates passwords and rewrites the AOF; it cannot flush,
    debug, reconfigure or list all keys with KEYS."""
    assert redis.cli("ACL", "WHOAMI").stdout.strip() == "ops"
    assert "redis_version:7." in redis.cli("INFO", "server").stdout
    assert "node" in redis.cli("ACL", "USERS").stdout.split()
    assert "rewriting" in redis.cli("BGREWRITEAOF").stdout
    # ACL DRYRUN asks the ACL alone, and runs nothing (SHUTDOWN included).
    refused = [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["DEBUG", "SLEEP", "0"],
        ["KEYS", "*"],
        ["CONFIG", "SET", "appendonly", "no"],
        ["SHUTDOWN"],
        ["MONITOR"],
        ["REPLICAOF", "127.0.0.1", "1"],
        ["MODULE", "LIST"],
    ]
    for command in refused:
        answer = redis.cli("ACL", "DRYRUN", "ops", *command).stdout
        assert "no permissions" in answer, (command, answer)
    for command in (["INFO"], ["ACL", "SETUSER", "node", "on"], ["BGREWRITEAOF"], ["SCAN", "0"]):
        assert redis.cli("ACL", "DRYRUN", "ops", *command).stdout.strip() == "OK", command


def test_redis_has_no_plaintext_port_and_keeps_data_across_restarts(redis: RedisServer) -> None:
    """TLS only (`port 0`; plain RESP on the TLS port gets no answer), AOF on: a key
    written before a restart is there after it."""
    assert redis.cli("CONFIG", "GET", "port").stdout.split() == ["port", "0"]
    assert redis.cli("CONFIG", "GET", "appendonly").stdout.split() == ["appendonly", "yes"]
    with socket.create_connection((HOST, redis.port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        try:
            data = plain.recv(100)
        except ConnectionResetError:
            data = b""
    assert b"PONG" not in data
    redis.cli("ZADD", f"{SCRIPT}:revoked", "1", "alice")
    redis.stop()
    redis.start()
    assert redis.cli("ZCARD", f"{SCRIPT}:revoked").stdout.strip() == "1"


def test_redis_refuses_to_start_with_a_placeholder_left_in_the_acl_file(
    project: Project, pki: Pki, workdir: Path
) -> None:
    """The ACL example is no usable file until its placeholders are replaced."""
    directory = workdir / "redis-placeholder"
    directory.mkdir()
    acl = directory / "users.acl"
    shutil.copy(project.deploy / "redis" / "users.acl.example", acl)
    server = RedisServer(
        config=project.deploy / "redis" / "redis.conf",
        acl_file=acl,
        data_dir=directory,
        log_file=directory / "redis.log",
        ca_file=pki.ca_file,
        cert_file=pki.directory / "redis-fullchain.pem",
        key_file=pki.directory / "redis-privkey.pem",
        port=free_port(),
        node_password=secrets.token_urlsafe(16),
        ops_password=secrets.token_urlsafe(16),
    )
    with pytest.raises(RuntimeError, match="exited 1"):
        server.start()
    assert "ACL" in server.log_file.read_text()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

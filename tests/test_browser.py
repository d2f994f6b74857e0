"""The browser example (examples/browser/) in real headless Chromium (C03, C06, the page's CSP).

One rendered project, its real `serve` (uvicorn, TLS from the project's dev CA) and its page
server `examples/browser/serve.py` twice: on a listed origin, https://app.test:PORT, and on
an unlisted one, https://evil.test:PORT (Chromium maps both names to 127.0.0.1; their
certificates come from the same dev CA). Debian's Chromium trusts that CA through its own
certificate store (an NSS database in a temporary HOME), never through a switch that turns
verification off; one test shows that without the CA in the store the page does not load.
A python-socketio client in the same room (tests/browser_peer.py, run by the project's own
Python) is the page's other party.

Costs: one render, one service, one Chromium for the module (and one more, briefly, for the
store test); every process is stopped by its PID when the module ends, failed or not.
`BROWSER_SCREENSHOT=docs/browser.png` makes the exchange test save the picture of the page
that docs/browser.md shows.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait
from services import Pki, free_port, running

from harness import ROOT, SCRIPT, make_venv, render, run, tool

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOOLS = (CHROMIUM, CHROMEDRIVER, Path("/usr/bin/certutil"))
PEER = Path(__file__).parent / "browser_peer.py"
EXAMPLE = ROOT / "template" / "examples" / "browser"
ENV_PREFIX = "SECURE_ROOMS_"
APP, EVIL = "app.test", "evil.test"
# Short enough that a test outlives the page's first token, long enough for a renewal at
# half of it to arrive with seconds to spare on a busy machine.
TOKEN_TTL = 5
WAIT = 15.0
ROOM = "lobby"
PAGE_SUBJECT = "browser-dev"  # serve.py's DEV_SUBJECT
BROWSER_ARGS = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=760,560",
    f"--host-resolver-rules=MAP {APP} 127.0.0.1, MAP {EVIL} 127.0.0.1",
    # Nothing of Chromium's own reaches the network: no updates, sync, or field trials.
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=OptimizationHints,MediaRouter,Translate",
)


@dataclass(frozen=True)
class Stack:
    project: Path
    env: dict[str, str]
    ca: Path
    service_port: int
    app_port: int
    evil_port: int
    service_log: Path

    @property
    def app(self) -> str:
        return f"https://{APP}:{self.app_port}"

    @property
    def evil(self) -> str:
        return f"https://{EVIL}:{self.evil_port}"

    @property
    def service(self) -> str:
        return f"https://localhost:{self.service_port}"

    def token(self, sub: str) -> str:
        venv = self.project / ".venv"
        result = run([tool(venv, SCRIPT), "token", "--sub", sub], cwd=self.project, env=self.env)
        return result.stdout.strip()


def wait_for_tls(port: int, name: str, ca: Path, log: Path) -> None:
    """Until a TLS handshake with `name`'s certificate succeeds on `port` (bounded)."""
    context = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
                context.wrap_socket(sock, server_hostname=name),
            ):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing serves {name}:{port}\n{log.read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = [str(path) for path in TOOLS if not path.is_file()]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (scripts/system-packages installs them)")
    project = render(tmp_path_factory.mktemp("browser") / "project")
    venv = make_venv(project)
    run([tool(venv, SCRIPT), "init-dev"], cwd=project)
    certs = project / "certs"
    ports = {name: free_port() for name in ("service", "app", "evil")}
    # Only the app page's origin is listed; serve and both page servers read the same
    # settings (the project's .env and this environment), as in development.
    env = {f"{ENV_PREFIX}CORS_ALLOWED_ORIGINS": f"https://{APP}:{ports['app']}"}
    logs = tmp_path_factory.mktemp("logs")
    python = tool(venv, "python")
    serve_py = project / "examples" / "browser" / "serve.py"
    service = f"https://localhost:{ports['service']}"
    with ExitStack() as stack:
        stack.enter_context(
            running([tool(venv, SCRIPT), "serve", "--port", str(ports["service"])],
                    logs / "service.log", cwd=project, env=env)
        )  # fmt: skip
        pki = Pki.load(certs)
        for name, host in (("app", APP), ("evil", EVIL)):
            cert, key = pki.issue(host, names=(host,), ips=())
            page = [python, serve_py, "--port", str(ports[name]), "--service", service,
                    "--cert", cert, "--key", key, "--ttl", str(TOKEN_TTL)]  # fmt: skip
            stack.enter_context(running(page, logs / f"{name}.log", cwd=project, env=env))
        ca = certs / "ca.pem"
        wait_for_tls(ports["service"], "localhost", ca, logs / "service.log")
        wait_for_tls(ports["app"], APP, ca, logs / "app.log")
        wait_for_tls(ports["evil"], EVIL, ca, logs / "evil.log")
        yield Stack(
            project, env, ca, ports["service"], ports["app"], ports["evil"], logs / "service.log"
        )


def nss_home(home: Path, ca: Path | None) -> Path:
    """A HOME whose NSS database (Chromium's certificate store on Linux) trusts `ca` to
    identify web sites, or nothing at all."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], cwd=home)
    if ca is not None:
        run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "dev CA", "-i", ca],
            cwd=home)  # fmt: skip
    return home


@contextmanager
def chromium(home: Path) -> Iterator[WebDriver]:
    """Debian's Chromium through its chromedriver, both by path: Selenium Manager, which
    would look for drivers on the network, never runs."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in BROWSER_ARGS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = {**os.environ, "HOME": str(home), "SE_OFFLINE": "true"}
    service = Service(str(CHROMEDRIVER), env=env, log_output=str(home / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium reads it in this process too
        with chromium(nss_home(tmp_path_factory.mktemp("home"), stack.ca)) as driver:
            yield driver


class Page:
    """The example page in the browser, read through its DOM: the status line and the log,
    whose entries carry their kind (`data-kind`: connected, joined, message, renewed, csp...)."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        driver.get(url)
        self.until(lambda: self.state() in ("connected", "error"), "the page did not start")

    def until(self, condition: Any, message: str, seconds: float = WAIT) -> Any:
        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.1).until(
                lambda _: condition()
            )
        except Exception as exc:
            raise AssertionError(f"{message}; the page's log:\n{self.log_text()}") from exc

    def state(self) -> str | None:
        found = self.driver.find_elements(By.ID, "status")
        return found[0].get_attribute("data-state") if found else None

    def sid(self) -> str | None:
        return self.driver.find_element(By.ID, "status").get_attribute("data-sid")

    def entries(self, kind: str) -> list[str]:
        items = self.driver.find_elements(By.CSS_SELECTOR, f'#log li[data-kind="{kind}"]')
        return [item.text for item in items]

    def log_text(self) -> str:
        return "\n".join(
            item.text for item in self.driver.find_elements(By.CSS_SELECTOR, "#log li")
        )

    def wait_entry(self, kind: str, text: str = "") -> str:
        return str(
            self.until(
                lambda: next((entry for entry in self.entries(kind) if text in entry), None),
                f"no {kind} entry with {text!r}",
            )
        )

    def join(self, room: str) -> None:
        field = self.driver.find_element(By.ID, "room")
        field.clear()
        field.send_keys(room)
        self.driver.find_element(By.CSS_SELECTOR, "#join-form button").click()
        self.wait_entry("joined", room)

    def send(self, text: str) -> None:
        self.driver.find_element(By.ID, "text").send_keys(text)
        self.driver.find_element(By.CSS_SELECTOR, "#message-form button").click()
        self.wait_entry("sent", text)

    def console(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")]


class Peer:
    """A python-socketio client of the service in ROOM (tests/browser_peer.py)."""

    def __init__(self, stack: Stack, sub: str = "alice") -> None:
        cfg = {
            "url": stack.service,
            "ca": str(stack.ca),
            "token": stack.token(sub),
            "room": ROOM,
            "origin": stack.app,
        }
        self._process = subprocess.Popen(  # noqa: S603 - our helper, the project's Python
            [str(tool(stack.project / ".venv", "python")), str(PEER), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.expect("joined")["ok"] is True

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(json.loads(line))

    def expect(self, key: str, seconds: float = WAIT) -> Any:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if key in line:
                return line[key]
        stderr = self._process.stderr.read() if self._process.poll() is not None else ""
        raise AssertionError(f"the Python client got no {key!r} within {seconds} s {stderr}")

    def received(self) -> list[Any]:
        """What has arrived so far, without waiting."""
        lines = []
        while not self._lines.empty():
            lines.append(self._lines.get_nowait())
        return lines

    def send(self, text: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"send": text}) + "\n")
        self._process.stdin.flush()
        assert self.expect("ack")["ok"] is True

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)


@pytest.fixture
def peer(stack: Stack) -> Iterator[Peer]:
    member = Peer(stack)
    try:
        yield member
    finally:
        member.close()


def security_log(stack: Stack, event: str) -> list[str]:
    return [line for line in stack.service_log.read_text().splitlines() if f" {event} " in line]


def test_page_from_a_listed_origin_exchanges_messages_with_a_python_client(
    stack: Stack, browser: WebDriver, peer: Peer
) -> None:
    """C03 (the listed side): the page on https://app.test joins a room and talks with a
    python-socketio client both ways; text from the room is shown as text, not HTML."""
    page = Page(browser, stack.app)
    assert page.state() == "connected", page.log_text()
    assert "connected over websocket" in page.wait_entry("connected")
    page.join(ROOM)
    page.send("hello from the browser")
    message = peer.expect("message")
    assert {key: message[key] for key in ("room", "sub", "text")} == {
        "room": ROOM,
        "sub": PAGE_SUBJECT,
        "text": "hello from the browser",
    }
    markup = "<b>hello</b> from <img src=x> Python"
    peer.send(markup)
    assert page.wait_entry("message", markup).endswith(f"{ROOM} | alice: {markup}")
    assert not browser.find_elements(By.CSS_SELECTOR, "#log b, #log img")
    screenshot = os.environ.get("BROWSER_SCREENSHOT")
    if screenshot:
        browser.save_screenshot(screenshot)


def test_page_from_an_unlisted_origin_is_refused_on_its_origin(
    stack: Stack, browser: WebDriver, peer: Peer
) -> None:
    """C03: the same page from https://evil.test, an origin the service does not list, is
    refused on the Origin header the browser itself sends: the page shows the connect error
    (each of its retries is refused too), the security log names the origin, and the room
    hears nothing."""
    page = Page(browser, stack.evil)
    assert page.state() == "error", page.log_text()
    page.until(lambda: len(page.entries("error")) >= 2, "the page did not retry")
    assert all("connect error" in entry for entry in page.entries("error")), page.log_text()
    assert not page.entries("connected")
    refusals = security_log(stack, "connection_refused")
    assert any(
        "reason=origin_refused sub=- " in line and line.endswith(f" origin={stack.evil}")
        for line in refusals
    ), refusals
    assert not [line for line in peer.received() if "message" in line]


def test_expiring_token_is_renewed_with_reauth_on_the_same_connection(
    stack: Stack, browser: WebDriver, peer: Peer
) -> None:
    """C06: the page renews its 5-second token with `reauth` at half of its lifetime: past
    the first token's expiry the page is still on its first connection (same socket id, no
    disconnect, no notice), still exchanges messages, and the service logged
    `reauthenticated` for it."""
    before = len(security_log(stack, "reauthenticated"))
    page = Page(browser, stack.app)
    connected_at = time.monotonic()
    sid = page.sid()
    assert sid
    page.join(ROOM)
    # The first token was issued before the page connected: a second after TOKEN_TTL from
    # then, it has expired; by then the page renewed its session twice.
    page.until(
        lambda: (
            time.monotonic() - connected_at > TOKEN_TTL + 1 and len(page.entries("renewed")) >= 2
        ),
        "no second renewal",
        TOKEN_TTL * 3,
    )
    assert page.sid() == sid
    assert len(page.entries("connected")) == 1, page.log_text()
    assert not page.entries("disconnected") + page.entries("notice"), page.log_text()
    peer.send("still there?")
    page.wait_entry("message", "alice: still there?")
    page.send("yes")
    assert peer.expect("message")["text"] == "yes"
    renewed = security_log(stack, "reauthenticated")[before:]
    assert len([line for line in renewed if f"sub={PAGE_SUBJECT}" in line]) >= 2, renewed


def test_after_auth_expired_the_page_connects_again_with_a_fresh_token(
    stack: Stack, browser: WebDriver, peer: Peer
) -> None:
    """C06, the other way out: while /token cannot be reached the renewal fails, the session
    ends with `auth_expired`, and the page opens a new connection with a fresh token (the
    `auth` callback's), joins its room again and goes on talking."""
    page = Page(browser, stack.app)
    first = page.sid()
    page.join(ROOM)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/token"]})
    try:
        page.wait_entry("error", "renewal:")
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    page.wait_entry("notice", "auth_expired")
    page.until(lambda: len(page.entries("joined")) == 2, "no second join", TOKEN_TTL * 2)
    assert len(page.entries("connected")) == 2
    assert page.sid() not in (None, first)
    peer.send("welcome back")
    page.wait_entry("message", "alice: welcome back")
    ended = [line for line in security_log(stack, "session_ended") if "reason=auth_expired" in line]
    assert any(f"sub={PAGE_SUBJECT}" in line for line in ended), ended


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header, directive by directive."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} twice"
        parsed[name] = sources
    return parsed


def test_content_security_policy_allows_only_what_the_page_needs(
    stack: Stack, browser: WebDriver, peer: Peer
) -> None:
    """The page's header is exactly the minimal policy; the page connects, joins and talks
    under it without a single violation; and what the policy exists to stop is stopped and
    reported: an inline script injected into the page, a websocket to another origin."""
    page = Page(browser, stack.app)
    policy = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(location.href).then((r) => done(r.headers.get('content-security-policy')));"
    )
    assert directives(policy) == {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "connect-src": ["'self'", f"wss://localhost:{stack.service_port}"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    page.join(ROOM)
    page.send("under the policy")
    assert peer.expect("message")["text"] == "under the policy"
    assert page.entries("csp") == []
    assert not [line for line in page.console() if "Content Security Policy" in line]

    browser.execute_script(
        "const script = document.createElement('script');"
        "script.textContent = 'window.injected = true';"
        "document.head.append(script);"
    )
    page.wait_entry("csp", "script-src-elem")
    assert browser.execute_script("return window.injected === undefined")
    browser.execute_script(
        f"try {{ new WebSocket('wss://{EVIL}:{stack.evil_port}/'); }} catch {{}}"
    )
    page.wait_entry("csp", f"(connect-src) blocked wss://{EVIL}:{stack.evil_port}")


def test_without_the_dev_ca_in_its_store_the_browser_refuses_the_page(
    stack: Stack, tmp_path: Path
) -> None:
    """The other tests' Chromium trusts the dev CA only because its NSS store holds it:
    with an empty store the same page is a certificate error, and no script of it runs."""
    with chromium(nss_home(tmp_path / "home", None)) as driver:
        driver.get(stack.app)
        assert not driver.find_elements(By.ID, "log")
        assert "ERR_CERT_AUTHORITY_INVALID" in driver.page_source


class Scripts(HTMLParser):
    """The <script> and <link> elements of a page, and whether any inline code is there."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style" or "style" in attributes:
            self.inline.append(f"style in <{tag}>")
        self.inline += [f"{name} in <{tag}>" for name in attributes if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("an inline <script>")


def test_vendored_client_is_the_locked_release(tmp_path: Path) -> None:
    """The page loads socket.io-client's dist file from its own origin: that file is
    byte for byte the one in the tarball package-lock.json pins (npm ci checks the lock's
    sha512 integrity, from an empty cache of its own), package.json names one exact
    version, and index.html has no inline code and loads the client before app.js. (The
    SRI hash of index.html is the project's own test, tests/test_browser_example.py.)"""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("not installed: npm (Debian's npm package)")
    package = json.loads((EXAMPLE / "package.json").read_text())
    lock = json.loads((EXAMPLE / "package-lock.json").read_text())
    version = package["dependencies"]["socket.io-client"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "an exact version, not a range"
    assert lock["packages"]["node_modules/socket.io-client"]["version"] == version
    locked = [entry for name, entry in lock["packages"].items() if name]
    assert all(entry["integrity"].startswith("sha512-") for entry in locked)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=tmp_path,
        env={"npm_config_cache": str(tmp_path / "npm-cache")})  # fmt: skip
    released = tmp_path / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
    assert (EXAMPLE / "vendor" / "socket.io.min.js").read_bytes() == released.read_bytes()

    parser = Scripts()
    parser.feed((EXAMPLE / "index.html").read_text())
    assert parser.inline == []
    assert [script["src"] for script in parser.scripts] == ["vendor/socket.io.min.js", "app.js"]
    assert str(parser.scripts[0]["integrity"]).startswith("sha384-")


def post_token(stack: Stack, fetch_site: str) -> int:
    """The status of a POST /token to the app page server, as sent from `fetch_site`."""
    context = ssl.create_default_context(cafile=stack.ca)
    request = (
        f"POST /token HTTP/1.1\r\nHost: {APP}:{stack.app_port}\r\n"
        f"Sec-Fetch-Site: {fetch_site}\r\nContent-Length: 0\r\n\r\n"
    )
    with (
        socket.create_connection(("127.0.0.1", stack.app_port), timeout=WAIT) as sock,
        context.wrap_socket(sock, server_hostname=APP) as tls,
    ):
        tls.sendall(request.encode())
        return int(tls.recv(64).split()[1])


def test_page_server_gives_tokens_to_its_own_page_only(stack: Stack) -> None:
    """Another site's page can make a browser post to /token (not read the answer): the
    browser says so in `Sec-Fetch-Site`, and serve.py refuses."""
    assert post_token(stack, "cross-site") == 403
    assert post_token(stack, "same-site") == 403
    assert post_token(stack, "same-origin") == 200


def test_page_server_refuses_to_run_in_production(stack: Stack) -> None:
    """serve.py's /token signs for anyone who asks: outside development it does not start."""
    result = subprocess.run(  # noqa: S603 - the project's Python, its example
        [str(tool(stack.project / ".venv", "python")), "examples/browser/serve.py"],
        cwd=stack.project,
        env={**os.environ, **stack.env, f"{ENV_PREFIX}ENVIRONMENT": "production"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "development only" in result.stderr
    assert result.stdout == ""

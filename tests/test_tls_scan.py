"""C01 as a real TLS scanner sees it: sslyze holds a rendered server, started by the
project's own `init-dev` and `serve` commands, to the Mozilla profile it was rendered with.

The scan runs the checks of `sslyze --mozilla_config=<profile>` through sslyze's Python API:
exactly the scan commands its Mozilla checker needs, then that checker, against Mozilla's
guidelines as sslyze ships them. No finding is exempted. The one check a development server
could not pass, certificate path validation (its CA is in no public trust store), passes
because the scan is given the development CA that `init-dev` wrote, as
`--certinfo_ca_file` would: the chain is then really validated, up to that CA.

sslyze probes the elliptic-curve groups only; the rendered project's own tests refuse
finite-field (ffdhe) groups too (tests/test_tls.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

from harness import PACKAGE, PROFILES, SCRIPT, make_venv, render, run, tool

# The key-exchange groups both Mozilla profiles list, by sslyze's names.
PROFILE_GROUPS = {"X25519", "secp256r1", "secp384r1"}
ENV_PREFIX = PACKAGE.upper() + "_"
START_SECONDS = 30.0
STOP_SECONDS = 10.0
NETWORK_TIMEOUT_SECONDS = 5

# sslyze's bundled trust stores hold a root with a non-positive serial number, and
# cryptography warns when they load. That is about those stores, not the server scanned.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(project: Path, venv: Path, log: Path) -> Iterator[int]:
    """`serve` of a rendered project on a free loopback port, with its .env from init-dev
    and nothing of this process's environment meant for the service; stopped by its PID."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    # A scanner opens a connection per probe, faster than the accept rate a client gets.
    env[ENV_PREFIX + "CONNECTIONS_PER_SECOND_PER_ADDRESS"] = "100000"
    port = free_port()
    with log.open("wb") as output:
        server = subprocess.Popen(  # noqa: S603 - the project's own command, our arguments
            [tool(venv, SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"serve exited {server.returncode}:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"serve did not listen in {START_SECONDS} s:\n{log.read_text()}")
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=STOP_SECONDS)


def scan(port: int, ca_file: Path) -> ServerScanResult:
    """The scan commands of sslyze's Mozilla checker against 127.0.0.1:`port`, with the
    hostname the development certificate names and its CA as an extra trust store."""
    request = ServerScanRequest(
        server_location=ServerNetworkLocation("localhost", port, ip_address="127.0.0.1"),
        network_configuration=ServerNetworkConfiguration(
            "localhost", network_timeout=NETWORK_TIMEOUT_SECONDS, network_max_retries=1
        ),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    return result


@pytest.mark.timeout(600)
@pytest.mark.parametrize("profile", PROFILES)
def test_sslyze_finds_the_server_compliant_with_its_mozilla_profile(
    tmp_path: Path, profile: str
) -> None:
    """C01: TLS versions, cipher suites, key-exchange groups, certificate and the TLS
    vulnerability checks, all as Mozilla's profile wants them, by sslyze's reckoning."""
    project = render(tmp_path / "project", tls_profile=profile)
    venv = make_venv(project)
    run([tool(venv, SCRIPT), "init-dev"], cwd=project, timeout=60)
    with serving(project, venv, tmp_path / "serve.log") as port:
        started = time.monotonic()
        result = scan(port, project / "certs" / "ca.pem")
        seconds = time.monotonic() - started

    log = (tmp_path / "serve.log").read_text()
    # C13: a scanner's hundreds of odd handshakes are client input too.
    assert "Traceback" not in log, log
    print(f"sslyze, {profile}: {log.count('tls_handshake_failed')} failed handshakes logged")
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    assert result.scan_result is not None
    curves = result.scan_result.elliptic_curves.result
    assert curves is not None, result.scan_result.elliptic_curves.error_trace
    accepted = {curve.name for curve in curves.supported_curves or ()}
    rejected = {curve.name for curve in curves.rejected_curves or ()}
    print(f"sslyze, {profile}, scan {seconds:.2f} s: groups accepted {sorted(accepted)}")
    print(f"sslyze, {profile}: groups rejected {sorted(rejected)}")

    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum(profile))
        )
    except ServerNotCompliantWithTlsConfiguration as finding:
        pytest.fail(f"sslyze --mozilla_config={profile}: {finding.issues}")
    # The checker flags groups beyond the profile; all three of it must work too.
    assert accepted == PROFILE_GROUPS

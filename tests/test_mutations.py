"""Each security test can fail: break one control in a rendered project and watch the
tests that guard it go red.

A mutation replaces exact pieces of rendered code (if the code it targets is gone, the
mutation is stale and this test fails loudly, so it cannot silently stop proving anything).
The unmutated project passes the same tests, so every red comes from the broken control.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import PACKAGE, make_venv, render


@dataclass(frozen=True)
class Mutation:
    control: str
    name: str
    file: str  # relative to src/<package>/
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text), applied in order
    tests: str  # pytest node selection, run in the mutant
    must_fail: tuple[str, ...]  # test names that must be reported FAILED
    profile: str = "intermediate"


MUTATIONS = [
    Mutation(
        "C01", "tls-accepts-1.0-and-cbc", "tls.py",
        ((
            "    context.minimum_version = ssl.TLSVersion.TLSv1_2\n"
            "    context.set_ciphers(TLS12_CIPHERS)\n",
            "    context.minimum_version = ssl.TLSVersion.TLSv1\n"
            "    context.set_ciphers('ALL:@SECLEVEL=0')\n",
        ),),
        "tests/test_tls.py",
        ("test_tls_below_1_2_is_refused", "test_tls_1_2_cbc_suites_are_refused"),
    ),
    Mutation(
        "C01", "modern-accepts-1.2", "tls.py",
        ((
            "context.minimum_version = ssl.TLSVersion.TLSv1_3",
            "context.minimum_version = ssl.TLSVersion.TLSv1_2",
        ),),
        "tests/test_tls.py",
        ("test_tls_1_2_is_refused_under_modern",),
        profile="modern",
    ),
    Mutation(
        "C01", "plaintext-listener", "server.py",
        ((
            "ssl_context_factory=lambda _config, _default: context,",
            "",
        ),),
        "tests/test_tls.py::test_plaintext_http_gets_no_http_answer",
        ("test_plaintext_http_gets_no_http_answer",),
    ),
    Mutation(
        "C02", "polling-allowed", "server.py",
        ((
            'transports=["websocket"],', "",
        ),),
        "tests/test_transport.py",
        ("test_polling_transport_is_refused",),
    ),
    Mutation(
        "C03", "origin-wildcard", "server.py",
        ((
            "cors_allowed_origins=list(settings.cors_allowed_origins),",
            'cors_allowed_origins="*",',
        ),),
        "tests/test_origin.py",
        ("test_unlisted_origin_is_refused_at_the_upgrade",
         "test_unlisted_origin_is_refused_with_a_valid_token"),
    ),
    Mutation(
        "C03", "origin-list-empty", "server.py",
        ((
            "cors_allowed_origins=list(settings.cors_allowed_origins),",
            "cors_allowed_origins=[],",
        ),),
        "tests/test_origin.py",
        ("test_unlisted_origin_is_refused_at_the_upgrade",),
    ),
    Mutation(
        "C04", "missing-auth-accepted", "auth.py",
        ((
            'raise AuthError("auth_missing")',
            "return Identity(sub='anonymous', scopes=frozenset(), expires_at=0.0)",
        ),),
        "tests/test_auth.py",
        ("test_connect_without_auth_is_refused", "test_malformed_auth_payload_is_refused"),
    ),
    Mutation(
        "C04", "query-string-logged", "seclog.py",
        (("for kind in (RedactQueryStrings, DropDenialQuirk):", "for kind in (DropDenialQuirk,):"),),
        "tests/test_auth.py",
        ("test_token_only_in_query_string_is_refused_and_not_logged",),
    ),
    Mutation(
        "C04", "library-loggers-at-info", "seclog.py",
        (("logger.setLevel(logging.WARNING)", "logger.setLevel(logging.INFO)"),),
        "tests/test_auth.py",
        ("test_tokens_and_payloads_stay_out_of_the_logs_at_debug",),
    ),
    Mutation(
        "C04", "websocket-frames-logged-at-debug", "seclog.py",
        (("logger.setLevel(max(logging.INFO, logging.getLevelName(level)))", "pass"),),
        "tests/test_auth.py",
        ("test_tokens_and_payloads_stay_out_of_the_logs_at_debug",),
    ),
    Mutation(
        "C05", "claims-not-required", "auth.py",
        ((
            'options={"require": list(REQUIRED_CLAIMS)},', "",
        ),),
        "tests/test_auth.py",
        ("test_token_missing_a_required_claim_is_refused",),
    ),
    Mutation(
        "C05", "issuer-not-checked", "auth.py",
        ((
            "issuer=self._issuer,", "issuer=None,",
        ),),
        "tests/test_auth.py",
        ("test_token_with_bad_claims_is_refused",),
    ),
    Mutation(
        "C05", "second-audience", "auth.py",
        ((
            "audience=self._audience,", 'audience=[self._audience, "another-service"],',
        ),),
        "tests/test_auth.py",
        ("test_token_with_bad_claims_is_refused",),
    ),
    Mutation(
        "C05", "signature-not-verified", "auth.py",
        ((
            'options={"require": list(REQUIRED_CLAIMS)},',
            'options={"require": list(REQUIRED_CLAIMS), "verify_signature": False},',
        ),),
        "tests/test_auth.py",
        ("test_token_with_a_wrong_signature_is_refused",
         "test_token_with_a_tampered_payload_is_refused"),
    ),
    Mutation(
        "C05", "algorithm-not-pinned", "auth.py",
        (
            ('if header.get("alg") != ALGORITHM:', 'if header.get("alg") not in (ALGORITHM, "PS256"):'),
            ("algorithms=[ALGORITHM],", 'algorithms=[ALGORITHM, "PS256"],'),
        ),
        "tests/test_auth.py",
        ("test_token_of_another_algorithm_is_refused",),
    ),
    Mutation(
        "C05", "embedded-jwk-trusted", "auth.py",
        (
            ("if KEY_REFERENCE_HEADERS & header.keys():", "if False:"),
            (
                "key = await self._keys.key_for(header)",
                'key = jwt.PyJWK(header["jwk"]).key if "jwk" in header '
                "else await self._keys.key_for(header)",
            ),
        ),
        "tests/test_auth.py",
        ("test_token_naming_its_own_key_is_refused",),
    ),
    Mutation(
        "C05", "jwks-fetched-on-the-event-loop", "keys.py",
        ((
            "jwk = await asyncio.to_thread(self._client.get_signing_key, kid)",
            "jwk = self._client.get_signing_key(kid)",
        ),),
        "tests/test_jwks.py",
        ("test_jwks_fetch_runs_off_the_event_loop",),
    ),
    Mutation(
        "C09", "schemas-lax", "schemas.py",
        ((
            'ConfigDict(extra="forbid", strict=True, frozen=True)',
            'ConfigDict(extra="allow", frozen=True)',
        ),),
        "tests/test_payloads.py",
        ("test_invalid_payload_is_answered_invalid_payload",),
    ),
    Mutation(
        "C10", "uvicorn-frame-limit-default", "server.py",
        ((
            "ws_max_size=settings.max_message_bytes,", "ws_max_size=16 * 1024 * 1024,",
        ),),
        "tests/test_size_limits.py",
        ("test_frame_over_the_limit_closes_only_the_sender",),
    ),
    Mutation(
        "C20", "no-security-headers", "server.py",
        (('headers = [(b"content-type", b"application/json"), *SECURITY_HEADERS]',
          'headers = [(b"content-type", b"application/json")]'),),
        "tests/test_transport.py",
        ("test_http_responses_carry_security_headers",),
    ),
    Mutation(
        "C14", "serve-ignores-findings", "cli.py",
        ((
            "    if _refusals(settings):\n        return EXIT_REFUSED\n",
            "    _refusals(settings)\n",
        ),),
        "tests/test_startup.py -k origin_wildcard",
        ("test_production_server_refuses_to_start_on_insecure_setting",),
    ),
    Mutation(
        "C14", "debug-logging-allowed", "posture.py",
        ((
            'settings.is_production and settings.log_level == "DEBUG"', "False",
        ),),
        "tests/test_startup.py -k debug_logging",
        ("test_production_server_refuses_to_start_on_insecure_setting",),
    ),
]


@dataclass(frozen=True)
class Base:
    project: Path
    venv: Path


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Base]:
    """One rendered project per TLS profile, with a venv holding only its dependencies:
    each mutant runs from its own source tree via PYTHONPATH."""
    made = {}
    for profile in sorted({m.profile for m in MUTATIONS}):
        project = render(tmp_path_factory.mktemp(f"base-{profile}") / "p", tls_profile=profile)
        made[profile] = Base(project, make_venv(project, install_project=False))
    return made


def run_tests(base: Base, tree: Path, selection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own interpreter
        [str(base.venv / "bin" / "python"), "-m", "pytest", "-q", "-rf", "-p",
         "no:cacheprovider", *selection.split()],
        cwd=tree,
        env={"PATH": f"{base.venv / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(tree / "src")},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m.control}-{m.name}")
def test_breaking_a_control_turns_its_tests_red(
    tmp_path: Path, bases: dict[str, Base], mutation: Mutation
) -> None:
    base = bases[mutation.profile]
    mutant = tmp_path / "mutant"
    shutil.copytree(base.project, mutant, ignore=shutil.ignore_patterns(".venv"))
    target = mutant / "src" / PACKAGE / mutation.file
    source = target.read_text()
    for old, new in mutation.edits:
        assert source.count(old) == 1, f"stale mutation: {old!r} not once in {target}"
        source = source.replace(old, new)
    target.write_text(source)

    result = run_tests(base, mutant, mutation.tests)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report  # 1: tests ran and some failed
    for name in mutation.must_fail:
        assert f"FAILED {mutation.tests.split('::')[0].split()[0]}::{name}" in report, report


@pytest.mark.timeout(900)
@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_unmutated_projects_pass_the_same_tests(bases: dict[str, Base], profile: str) -> None:
    base = bases[profile]
    selections = {m.tests.split("::")[0].split()[0] for m in MUTATIONS if m.profile == profile}
    result = run_tests(base, base.project, " ".join(sorted(selections)))
    assert result.returncode == 0, result.stdout + result.stderr

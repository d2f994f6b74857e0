"""Every jwt_algorithm x tls_profile variant, under every Python this machine has, rendered
and run live in the virtual environment its uv.lock makes.

What a variant changes decides what it runs. The algorithm changes keys and tokens (the
auth, JWKS, command-line and startup tests); the profile changes TLS (the TLS tests); the
Python changes asyncio, ssl and every library build under the service. So:

- one variant on the newest Python here runs the whole rendered suite, with the project's
  own pre-commit hooks, actionlint and zizmor;
- every other algorithm x profile pair runs the tests its answers change, each on a Python
  of this machine in turn, rendered for that Python (`python_version`); the default
  answers, on the oldest Python, also pass the hooks, actionlint and zizmor;
- the whole rendered suite on the default answers and the oldest Python runs in
  test_update.py, in the project an update just brought to this tree (with its owner's
  edits): `test_a_fix_arrives_the_owners_edits_stay_and_the_tests_pass`;
- a supported Python this machine lacks (3.14) is rendered and checked statically here and
  runs in the rendered project's own CI.

Every variant's AsyncAPI document (docs/asyncapi.json) goes through the official parser;
the rendered test_asyncapi.py, among the tests the answers change, holds it to its generator.

Ruff, mypy --strict and the hooks over many more answer combinations: test_answer_sets.py.
"""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path

import pytest
import test_update
import yaml
from asyncapi_docs import DOCUMENT, validate

from harness import (
    ALGORITHMS,
    PROFILES,
    PYTHON_VERSIONS,
    git_init,
    interpreter,
    interpreters,
    make_venv,
    pre_commit,
    project_tests,
    render,
    run,
    tool,
    tooling,
)

# Hooks that find nothing to check in a new project (no *.rej files) or that run here as
# the stand-in below (actionlint); every other hook must report Passed.
NOT_RUN_HERE = {"update-leftovers", "actionlint"}

# The rendered tests whose outcome depends on the algorithm or the TLS profile.
VARIANT_TESTS = (
    "test_auth.py",
    "test_jwks.py",
    "test_cli.py",
    "test_startup.py",
    "test_tls.py",
    "test_reload.py",
    "test_asyncapi.py",
)
# Tests of those files that no answer changes, each a command-line process or more: the
# help, the version, the .env lookup, the refusals before anything is signed, a busy port,
# descriptor exhaustion. The whole-suite runs cover them. (A renamed one runs again.)
SAME_IN_EVERY_VARIANT = tuple(
    f"tests/test_cli.py::{name}"
    for name in (
        "test_every_command_help_has_a_description",
        "test_program_help_describes_the_project",
        "test_version_is_the_project_version",
        "test_check_finds_the_project_env_from_any_directory_and_names_it",
        "test_an_env_outside_the_project_is_not_read",
        "test_serve_from_src_uses_the_project_env",
        "test_init_dev_from_a_subdirectory_writes_next_to_pyproject",
        "test_serve_on_a_busy_port_is_one_line_and_exit_2_before_any_startup",
        "test_token_refuses_what_the_server_would_refuse_before_printing",
        "test_running_out_of_descriptors_is_one_line_per_interval_and_recovers",
    )
)

RUNNABLE = [version for version in PYTHON_VERSIONS if version in interpreters()]
DEFAULT = ("RS256", "intermediate", RUNNABLE[0])
FULL = [("EdDSA", "modern", RUNNABLE[-1])]
PAIRS = [pair for pair in itertools.product(ALGORITHMS, PROFILES) if pair not in
         {(a, p) for a, p, _ in FULL} | {DEFAULT[:2]}]  # fmt: skip
PARTIAL = [DEFAULT] + [(a, p, RUNNABLE[(i + 1) % len(RUNNABLE)]) for i, (a, p) in enumerate(PAIRS)]


def project_checks(project: Path, venv: Path) -> None:
    """The project's own pre-commit hooks over all its files, then the workflow linters."""
    git_init(project)
    result = pre_commit(project, venv, "--all-files", "--show-diff-on-failure")
    assert result.returncode == 0, result.stdout + result.stderr
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    lines = result.stdout.splitlines()
    for hook in hooks:
        if hook["id"] not in NOT_RUN_HERE:
            line = next(line for line in lines if line.startswith(hook["name"]))
            assert line.endswith("Passed"), line
    workflows = sorted((project / ".github" / "workflows").glob("*.yml"))
    run([tooling("actionlint"), *workflows], cwd=project)
    run([tool(venv, "zizmor"), "--offline", "--persona", "pedantic", ".github"], cwd=project)


def rendered(tmp_path: Path, algorithm: str, profile: str, python: str) -> tuple[Path, Path]:
    project = render(
        tmp_path / "project", jwt_algorithm=algorithm, tls_profile=profile, python_version=python
    )
    validate([project / DOCUMENT])
    return project, make_venv(project, python=interpreter(python))


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("algorithm", "profile", "python"), FULL, ids=["-".join(v) for v in FULL])
def test_variant_passes_its_checks_and_its_whole_suite(
    tmp_path: Path, algorithm: str, profile: str, python: str
) -> None:
    project, venv = rendered(tmp_path, algorithm, profile, python)
    project_checks(project, venv)
    project_tests(project, venv)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("algorithm", "profile", "python"), PARTIAL, ids=["-".join(v) for v in PARTIAL]
)
def test_variant_passes_the_tests_its_answers_change(
    tmp_path: Path, algorithm: str, profile: str, python: str
) -> None:
    project, venv = rendered(tmp_path, algorithm, profile, python)
    if (algorithm, profile, python) == DEFAULT:
        project_checks(project, venv)
    selection = [f"tests/{name}" for name in VARIANT_TESTS if (project / "tests" / name).exists()]
    assert len(selection) >= len(VARIANT_TESTS) - (algorithm == "HS256"), selection
    deselected = [f"--deselect={test}" for test in SAME_IN_EVERY_VARIANT]
    project_tests(project, venv, *selection, *deselected)


def test_every_pair_and_every_python_here_is_run() -> None:
    """The plan above covers every algorithm x profile pair and every Python this machine
    has, and runs the whole suite on the newest of them here and, in test_update.py, on
    the default answers and the oldest."""
    cases = FULL + PARTIAL
    assert sorted((a, p) for a, p, _ in cases) == sorted(itertools.product(ALGORITHMS, PROFILES))
    assert {python for _, _, python in cases} == set(RUNNABLE)
    assert {python for _, _, python in FULL} == {RUNNABLE[-1]}
    assert RUNNABLE[0] == PYTHON_VERSIONS[0], "the oldest supported Python must run here"
    whole = inspect.getsource(
        test_update.test_a_fix_arrives_the_owners_edits_stay_and_the_tests_pass
    )
    assert "project_tests(project, venv)" in whole, "the whole suite, unnarrowed"


STATIC_ONLY = [version for version in PYTHON_VERSIONS if version not in RUNNABLE]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("python_version", STATIC_ONLY)
def test_python_this_machine_lacks_passes_static_checks(
    tmp_path: Path, python_version: str
) -> None:
    project = render(tmp_path / "project", python_version=python_version, jwt_algorithm="ES256")
    pyproject = (project / "pyproject.toml").read_text()
    assert f'requires-python = ">={python_version}"' in pyproject
    assert f'python_version = "{python_version}"' in pyproject
    validate([project / DOCUMENT])
    venv = make_venv(project, install_project=False)
    project_checks(project, venv)

"""Every jwt_algorithm x tls_profile variant, under every Python this machine has, rendered
and run live in the virtual environment its uv.lock makes.

What a variant changes decides what it runs. The algorithm changes keys and tokens (the
auth, JWKS, command-line and startup tests); the profile changes TLS (the TLS tests); the
Python changes asyncio, ssl and every library build under the service. So:

- the default answers on the oldest Python, and one variant on the newest Python here, run
  the whole rendered suite, with the project's own pre-commit hooks, actionlint and zizmor;
- every other algorithm x profile pair runs the tests its answers change, each on a Python
  of this machine in turn, rendered for that Python (`python_version`);
- a supported Python this machine lacks (3.14) is rendered and checked statically here and
  runs in the rendered project's own CI.

Ruff, mypy --strict and the hooks over many more answer combinations: test_answer_sets.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from harness import (
    ALGORITHMS,
    PROFILES,
    PYTHON_VERSIONS,
    git_init,
    interpreter,
    interpreters,
    make_venv,
    pre_commit,
    render,
    run,
    tool,
    tooling,
)

# Hooks that find nothing to check in a new project (no *.rej files) or that run here as
# the stand-in below (actionlint); every other hook must report Passed.
NOT_RUN_HERE = {"update-leftovers", "actionlint"}

# The rendered tests whose outcome depends on the algorithm or the TLS profile.
VARIANT_TESTS = ("test_auth.py", "test_jwks.py", "test_cli.py", "test_startup.py", "test_tls.py")

RUNNABLE = [version for version in PYTHON_VERSIONS if version in interpreters()]
FULL = [("RS256", "intermediate", RUNNABLE[0]), ("EdDSA", "modern", RUNNABLE[-1])]
PAIRS = [pair for pair in itertools.product(ALGORITHMS, PROFILES) if pair not in
         {(a, p) for a, p, _ in FULL}]  # fmt: skip
PARTIAL = [(a, p, RUNNABLE[i % len(RUNNABLE)]) for i, (a, p) in enumerate(PAIRS)]


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


def live_tests(project: Path, venv: Path, *selection: str) -> None:
    result = run([tool(venv, "pytest"), "-q", "-p", "no:cacheprovider", *selection],
                 cwd=project, timeout=900)  # fmt: skip
    assert " passed" in result.stdout
    assert " failed" not in result.stdout
    assert " skipped" not in result.stdout


def rendered(tmp_path: Path, algorithm: str, profile: str, python: str) -> tuple[Path, Path]:
    project = render(
        tmp_path / "project", jwt_algorithm=algorithm, tls_profile=profile, python_version=python
    )
    return project, make_venv(project, python=interpreter(python))


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("algorithm", "profile", "python"), FULL, ids=["-".join(v) for v in FULL])
def test_variant_passes_its_checks_and_its_whole_suite(
    tmp_path: Path, algorithm: str, profile: str, python: str
) -> None:
    project, venv = rendered(tmp_path, algorithm, profile, python)
    project_checks(project, venv)
    live_tests(project, venv)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("algorithm", "profile", "python"), PARTIAL, ids=["-".join(v) for v in PARTIAL]
)
def test_variant_passes_the_tests_its_answers_change(
    tmp_path: Path, algorithm: str, profile: str, python: str
) -> None:
    project, venv = rendered(tmp_path, algorithm, profile, python)
    selection = [f"tests/{name}" for name in VARIANT_TESTS if (project / "tests" / name).exists()]
    assert len(selection) >= len(VARIANT_TESTS) - (algorithm == "HS256"), selection
    live_tests(project, venv, *selection)


def test_every_pair_and_every_python_here_is_run() -> None:
    """The plan above covers every algorithm x profile pair and every Python this machine
    has, and runs the whole suite on the oldest and the newest of them."""
    cases = FULL + PARTIAL
    assert {(a, p) for a, p, _ in cases} == set(itertools.product(ALGORITHMS, PROFILES))
    assert {python for _, _, python in cases} == set(RUNNABLE)
    assert {python for _, _, python in FULL} == {RUNNABLE[0], RUNNABLE[-1]}
    assert RUNNABLE[0] == PYTHON_VERSIONS[0], "the oldest supported Python must run here"


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
    venv = make_venv(project, install_project=False)
    project_checks(project, venv)

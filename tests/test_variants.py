"""Every jwt_algorithm x tls_profile variant, rendered and held to its own standards: its
own pre-commit checks (conflict markers, secrets, ruff lint and format, mypy --strict, the
workflow and Dependabot schemas, zizmor), actionlint, and its own live tests, in the virtual
environment its uv.lock makes. Newer Python variants are rendered and checked statically
(this machine runs 3.11)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from harness import (
    ALGORITHMS,
    PROFILES,
    PYTHON_VERSIONS,
    RUNNABLE_PYTHON,
    git_init,
    make_venv,
    pre_commit,
    render,
    run,
    tool,
    tooling,
)

VARIANTS = list(itertools.product(ALGORITHMS, PROFILES))


# Hooks that find nothing to check in a new project (no *.rej files) or that run here as
# the stand-in below (actionlint); every other hook must report Passed.
NOT_RUN_HERE = {"update-leftovers", "actionlint"}


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


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("algorithm", "profile"), VARIANTS, ids=[f"{a}-{p}" for a, p in VARIANTS])
def test_variant_passes_its_checks_and_its_live_tests(
    tmp_path: Path, algorithm: str, profile: str
) -> None:
    project = render(tmp_path / "project", jwt_algorithm=algorithm, tls_profile=profile)
    venv = make_venv(project)
    project_checks(project, venv)
    result = run([tool(venv, "pytest"), "-q", "-p", "no:cacheprovider"], cwd=project, timeout=900)
    assert " passed" in result.stdout
    assert " failed" not in result.stdout
    assert " skipped" not in result.stdout


NEWER = [version for version in PYTHON_VERSIONS if version != RUNNABLE_PYTHON]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("python_version", NEWER)
def test_newer_python_variant_passes_static_checks(tmp_path: Path, python_version: str) -> None:
    project = render(tmp_path / "project", python_version=python_version, jwt_algorithm="ES256")
    pyproject = (project / "pyproject.toml").read_text()
    assert f'requires-python = ">={python_version}"' in pyproject
    assert f'python_version = "{python_version}"' in pyproject
    venv = make_venv(project, install_project=False)
    project_checks(project, venv)

"""Every jwt_algorithm x tls_profile variant, rendered and held to its own standards: ruff
(lint and format), mypy --strict, and its own live tests, in its own virtual environment.
Newer Python variants are rendered and checked statically (this machine runs 3.11)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from harness import (
    ALGORITHMS,
    PROFILES,
    PYTHON_VERSIONS,
    RUNNABLE_PYTHON,
    make_venv,
    render,
    run,
    tool,
)

VARIANTS = list(itertools.product(ALGORITHMS, PROFILES))


def static_checks(project: Path, venv: Path) -> None:
    run([tool(venv, "ruff"), "check", "."], cwd=project)
    run([tool(venv, "ruff"), "format", "--check", "."], cwd=project)
    run([tool(venv, "mypy")], cwd=project)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("algorithm", "profile"), VARIANTS, ids=[f"{a}-{p}" for a, p in VARIANTS])
def test_variant_passes_ruff_mypy_and_its_live_tests(
    tmp_path: Path, algorithm: str, profile: str
) -> None:
    project = render(tmp_path / "project", jwt_algorithm=algorithm, tls_profile=profile)
    venv = make_venv(project)
    static_checks(project, venv)
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
    static_checks(project, venv)

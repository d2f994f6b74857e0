"""Rendering: no --trust needed, nothing of the template's own leaks into a project, no
leftover Jinja, and no secret is ever rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness import ALGORITHMS, PACKAGE, ROOT, render

UNSAFE_SETTINGS = ("_tasks", "_jinja_extensions", "_migrations", "_external_data")
# Jinja tags as the template writes them; Python's `{{`/`}}` in f-strings and dicts differ.
JINJA_LEFTOVER = re.compile(r"\{\{-?\s|\s-?\}\}|\{%-?\s|\s-?%\}|\{#\s|\s#\}")
# GitHub Actions expressions in workflows look like Jinja and belong there.
ACTIONS_EXPRESSION = re.compile(r"\$\{\{ [^{}]* \}\}")


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("render") / "project")


def test_copier_yml_uses_no_feature_that_needs_trust() -> None:
    settings = yaml.safe_load((ROOT / "copier.yml").read_text())
    assert not set(settings) & set(UNSAFE_SETTINGS)
    assert settings["_subdirectory"] == "template"


def test_render_without_trust_succeeds(default_project: Path) -> None:
    """`render` passes unsafe=False, as `copier copy` without --trust does."""
    assert (default_project / "pyproject.toml").is_file()
    assert (default_project / "src" / PACKAGE / "server.py").is_file()


def test_template_internals_do_not_leak(default_project: Path) -> None:
    assert not (default_project / "copier.yml").exists()
    assert not (default_project / ".git").exists()
    assert not list(default_project.rglob("*.jinja"))


def test_no_leftover_jinja(default_project: Path) -> None:
    for path in default_project.rglob("*"):
        if path.is_file():
            text = path.read_text()
            if ".github" in path.parts:
                text = ACTIONS_EXPRESSION.sub("", text)
            assert not JINJA_LEFTOVER.search(text), path


def test_answers_file_records_answers_and_no_secret(default_project: Path) -> None:
    answers = yaml.safe_load((default_project / ".copier-answers.yml").read_text())
    assert answers["_src_path"]
    assert answers["jwt_algorithm"] == "RS256"
    assert "package_name" not in answers  # derived values are not answers


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_no_key_certificate_or_env_is_rendered(tmp_path: Path, algorithm: str) -> None:
    """C17: a project starts without secrets; init-dev makes them, git-ignored."""
    project = render(tmp_path / "p", jwt_algorithm=algorithm)
    names = {path.name for path in project.rglob("*")}
    assert ".env" not in names
    assert not [name for name in names if name.endswith((".pem", ".key", ".p12"))]
    for path in project.rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY-----" not in path.read_text(), path
    ignored = (project / ".gitignore").read_text().splitlines()
    assert {".env", "certs/", "*.pem", "*.key"} <= set(ignored)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_key_module_matches_the_algorithm(tmp_path: Path, algorithm: str) -> None:
    """One algorithm per project: the rendered verifier pins the answer."""
    project = render(tmp_path / "p", jwt_algorithm=algorithm)
    answers = (project / "src" / PACKAGE / "answers.py").read_text()
    line = next(line for line in answers.splitlines() if line.startswith("JWT_ALGORITHM:"))
    assert line.endswith(f'= "{algorithm}"')
    keys = (project / "src" / PACKAGE / "keys.py").read_text()
    assert "ALGORITHM: Final = JWT_ALGORITHM" in keys

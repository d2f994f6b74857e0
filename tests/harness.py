"""Render the template and run the rendered project's own tools, for tests and the demo.

Everything is real: a Copier render of the working tree (`vcs_ref="HEAD"` includes
uncommitted changes), a virtual environment per project made with uv, and the project's
own ruff, mypy and pytest.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import copier

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "secure_rooms"  # derived from the default project_name
SCRIPT = "secure-rooms"
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
PROFILES = ("intermediate", "modern")
PYTHON_VERSIONS = ("3.11", "3.12", "3.13", "3.14")
# The Python running the tests; other supported versions run when this machine has them
# (see interpreters()), and all of them in the rendered project's own CI.
RUNNABLE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@functools.cache
def interpreters() -> dict[str, str]:
    """The supported Pythons this machine has, by version: the one running the tests, then
    builds found in pyenv's versions directory (its shims need PYENV_VERSION, so the builds
    are used directly) or on the usual paths. Each is asked its version and checked for ssl."""
    found = {RUNNABLE_PYTHON: sys.executable}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in PYTHON_VERSIONS:
        candidates = [
            *sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True),
            Path(f"/usr/bin/python{version}"),
            Path(f"/usr/local/bin/python{version}"),
        ]
        for candidate in candidates:
            if version in found or not candidate.is_file():
                continue
            probe = subprocess.run(  # noqa: S603 - a local interpreter, our own code
                [str(candidate), "-c", "import ssl, sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if probe.returncode == 0 and probe.stdout.strip() == version:
                found[version] = str(candidate)
    return {version: found[version] for version in PYTHON_VERSIONS if version in found}


def interpreter(version: str) -> str:
    try:
        return interpreters()[version]
    except KeyError:
        raise RuntimeError(f"no Python {version} with ssl on this machine") from None


def render(dst: Path, **answers: Any) -> Path:
    """Render the template into `dst` with default answers except `answers`, untrusted."""
    copier.run_copy(
        str(ROOT),
        dst,
        data=answers,
        defaults=True,
        unsafe=False,
        vcs_ref="HEAD",
        quiet=True,
    )
    return dst


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise RuntimeError("uv is not installed: pip install -r tests/requirements.txt")
    return found


def run(
    args: Sequence[str | Path],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its whole output, for a readable test report."""
    result = subprocess.run(  # noqa: S603 - fixed tools, our own arguments
        [str(arg) for arg in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode} in {cwd}\n"
            f"--- stdout\n{result.stdout[-20000:]}\n--- stderr\n{result.stderr[-20000:]}"
        )
    return result


def make_venv(project: Path, *, install_project: bool = True, python: str | None = None) -> Path:
    """The project's virtual environment in `project/.venv`, as its CI makes it.

    `uv sync --locked` installs exactly what the project's uv.lock pins (the project, its
    dependencies and the default groups `dev` and `lint`, every file checked against its
    hash) and fails if the lock no longer matches pyproject.toml. With
    `install_project=False` (variants whose `requires-python` this interpreter does not meet,
    checked statically) the declared requirements are installed unlocked instead. `python`
    is the interpreter (default: the one running the tests).
    """
    venv = project / ".venv"
    if install_project:
        run([uv(), "sync", "--locked", "--quiet", "--python", python or sys.executable],
            cwd=project)  # fmt: skip
        return venv
    import tomllib

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    groups = pyproject["dependency-groups"]
    requirements = [*pyproject["project"]["dependencies"], *groups["dev"], *groups["lint"]]
    run([uv(), "venv", "--quiet", "--python", sys.executable, venv], cwd=project)
    python = venv / "bin" / "python"
    run([uv(), "pip", "install", "--quiet", "--python", python, *requirements], cwd=project)
    return venv


def tool(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def project_tests(project: Path, venv: Path, *selection: str) -> None:
    """The project's own pytest (all of it unless `selection` narrows it): some passed,
    none failed, none skipped."""
    result = run([tool(venv, "pytest"), "-q", "-p", "no:cacheprovider", *selection],
                 cwd=project, timeout=900)  # fmt: skip
    assert " passed" in result.stdout
    assert " failed" not in result.stdout
    assert " skipped" not in result.stdout


def tooling(name: str) -> Path:
    """A tool of the template's own environment (tests/requirements.txt)."""
    return Path(sys.executable).parent / name


def hook_env(**extra: str) -> dict[str, str]:
    """Environment for a rendered project's pre-commit hooks: `uv` on PATH, no re-sync (the
    test made the environment), and actionlint skipped: pre-commit builds it from its Go
    module, which needs the Go module proxy this machine cannot reach. Tests run the
    stand-in build of tests/requirements.txt on the same files instead."""
    path = os.pathsep.join([str(Path(uv()).parent), os.environ.get("PATH", "")])
    return {"PATH": path, "UV_NO_SYNC": "1", "SKIP": "actionlint", **extra}


def git_init(project: Path) -> None:
    """A git repository with every rendered file staged, as after `git init && git add -A`."""
    run(["git", "init", "--quiet", "--initial-branch", "main"], cwd=project)
    run(["git", "add", "--all"], cwd=project)


def hooked(
    args: Sequence[str | Path],
    cwd: Path,
    *,
    timeout: float = 600,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in a project with `hook_env()` (and `env`); returns the result whatever
    the exit code, for tests that expect a refusal as much as a success."""
    return subprocess.run(  # noqa: S603 - our tools, our arguments
        [str(arg) for arg in args],
        cwd=cwd,
        env={**os.environ, **hook_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pre_commit(
    project: Path, venv: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The project's own pre-commit checks; returns the result whatever the exit code."""
    return hooked([tool(venv, "pre-commit"), "run", "--color", "never", *args], project, env=env)


def copy_worktree(dst: Path) -> Path:
    """This template's working tree as git sees it (tracked files and untracked ones that
    are not ignored, as they are now), copied to `dst`: no .git, no .venv."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    for name in listed.stdout.split("\0"):  # names hold spaces: "{% if ... %}keys.py..."
        if not name:
            continue
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    return dst


def commit_through_hooks(project: Path, message: str) -> subprocess.CompletedProcess[str]:
    """`git commit` with the project's installed pre-commit hook; whatever the exit code."""
    return hooked(["git", "commit", "-m", message], project)

"""Render the template and run the rendered project's own tools, for tests and the demo.

Everything is real: a Copier render of the working tree (`vcs_ref="HEAD"` includes
uncommitted changes), a virtual environment per project made with uv, and the project's
own ruff, mypy and pytest.
"""

from __future__ import annotations

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
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
# This machine runs 3.11 only; newer variants are rendered and checked statically here
# and run in the rendered project's own CI.
RUNNABLE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


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


def make_venv(project: Path, *, install_project: bool = True) -> Path:
    """A virtual environment in `project/.venv` with the project and its dev extras.

    With `install_project=False` only the dependencies are installed (for variants whose
    `requires-python` this interpreter does not meet, checked statically).
    """
    venv = project / ".venv"
    run([uv(), "venv", "--quiet", "--python", sys.executable, venv], cwd=project)
    python = venv / "bin" / "python"
    if install_project:
        run([uv(), "pip", "install", "--quiet", "--python", python, "-e", ".[dev]"], cwd=project)
    else:
        import tomllib

        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        requirements = [*meta["dependencies"], *meta["optional-dependencies"]["dev"]]
        run([uv(), "pip", "install", "--quiet", "--python", python, *requirements], cwd=project)
    return venv


def tool(venv: Path, name: str) -> Path:
    return venv / "bin" / name

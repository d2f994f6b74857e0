"""Template releases made on the spot, for the update tests (`copier update` needs a git
repository with tags; the tests must not depend on tags in this clone).

`template_history` copies this working tree into a new git repository and commits one
release per step, each made by editing the copy and tagged. `OLD` turns the current tree
into the release before a realistic security fix; restoring the files it touched gives
the fixed release back.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import copier

from harness import ROOT, copy_worktree, run, uv

Edit = Callable[[Path], None]

# The fix that the release after OLD carries: a raised dependency floor, a tightened
# default, a moved workflow pin, and a new file. OLD holds the state before it.
FLOOR_OLD, FLOOR_NEW = '"PyJWT[crypto]>=2.10.0"', '"PyJWT[crypto]>=2.15.1"'
TIMEOUT_OLD = "connect_timeout_seconds: float = Field(default=10.0, gt=0, le=60)"
TIMEOUT_NEW = "connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)"
PIN_OLD = "actions/checkout@9c091bb21b7c1c1d1991bb908d89e4e9dddfe3e0 # v7.0.0"
PIN_NEW = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"
FIXED_FILES = (
    "template/pyproject.toml.jinja",
    "template/src/{{package_name}}/settings.py",
    "template/.github/workflows/ci.yml.jinja",
    "template/.github/workflows/audit.yml",
    "template/SECURITY.md.jinja",
    "locks/python3.11/uv.lock",
)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}: the update tests need updating"
    path.write_text(text.replace(old, new))


def old_release(repo: Path) -> None:
    """The tree before the fix, with a lock that matches its pyproject.toml."""
    template = repo / "template"
    replace(template / "pyproject.toml.jinja", FLOOR_NEW, FLOOR_OLD)
    replace(template / "src/{{package_name}}/settings.py", TIMEOUT_NEW, TIMEOUT_OLD)
    for workflow in ("ci.yml.jinja", "audit.yml"):
        replace(template / ".github/workflows" / workflow, PIN_NEW, PIN_OLD)
    (template / "SECURITY.md.jinja").unlink()
    relock(repo, "3.11")


def fixed_release(repo: Path) -> None:
    for name in FIXED_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)


def relock(repo: Path, python_version: str) -> None:
    """What scripts/relock does, for one Python: lock the rendered default project again."""
    scratch = repo.parent / f"relock-{python_version}"
    copier.run_copy(
        str(repo), scratch, data={"python_version": python_version}, defaults=True,
        unsafe=False, vcs_ref="HEAD", quiet=True,
    )  # fmt: skip
    # Online: a new machine's uv cache holds no index pages, and resolving needs them.
    run([uv(), "lock", "--quiet"], cwd=scratch)
    shutil.copy2(scratch / "uv.lock", repo / "locks" / f"python{python_version}" / "uv.lock")
    shutil.rmtree(scratch)


def template_history(base: Path, releases: Sequence[tuple[str, Edit | None]]) -> Path:
    """A git repository of this template with one tagged commit per (tag, edit)."""
    repo = copy_worktree(base / "template")
    run(["git", "init", "--quiet", "--initial-branch", "main"], cwd=repo)
    for tag, edit in releases:
        if edit is not None:
            edit(repo)
        run(["git", "add", "--all"], cwd=repo)
        run(["git", "commit", "--quiet", "--allow-empty", "-m", f"Release {tag}"], cwd=repo)
        run(["git", "tag", tag], cwd=repo)
    return repo


def release(repo: Path, tag: str, edit: Edit) -> None:
    """One more tagged release on top of `repo`."""
    edit(repo)
    run(["git", "add", "--all"], cwd=repo)
    run(["git", "commit", "--quiet", "-m", f"Release {tag}"], cwd=repo)
    run(["git", "tag", tag], cwd=repo)


def project_at(template: Path, dst: Path, tag: str, **answers: str) -> Path:
    """A project rendered from release `tag`, committed in its own git repository."""
    copier.run_copy(
        str(template), dst, data=answers, defaults=True, unsafe=False, vcs_ref=tag, quiet=True
    )
    run(["git", "init", "--quiet", "--initial-branch", "main"], cwd=dst)
    commit(dst, f"Project from template {tag}")
    return dst


def commit(project: Path, message: str) -> None:
    run(["git", "add", "--all"], cwd=project)
    run(["git", "commit", "--quiet", "-m", message], cwd=project)

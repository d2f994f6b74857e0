"""Bring the template's newest release into this project, as a pull request.

Run by .github/workflows/template-update.yml (weekly and on demand), or by hand:

    uv run --frozen --only-group template python scripts/template_update.py [--open-pr]

1. `copier check-update`: when no newer release of the template exists, nothing happens.
2. On a new branch `template-update/<version>`, `copier update --defaults` (your recorded
   answers; new questions take their defaults). Copier exits 0 even when it leaves
   conflict markers: this script looks for them (and for *.rej files) and stops with
   exit 1, naming each file, before anything is committed.
3. `uv lock`: the lock is the project's own, so a raised floor in pyproject.toml is
   carried into it here.
4. One commit; with --open-pr, the branch is pushed and a pull request opened with `gh`.

Exit codes: 0 up to date or done, 1 conflicts, 2 cannot start (dirty worktree, no git).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> )", re.MULTILINE)


def git(*args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=False)  # noqa: S603, S607
    if check and result.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def copier(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "copier", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603


def conflicts() -> list[str]:
    """Files with conflict markers, unmerged paths, and *.rej / *.orig leftovers."""
    found: set[str] = set()
    status = git("status", "--porcelain", "--untracked-files=all").splitlines()
    for line in status:
        state, name = line[:2], line[3:]
        if "U" in state or state in ("AA", "DD") or name.endswith((".rej", ".orig")):
            found.add(name)
    for name in git("ls-files", "--cached", "--others", "--exclude-standard").splitlines():
        path = Path(name)
        if path.is_file() and MARKER.search(path.read_bytes()):
            found.add(name)
    return sorted(found)


def remote_branch_exists(branch: str) -> bool:
    result = subprocess.run(  # noqa: S603
        ["git", "ls-remote", "--exit-code", "--heads", "origin", branch],  # noqa: S607
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bring the template's newest release in.")
    parser.add_argument("--open-pr", action="store_true", help="push and open a pull request")
    args = parser.parse_args(argv)

    if git("status", "--porcelain"):
        print("the worktree is not clean: commit or stash first", file=sys.stderr)
        return 2
    check = copier("check-update", "--output-format", "json")
    if check.returncode != 0:
        print(f"copier check-update failed:\n{check.stderr}", file=sys.stderr)
        return 2
    state = json.loads(check.stdout)
    current, latest = state["current_version"], state["latest_version"]
    if not state["update_available"]:
        print(f"up to date: template {current}")
        return 0

    branch = f"template-update/{latest}"
    if args.open_pr and remote_branch_exists(branch):
        print(f"{branch} is already pushed: its pull request is waiting for review")
        return 0
    print(f"template {current} -> {latest} on branch {branch}")
    git("switch", "--create", branch)
    update = copier("update", "--defaults", "--conflict", "inline")
    if update.returncode != 0:
        print(f"copier update failed:\n{update.stderr}", file=sys.stderr)
        return 1
    if found := conflicts():
        print(
            "the update left conflicts; resolve each, then commit on this branch:\n  "
            + "\n  ".join(found),
            file=sys.stderr,
        )
        return 1
    uv = shutil.which("uv")
    if uv is None:
        print("uv is not on PATH: cannot refresh uv.lock", file=sys.stderr)
        return 2
    subprocess.run([uv, "lock", "--quiet"], check=True)  # noqa: S603
    git("add", "--all")
    title = f"Update from template {current} to {latest}"
    git("commit", "--quiet", "--message", title)
    print(f"committed: {title}")
    if args.open_pr:
        body = (
            f"`copier update` from template {current} to {latest}, with `uv lock` after it.\n\n"
            "Read the template's CHANGELOG for these releases: a security release says so, "
            "and so does any release that removes or moves a file."
        )
        git("push", "--set-upstream", "origin", branch)
        gh = shutil.which("gh") or "gh"
        subprocess.run(  # noqa: S603
            [gh, "pr", "create", "--head", branch, "--title", title, "--body", body], check=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

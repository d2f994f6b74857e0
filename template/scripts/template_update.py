"""Bring the template's newest release into this project, as a pull request.

Run by .github/workflows/template-update.yml (weekly and on demand), or by hand:

    uv run --frozen --only-group template python scripts/template_update.py [--open-pr]

1. `copier check-update`: when no newer release of the template exists, nothing happens.
2. On a new branch `template-update/<version>`, `copier update --defaults` (your recorded
   answers; new questions take their defaults). Copier exits 0 even when it leaves
   conflict markers: this script looks for them (and for *.rej files) and stops, naming
   each file, before anything is committed.
3. `uv lock`: the lock is the project's own, so a raised floor in pyproject.toml is
   carried into it here.
4. One commit (through your git hooks, if any); with --open-pr, the branch is pushed and a
   pull request opened with `gh`.

Once step 2 has begun, any failure, or an interrupt, puts the project back as it started:
the branch you were on, the worktree and index as they were (git-ignored files such as
`.env` are never touched), the `template-update/<version>` branch deleted, and with
--open-pr a branch it had pushed deleted from origin too. Conflicts are no exception: the
files are named and the project restored, so that the scheduled job and a rerun start
clean. To resolve conflicts by hand, run it with --keep-conflicts: it then stays on the
update branch, markers and all, and says so.

`.copier-answers.yml` must record the template as a URL (`gh:owner/repo`,
`https://host/owner/repo.git`): a local path, recorded when a project is copied from a
checkout, cannot be reached by the workflow. Such a path is a warning by hand and stops the
script in CI (`CI` or `GITHUB_ACTIONS` set to true).

Exit codes:
  0  up to date, or the update is committed (with --open-pr: pushed, pull request opened)
  1  the update conflicts: the files are named and the project is back as it started
     (with --keep-conflicts: left on the update branch, deliberately)
  2  cannot start, nothing changed: a dirty worktree, no git repository, uv or gh missing,
     check-update failing, the update branch already there, or in CI a local template path
  3  a step failed after the update began (copier update, uv lock, the commit or one of its
     hooks, the push, the pull request): the project is back as it started; the one-line
     message says which step, and, if restoring failed too, what is left to clean up
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> )", re.MULTILINE)
ANSWERS = Path(".copier-answers.yml")
SRC_PATH = re.compile(r"^_src_path:\s*(.+?)\s*$", re.MULTILINE)
# What copier (and git) accept as a remote address: scheme://, gh:/gl: shortcuts, scp-like.
REMOTE = re.compile(r"^((?!file://)[a-z][a-z0-9+.-]*://|gh:|gl:|[\w.-]+@[\w.-]+:)", re.I)
CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


class Failed(Exception):
    """A step failed; the message is one line, naming the step."""


def summary(output: str) -> str:
    """The one line of a tool's output that says what went wrong, without credentials."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "fatal"))]
    line = (errors or lines or ["(no output)"])[-1]
    return CREDENTIALS.sub(r"\1***@", line)[:300]


def execute(args: list[str], step: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        output = result.stderr if result.stderr.strip() else result.stdout
        raise Failed(f"{step} failed (exit {result.returncode}): {summary(output)}")
    return result.stdout


def git(*args: str) -> str:
    return execute(["git", *args], f"git {args[0]}")


def copier(*args: str) -> str:
    return execute([sys.executable, "-m", "copier", *args], f"copier {args[0]}")


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


def in_ci() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("true", "1") for name in ("CI", "GITHUB_ACTIONS")
    )


def local_template() -> str | None:
    """The recorded `_src_path` when it is a local path rather than a URL."""
    if not ANSWERS.is_file():
        return None
    match = SRC_PATH.search(ANSWERS.read_text())
    if match is None:
        return None
    source = match[1].strip("'\"")
    return None if REMOTE.match(source) else source


def remote_branch_exists(branch: str) -> bool:
    result = subprocess.run(  # noqa: S603
        ["git", "ls-remote", "--exit-code", "--heads", "origin", branch],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 2):  # 2: reachable, no such branch
        raise Failed(f"git ls-remote origin failed: {summary(result.stderr)}")
    return result.returncode == 0


@dataclass(frozen=True)
class Start:
    """Where the project was before the update: a branch, or a commit (detached HEAD)."""

    branch: str | None
    commit: str

    @classmethod
    def here(cls) -> Start:
        branch = git("branch", "--show-current").strip() or None
        return cls(branch, git("rev-parse", "HEAD").strip())

    @property
    def name(self) -> str:
        return self.branch or f"commit {self.commit[:12]}"

    def restore(self, branch: str, *, pushed: bool) -> list[str]:
        """Put the project back; returns what could not be undone, as commands to run."""
        left: list[str] = []
        for args in (
            ("reset", "--hard", "--quiet"),  # also clears unmerged index entries
            ("clean", "-d", "--force", "--quiet"),  # what the update added; not ignored files
            ("switch", "--quiet", self.branch) if self.branch else
            ("switch", "--quiet", "--detach", self.commit),
            ("branch", "--quiet", "--delete", "--force", branch),
        ):  # fmt: skip
            try:
                if args[0] == "branch" and not git("branch", "--list", branch):
                    continue  # never made: `git switch --create` itself failed
                git(*args)
            except Failed:
                left.append(f"git {' '.join(args)}")
        if pushed:
            try:
                git("push", "--quiet", "--delete", "origin", branch)
            except Failed:
                left.append(f"git push --delete origin {branch}")
        return left


def abandon(start: Start, branch: str, reason: str, *, pushed: bool) -> None:
    left = start.restore(branch, pushed=pushed)
    if left:
        print(f"{reason}; restoring failed too, still to run: {'; '.join(left)}", file=sys.stderr)
    else:
        print(
            f"{reason}; the project is back on {start.name} as it was, no {branch} left",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bring the template's newest release in.")
    parser.add_argument("--open-pr", action="store_true", help="push and open a pull request")
    parser.add_argument(
        "--keep-conflicts",
        action="store_true",
        help="on conflicts, stay on the update branch with the markers, to resolve by hand",
    )
    args = parser.parse_args(argv)

    if (source := local_template()) is not None:
        where = "the template-update workflow cannot reach it"
        fix = (
            "set _src_path in .copier-answers.yml to the template's URL "
            "(gh:owner/repo or https://host/owner/repo.git), or recopy from that URL"
        )
        if in_ci():
            print(f"_src_path is a local path ({source}): {where}; {fix}", file=sys.stderr)
            return 2
        print(f"warning: _src_path is a local path ({source}): {where}; {fix}", file=sys.stderr)
    try:
        if git("status", "--porcelain"):
            print("the worktree is not clean: commit or stash first", file=sys.stderr)
            return 2
        start = Start.here()
        uv, gh = shutil.which("uv"), shutil.which("gh")
        if uv is None:
            print("uv is not on PATH: install it (it refreshes uv.lock)", file=sys.stderr)
            return 2
        if args.open_pr and gh is None:
            print(
                "gh is not on PATH: install GitHub CLI, or run without --open-pr", file=sys.stderr
            )
            return 2
        state = json.loads(copier("check-update", "--output-format", "json"))
        current, latest = state["current_version"], state["latest_version"]
        if not state["update_available"]:
            print(f"up to date: template {current}")
            return 0
        branch = f"template-update/{latest}"
        if git("branch", "--list", branch):
            print(
                f"{branch} exists already: finish it, or delete it with git branch -D",
                file=sys.stderr,
            )
            return 2
        if args.open_pr and remote_branch_exists(branch):
            print(f"{branch} is already pushed: its pull request is waiting for review")
            return 0
    except Failed as failure:
        print(f"{failure}; nothing was changed", file=sys.stderr)
        return 2

    print(f"template {current} -> {latest} on branch {branch}")
    pushed = False
    try:
        git("switch", "--quiet", "--create", branch)
        copier("update", "--defaults", "--conflict", "inline")
        if found := conflicts():
            files = ", ".join(found)
            if args.keep_conflicts:
                print(
                    f"the update conflicts in {files}: left on {branch} as asked; resolve each, "
                    f"then uv lock and commit (git switch {start.branch or start.commit} "
                    f"and git branch -D {branch} drop it)",
                    file=sys.stderr,
                )
                return 1
            abandon(
                start,
                branch,
                f"the update conflicts in {files} (resolve by hand: rerun with --keep-conflicts)",
                pushed=False,
            )
            return 1
        execute([uv, "lock", "--quiet"], "uv lock")
        git("add", "--all")
        title = f"Update from template {current} to {latest}"
        git("commit", "--quiet", "--message", title)
        print(f"committed: {title}")
        if args.open_pr and gh is not None:
            body = (
                f"`copier update` from template {current} to {latest}, with `uv lock` after "
                "it.\n\nRead the template's CHANGELOG for these releases: a security release "
                "says so, and so does any release that removes or moves a file."
            )
            git("push", "--quiet", "--set-upstream", "origin", branch)
            pushed = True
            execute(
                [gh, "pr", "create", "--head", branch, "--title", title, "--body", body],
                "gh pr create",
            )
    except Failed as failure:
        abandon(start, branch, str(failure), pushed=pushed)
        return 3
    except BaseException:
        abandon(start, branch, "interrupted", pushed=pushed)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

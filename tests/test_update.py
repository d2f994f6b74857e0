"""C18: the template's security fixes reach existing projects through `copier update`.

Each test builds template releases on the spot (tests/updates.py): v1.0.0 is this tree
before a realistic security fix (an older PyJWT floor, a 10 s authentication deadline,
the previous actions/checkout pin, no SECURITY.md); v1.0.1 is this tree. A project is made
from v1.0.0, its owner changes it as owners do (a new event handler, a changed setting,
README text), and it is updated without --trust.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from updates import (
    FLOOR_NEW,
    PIN_NEW,
    TIMEOUT_NEW,
    TIMEOUT_OLD,
    commit,
    fixed_release,
    old_release,
    project_at,
    release,
    template_history,
)

from harness import (
    PACKAGE,
    ROOT,
    SCRIPT,
    commit_through_hooks,
    hook_env,
    make_venv,
    pre_commit,
    project_tests,
    run,
    tool,
    uv,
)

HANDLER = """
    async def typing(self, ctx: Context, payload: Leave) -> Ack:
        \"\"\"Our own event: tell a room that someone is typing.\"\"\"
        if not self._is_member(ctx, payload.room):
            return error("not_member")
        await self._sio.emit("typing", {"sub": ctx.identity.sub}, room=room_key(payload.room))
        return ok(room=payload.room)
"""
CLASS_END = "        return ok(room=payload.room)\n\n\ndef register("
REGISTER = '    router.on("message", Message, rooms.message, scope=SCOPE_WRITE)\n'
OUR_REGISTER = REGISTER + '    router.on("typing", Leave, rooms.typing, scope=SCOPE_WRITE)\n'
RATE_OLD = "events_per_second: float = Field(default=20.0, ge=0)"
RATE_OURS = "events_per_second: float = Field(default=10.0, ge=0)"
README_OURS = "\n## Our deployment\n\nServed behind our load balancer; owners: the chat team.\n"


MARKER = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def owner_edits(project: Path) -> None:
    package = project / "src" / PACKAGE
    events = package / "events.py"
    edit(events, CLASS_END, CLASS_END.replace("\n\n\ndef", "\n" + HANDLER + "\n\ndef"))
    edit(events, REGISTER, OUR_REGISTER)
    edit(package / "settings.py", RATE_OLD, RATE_OURS)
    readme = project / "README.md"
    readme.write_text(readme.read_text() + README_OURS)
    commit(project, "Our changes")


def copier_update(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`copier update --defaults` as an owner runs it: no --trust unless given."""
    return subprocess.run(  # noqa: S603 - this interpreter's copier, our arguments
        [sys.executable, "-m", "copier", "update", "--defaults", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )


def status(project: Path) -> list[str]:
    return run(["git", "status", "--porcelain"], cwd=project).stdout.splitlines()


def assert_fixed_and_ours(project: Path) -> None:
    """The fix arrived, the owner's edits stayed, and nothing conflicts."""
    package = project / "src" / PACKAGE
    assert FLOOR_NEW in (project / "pyproject.toml").read_text()
    settings = (package / "settings.py").read_text()
    assert TIMEOUT_NEW in settings
    assert RATE_OURS in settings
    for workflow in ("ci.yml", "audit.yml"):
        assert PIN_NEW in (project / ".github" / "workflows" / workflow).read_text()
    assert (project / "SECURITY.md").is_file()
    events = (package / "events.py").read_text()
    assert HANDLER in events
    assert OUR_REGISTER in events
    assert README_OURS in (project / "README.md").read_text()
    assert "_commit: v1.0.1" in (project / ".copier-answers.yml").read_text()
    assert not [line for line in status(project) if line[:2] in ("UU", "AA", "DD")]
    for path in project.rglob("*"):
        if path.is_file() and ".venv" not in path.parts and ".git" not in path.parts:
            assert not MARKER.search(path.read_text(errors="replace")), path


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_history(
        tmp_path_factory.mktemp("history"), [("v1.0.0", old_release), ("v1.0.1", fixed_release)]
    )


@pytest.mark.timeout(900)
def test_a_fix_arrives_the_owners_edits_stay_and_the_tests_pass(
    history: Path, tmp_path: Path
) -> None:
    project = project_at(history, tmp_path / "p", "v1.0.0")
    owner_edits(project)
    updated = copier_update(project)
    assert updated.returncode == 0, updated.stderr
    assert_fixed_and_ours(project)
    # The lock is the project's own: the raised floor makes it stale until `uv lock`.
    stale = subprocess.run(  # noqa: S603
        [uv(), "lock", "--check", "--offline"], cwd=project, capture_output=True, check=False
    )
    assert stale.returncode != 0
    run([uv(), "lock", "--quiet"], cwd=project)
    venv = make_venv(project)
    # The owner's `typing` event is not in the AsyncAPI document yet: the project's drift
    # test names this command, which the owner runs once the project is installed.
    run([tool(venv, SCRIPT), "asyncapi", "--output", "docs/asyncapi.json"], cwd=project)
    run(["git", "add", "--all"], cwd=project)
    checks = pre_commit(project, venv, "--all-files")
    assert checks.returncode == 0, checks.stdout + checks.stderr
    project_tests(project, venv)  # the whole suite: test_variants.py counts on it


UPDATE_VARIANTS = [
    {"jwt_algorithm": "HS256", "tls_profile": "modern"},
    {"jwt_algorithm": "EdDSA"},
    {"python_version": "3.12"},
    {"python_version": "3.13", "jwt_algorithm": "ES256"},
]


@pytest.mark.parametrize(
    "answers", UPDATE_VARIANTS, ids=["-".join(a.values()) for a in UPDATE_VARIANTS]
)
def test_the_update_lands_cleanly_in_every_variant(
    history: Path, tmp_path: Path, answers: dict[str, str]
) -> None:
    project = project_at(history, tmp_path / "p", "v1.0.0", **answers)
    owner_edits(project)
    updated = copier_update(project)
    assert updated.returncode == 0, updated.stderr
    assert_fixed_and_ours(project)
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {question: recorded[question] for question in answers} == answers


@pytest.fixture
def conflicting(history: Path, tmp_path: Path) -> Path:
    """A project whose owner changed the very line the fix changes: copier exits 0 and
    leaves markers."""
    project = project_at(history, tmp_path / "p", "v1.0.0")
    settings = project / "src" / PACKAGE / "settings.py"
    edit(settings, TIMEOUT_OLD, TIMEOUT_OLD.replace("10.0", "15.0"))
    commit(project, "Our timeout")
    return project


def test_a_conflict_cannot_be_committed_and_fails_ci(conflicting: Path) -> None:
    project = conflicting
    venv = make_venv(project)
    updated = copier_update(project)
    assert updated.returncode == 0  # copier says nothing: the guards must
    assert f"UU src/{PACKAGE}/settings.py" in status(project)
    settings = project / "src" / PACKAGE / "settings.py"
    assert "<<<<<<< before updating" in settings.read_text()

    run([tool(venv, "pre-commit"), "install"], cwd=project)
    run(["git", "add", "--all"], cwd=project)
    refused = commit_through_hooks(project, "Update")
    assert refused.returncode != 0
    assert "no conflict markers" in refused.stdout + refused.stderr

    # Forced past the hook, it still fails CI's lint step (pre-commit over all files).
    run(["git", "commit", "--quiet", "--no-verify", "-m", "Update, forced"], cwd=project)
    ci = pre_commit(project, venv, "--all-files")
    assert ci.returncode != 0
    assert "no conflict markers" in ci.stdout

    # Resolved (the template's tighter value kept), both pass again.
    text = settings.read_text()
    ours, theirs = "<<<<<<< before updating\n", ">>>>>>> after updating\n"
    start, end = text.index(ours), text.index(theirs) + len(theirs)
    settings.write_text(text[:start] + f"    {TIMEOUT_NEW}\n" + text[end:])
    run([uv(), "lock", "--quiet"], cwd=project)
    run(["git", "add", "--all"], cwd=project)
    ci = pre_commit(project, venv, "--all-files")
    assert ci.returncode == 0, ci.stdout


# --- the template-update workflow's script ------------------------------------------------

FAILING_TOOL = "#!/bin/sh\necho 'error: {message}' >&2\nexit 1\n"


def tools_that_fail(directory: Path, **messages: str) -> Path:
    """A directory of stand-ins that fail as the real tool fails (a `uv` that cannot reach
    its index, a `gh` without a token), to put first on PATH."""
    directory.mkdir(exist_ok=True)
    for name, message in messages.items():
        (directory / name).write_text(FAILING_TOOL.format(message=message))
        (directory / name).chmod(0o755)
    return directory


def template_update(
    project: Path, *args: str, first_on_path: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """scripts/template_update.py as the workflow runs it, but outside CI (the projects here
    are copied from a local path, which the script refuses in CI) unless `env` says so."""
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS")}
    environ.update(hook_env(), **env)
    if first_on_path is not None:
        environ["PATH"] = os.pathsep.join([str(first_on_path), environ["PATH"]])
    return subprocess.run(  # noqa: S603 - this interpreter, the project's script
        [sys.executable, "scripts/template_update.py", *args],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def head(project: Path) -> str:
    return run(["git", "log", "-1", "--format=%s"], cwd=project).stdout.strip()


def branches(project: Path) -> list[str]:
    listed = run(["git", "branch", "--format=%(refname:short)"], cwd=project).stdout
    return listed.split()


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def assert_as_it_started(project: Path, subject: str) -> None:
    """The branch it started on, the same commit, nothing staged, changed or added, no
    update branch, and the git-ignored .env untouched."""
    assert status(project) == []
    assert run(["git", "branch", "--show-current"], cwd=project).stdout.strip() == "main"
    assert head(project) == subject
    assert branches(project) == ["main"]
    assert (project / ".env").read_text() == ENV


ENV = "SECURE_ROOMS_EVENTS_PER_SECOND=5\n"  # git-ignored: restoring must not clean it away


@pytest.fixture
def project(history: Path, tmp_path: Path) -> Path:
    project = project_at(history, tmp_path / "p", "v1.0.0")
    owner_edits(project)
    (project / ".env").write_text(ENV)
    return project


def test_template_update_prepares_a_branch_only_when_a_newer_release_exists(
    project: Path,
) -> None:
    prepared = template_update(project)
    assert prepared.returncode == 0, prepared.stderr
    branch = run(["git", "branch", "--show-current"], cwd=project).stdout.strip()
    assert branch == "template-update/1.0.1"
    assert head(project) == "Update from template 1.0.0 to 1.0.1"
    assert status(project) == []
    assert_fixed_and_ours(project)
    run([uv(), "lock", "--check", "--offline"], cwd=project)  # the script relocked

    again = template_update(project)
    assert again.returncode == 0, again.stderr
    assert "up to date: template 1.0.1" in again.stdout
    assert head(project) == "Update from template 1.0.0 to 1.0.1"


def test_template_update_on_conflicts_names_the_files_and_leaves_the_project_as_it_was(
    conflicting: Path,
) -> None:
    (conflicting / ".env").write_text(ENV)
    result = template_update(conflicting)
    assert result.returncode == 1
    assert f"the update conflicts in src/{PACKAGE}/settings.py" in last_line(result)
    assert "back on main as it was" in last_line(result)
    assert_as_it_started(conflicting, "Our timeout")  # nothing committed, nothing left

    rerun = template_update(conflicting)  # and a rerun starts clean, to the same report
    assert rerun.returncode == 1
    assert last_line(rerun) == last_line(result)


def test_template_update_keeps_the_conflicts_on_its_branch_only_when_asked(
    conflicting: Path,
) -> None:
    result = template_update(conflicting, "--keep-conflicts")
    assert result.returncode == 1
    assert f"conflicts in src/{PACKAGE}/settings.py: left on template-update/1.0.1" in (
        last_line(result)
    )
    assert run(["git", "branch", "--show-current"], cwd=conflicting).stdout.strip() == (
        "template-update/1.0.1"
    )
    assert f"UU src/{PACKAGE}/settings.py" in status(conflicting)


def test_template_update_restores_the_project_when_copier_update_fails(
    history: Path, tmp_path: Path
) -> None:
    """A newer release that cannot render (a template error) fails `copier update` midway."""
    broken = tmp_path / "broken"
    run(["git", "clone", "--quiet", history, broken], cwd=tmp_path)
    release(broken, "v1.0.2", lambda repo: (repo / "template/BROKEN.md.jinja").write_text("{{ x"))
    project = project_at(broken, tmp_path / "p", "v1.0.0")
    (project / ".env").write_text(ENV)
    result = template_update(project)
    assert result.returncode == 3, result.stderr
    assert last_line(result).startswith("copier update failed (exit 1): ")
    assert "back on main as it was, no template-update/1.0.2 left" in last_line(result)
    assert_as_it_started(project, "Project from template v1.0.0")


def test_template_update_restores_the_project_when_uv_lock_fails(project: Path) -> None:
    failing = tools_that_fail(project.parent / "bin", uv="Failed to fetch: pypi.org")
    result = template_update(project, first_on_path=failing)
    assert result.returncode == 3, result.stderr
    assert last_line(result) == (
        "uv lock failed (exit 1): error: Failed to fetch: pypi.org; "
        "the project is back on main as it was, no template-update/1.0.1 left"
    )
    assert_as_it_started(project, "Our changes")


def test_template_update_restores_the_project_when_a_commit_hook_refuses(project: Path) -> None:
    """The case seen in a project: a pre-commit hook that needed the network."""
    hook = project / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'fatal: unable to access the hook repository' >&2\nexit 1\n")
    hook.chmod(0o755)
    result = template_update(project)
    assert result.returncode == 3, result.stderr
    assert last_line(result).startswith(
        "git commit failed (exit 1): fatal: unable to access the hook repository; "
        "the project is back on main"
    )
    assert_as_it_started(project, "Our changes")
    hook.unlink()
    assert template_update(project).returncode == 0  # the rerun just works


def test_template_update_restores_the_project_when_its_branch_cannot_be_made(
    project: Path,
) -> None:
    """A branch named `template-update` leaves no room for `template-update/<version>`;
    restoring must not try to delete a branch it never made, nor the owner's."""
    run(["git", "branch", "template-update"], cwd=project)
    result = template_update(project)
    assert result.returncode == 3, result.stderr
    assert last_line(result).startswith("git switch failed (exit 128): ")
    assert "the project is back on main as it was" in last_line(result)
    assert status(project) == []
    assert branches(project) == ["main", "template-update"]


def origin(project: Path, *, refuse_pushes: bool = False) -> Path:
    """A bare repository as the project's origin; one whose hook refuses every push, or
    one that accepts them."""
    bare = project.parent / "origin.git"
    run(["git", "init", "--quiet", "--bare", bare], cwd=project.parent)
    if refuse_pushes:
        hook = bare / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\necho 'protected: pushes are refused' >&2\nexit 1\n")
        hook.chmod(0o755)
    run(["git", "remote", "add", "origin", bare], cwd=project)
    return bare


def test_template_update_restores_the_project_when_the_push_fails(project: Path) -> None:
    origin(project, refuse_pushes=True)
    gh = tools_that_fail(project.parent / "bin", gh="gh must not be reached")
    result = template_update(project, "--open-pr", first_on_path=gh)
    assert result.returncode == 3, result.stderr
    assert last_line(result).startswith("git push failed (exit 1): ")
    assert "back on main as it was, no template-update/1.0.1 left" in last_line(result)
    assert "gh must not be reached" not in result.stderr
    assert_as_it_started(project, "Our changes")


def test_template_update_restores_the_project_and_origin_when_the_pull_request_fails(
    project: Path,
) -> None:
    bare = origin(project)
    gh = tools_that_fail(project.parent / "bin", gh="HTTP 403: Resource not accessible")
    result = template_update(project, "--open-pr", first_on_path=gh)
    assert result.returncode == 3, result.stderr
    assert last_line(result) == (
        "gh pr create failed (exit 1): error: HTTP 403: Resource not accessible; "
        "the project is back on main as it was, no template-update/1.0.1 left"
    )
    assert_as_it_started(project, "Our changes")
    # The pushed branch is gone too: a rerun would otherwise take it for a waiting review.
    assert run(["git", "branch", "--list"], cwd=bare).stdout == ""


def test_template_update_without_gh_does_not_start(project: Path) -> None:
    assert shutil.which("gh", path=hook_env()["PATH"]) is None  # as on this machine
    origin(project)
    result = template_update(project, "--open-pr")
    assert result.returncode == 2
    assert last_line(result) == "gh is not on PATH: install GitHub CLI, or run without --open-pr"
    assert_as_it_started(project, "Our changes")


def test_template_update_needs_a_clean_worktree(history: Path, tmp_path: Path) -> None:
    project = project_at(history, tmp_path / "p", "v1.0.0")
    (project / "README.md").write_text("changed\n")
    result = template_update(project)
    assert result.returncode == 2
    assert "not clean" in result.stderr


# Local _src_path: every project in these tests is copied from a local path, as a project
# copied from a checkout is; the scheduled job on GitHub cannot reach such a path.


def test_template_update_warns_that_a_local_template_path_is_out_of_ci_reach(
    history: Path, tmp_path: Path
) -> None:
    project = project_at(history, tmp_path / "p", "v1.0.1")
    result = template_update(project)
    assert result.returncode == 0, result.stderr
    unreachable = "the template-update workflow cannot reach it"
    fix = "to the template's URL (gh:owner/repo or https://host/owner/repo.git)"
    assert result.stderr.strip().splitlines() == [
        f"warning: _src_path is a local path ({history}): {unreachable}; "
        f"set _src_path in .copier-answers.yml {fix}, or recopy from that URL"
    ]
    assert "up to date: template 1.0.1" in result.stdout


@pytest.mark.parametrize("variable", ["CI", "GITHUB_ACTIONS"])
def test_template_update_in_ci_refuses_a_local_template_path(
    project: Path, history: Path, variable: str
) -> None:
    result = template_update(project, **{variable: "true"})
    assert result.returncode == 2
    assert last_line(result).startswith(f"_src_path is a local path ({history}): ")
    assert_as_it_started(project, "Our changes")


def test_template_update_in_ci_updates_a_project_that_records_a_url(
    project: Path, history: Path
) -> None:
    """The answers name the template by URL (gh:...); git maps that URL to the local
    release history and may use no other protocol, so nothing leaves this machine."""
    answers = project / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace(f"_src_path: {history}", "_src_path: gh:o/t"))
    commit(project, "Template by URL")
    result = template_update(
        project,
        CI="true",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"url.{history}.insteadOf",
        GIT_CONFIG_VALUE_0="https://github.com/o/t.git",
        GIT_ALLOW_PROTOCOL="file",
    )
    assert result.returncode == 0, result.stderr
    assert "_src_path" not in result.stderr
    assert head(project) == "Update from template 1.0.0 to 1.0.1"
    assert "_src_path: gh:o/t" in answers.read_text()


# --- migrations (hooks/) ----------------------------------------------------------------

# A migration as hooks/README.md asks for one: a script in hooks/, run by Copier with
# {{ _copier_python }} in the project after the update, that does what a merge cannot
# (here: rename a setting inside the git-ignored .env), and does nothing the second time.
RENAME_SETTING = '''"""Rename SECURE_ROOMS_AUTH_DEADLINE in .env: now CONNECT_TIMEOUT_SECONDS."""
from pathlib import Path

OLD, NEW = "SECURE_ROOMS_AUTH_DEADLINE=", "SECURE_ROOMS_CONNECT_TIMEOUT_SECONDS="
env = Path(".env")
if env.is_file():
    lines = env.read_text().splitlines(keepends=True)
    renamed = [NEW + line[len(OLD) :] if line.startswith(OLD) else line for line in lines]
    env.write_text("".join(renamed))
'''
MIGRATIONS = """
_migrations:
  - version: v1.1.0
    command: ["{{ _copier_python }}", "{{ _copier_conf.src_path }}/hooks/rename_setting.py"]
"""


def add_migration(repo: Path) -> None:
    (repo / "hooks" / "rename_setting.py").write_text(RENAME_SETTING)
    with (repo / "copier.yml").open("a") as config:
        config.write(MIGRATIONS)


def test_an_update_needs_trust_only_when_it_crosses_a_migration(tmp_path: Path) -> None:
    repo = template_history(
        tmp_path / "history", [("v1.0.0", old_release), ("v1.0.1", fixed_release)]
    )
    release(repo, "v1.1.0", add_migration)
    release(repo, "v1.1.1", lambda repo: edit(repo / "README.md", "# ", "# (1.1.1) "))
    project = project_at(repo, tmp_path / "p", "v1.0.1")
    env = project / ".env"  # git-ignored: the merge never sees it
    env.write_text("SECURE_ROOMS_AUTH_DEADLINE=3\n")

    refused = copier_update(project, "--vcs-ref", "v1.1.0")
    assert refused.returncode != 0
    assert "--trust" in refused.stderr
    assert "migrations" in refused.stderr
    assert status(project) == []
    assert "_commit: v1.0.1" in (project / ".copier-answers.yml").read_text()

    trusted = copier_update(project, "--vcs-ref", "v1.1.0", "--trust")
    assert trusted.returncode == 0, trusted.stderr
    assert env.read_text() == "SECURE_ROOMS_CONNECT_TIMEOUT_SECONDS=3\n"
    run([sys.executable, repo / "hooks" / "rename_setting.py"], cwd=project)  # idempotent
    assert env.read_text() == "SECURE_ROOMS_CONNECT_TIMEOUT_SECONDS=3\n"
    commit(project, "Update to 1.1.0")

    # An update that does not cross the migration's version needs no trust.
    later = copier_update(project, "--vcs-ref", "v1.1.1")
    assert later.returncode == 0, later.stderr
    assert "_commit: v1.1.1" in (project / ".copier-answers.yml").read_text()


# --- releases ---------------------------------------------------------------------------


def test_every_release_in_the_changelog_says_what_an_update_brings() -> None:
    """Keep a Changelog sections, newest first; each says whether it is a security release
    and which rendered files it removes or moves (Copier deletes them in projects)."""
    sections = re.split(r"^## ", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)[1:]
    assert sections[0].startswith("[Unreleased]\n")
    versions = []
    for section in sections:
        heading = section.splitlines()[0]
        match = re.fullmatch(r"\[(Unreleased|\d+\.\d+\.\d+)\](?: - (\d{4}-\d{2}-\d{2}))?", heading)
        assert match, heading
        assert re.search(r"^- \*\*Security release\*\*: (yes|no)\b", section, re.MULTILINE), heading
        assert re.search(r"^- \*\*Files removed or moved\*\*: \S", section, re.MULTILINE), heading
        if match[1] != "Unreleased":
            assert match[2], f"{heading}: a release has a date"
            versions.append(tuple(int(part) for part in match[1].split(".")))
    assert versions
    assert versions == sorted(versions, reverse=True)

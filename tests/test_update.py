"""C18: the template's security fixes reach existing projects through `copier update`.

Each test builds template releases on the spot (tests/updates.py): v1.0.0 is this tree
before a realistic security fix (an older PyJWT floor, a 10 s authentication deadline,
the previous actions/checkout pin, no SECURITY.md); v1.0.1 is this tree. A project is made
from v1.0.0, its owner changes it as owners do (a new event handler, a changed setting,
README text), and it is updated without --trust.
"""

from __future__ import annotations

import re
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
    commit_through_hooks,
    hooked,
    make_venv,
    pre_commit,
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
    run(["git", "add", "--all"], cwd=project)
    checks = pre_commit(project, venv, "--all-files")
    assert checks.returncode == 0, checks.stdout + checks.stderr
    tests = run([tool(venv, "pytest"), "-q", "-p", "no:cacheprovider"], cwd=project, timeout=900)
    assert " passed" in tests.stdout
    assert " failed" not in tests.stdout


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


def template_update(project: Path) -> subprocess.CompletedProcess[str]:
    """scripts/template_update.py as the workflow runs it, without --open-pr (no remote)."""
    return hooked([sys.executable, "scripts/template_update.py"], project, timeout=300)


def head(project: Path) -> str:
    return run(["git", "log", "-1", "--format=%s"], cwd=project).stdout.strip()


def test_template_update_prepares_a_branch_only_when_a_newer_release_exists(
    history: Path, tmp_path: Path
) -> None:
    project = project_at(history, tmp_path / "p", "v1.0.0")
    owner_edits(project)
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


def test_template_update_fails_loudly_on_conflicts(conflicting: Path) -> None:
    result = template_update(conflicting)
    assert result.returncode == 1
    assert f"src/{PACKAGE}/settings.py" in result.stderr
    assert head(conflicting) == "Our timeout"  # nothing committed


def test_template_update_needs_a_clean_worktree(history: Path, tmp_path: Path) -> None:
    project = project_at(history, tmp_path / "p", "v1.0.0")
    (project / "README.md").write_text("changed\n")
    result = template_update(project)
    assert result.returncode == 2
    assert "not clean" in result.stderr


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

"""Releases and what projects are told about them (C16, C18).

The current release named in docs/releasing.md is the CHANGELOG's newest version, and no
tag of this repository is ahead of the CHANGELOG. A rendered project's SECURITY.md lists
every workflow's permissions exactly as the workflows ask for them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.version import InvalidVersion, Version

from harness import ROOT, render, run

SEMVER = re.compile(r"\d+\.\d+\.\d+")  # what the CHANGELOG promises: X.Y.Z, no suffix
RELEASED = re.compile(r"^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$", re.MULTILINE)
CURRENT = re.compile(r"^The current release: \*\*(v[^*]+)\*\*", re.MULTILINE)


def changelog_versions(text: str) -> list[Version]:
    """The released versions of a CHANGELOG, in the order of their sections."""
    versions = []
    for found in RELEASED.findall(text):
        assert SEMVER.fullmatch(found), f"CHANGELOG version {found!r} is not X.Y.Z"
        versions.append(Version(found))
    return versions


def release_tags(repo: Path) -> dict[Version, str]:
    """The repository's `v*` tags that Copier takes for releases (PEP 440), by version."""
    listed = run(["git", "tag", "--list", "v*"], cwd=repo).stdout.split()
    tags = {}
    for tag in listed:
        try:
            tags[Version(tag)] = tag
        except InvalidVersion:
            continue  # Copier ignores it too
    return tags


def assert_tags_behind_the_changelog(repo: Path, released: list[Version]) -> None:
    """Every release tag names a CHANGELOG section, is annotated, and none is ahead."""
    for version, tag in release_tags(repo).items():
        if version.is_prerelease:
            continue
        assert version <= released[0], f"tag {tag} is newer than the CHANGELOG's {released[0]}"
        assert version in released, f"tag {tag} has no section in CHANGELOG.md"
        kind = run(["git", "cat-file", "-t", tag], cwd=repo).stdout.strip()
        assert kind == "tag", f"tag {tag} is not annotated: git tag --annotate"


def test_the_documented_current_release_is_the_changelogs_newest() -> None:
    released = changelog_versions((ROOT / "CHANGELOG.md").read_text())
    assert released, "CHANGELOG.md has no released section"
    assert released == sorted(released, reverse=True)
    documented = CURRENT.search((ROOT / "docs" / "releasing.md").read_text())
    assert documented, "docs/releasing.md names no current release"
    tag = documented[1]
    assert Version(tag) == released[0], f"docs/releasing.md says {tag}, CHANGELOG {released[0]}"
    assert tag == f"v{released[0]}"
    assert not Version(tag).is_prerelease


def test_no_tag_of_this_repository_is_ahead_of_the_changelog() -> None:
    released = changelog_versions((ROOT / "CHANGELOG.md").read_text())
    assert_tags_behind_the_changelog(ROOT, released)


def test_a_tag_ahead_of_the_changelog_or_unannotated_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a scratch repository with tags this one may not have."""
    run(["git", "init", "--quiet", "--initial-branch", "main"], cwd=tmp_path)
    run(["git", "commit", "--quiet", "--allow-empty", "-m", "Release"], cwd=tmp_path)
    released = changelog_versions("## [1.1.0] - 2026-11-30\n\n## [1.0.0] - 2026-11-26\n")
    run(["git", "tag", "--annotate", "v1.0.0", "-m", "1.0.0"], cwd=tmp_path)
    run(["git", "tag", "v1.2.0rc1"], cwd=tmp_path)  # prereleases reach no project
    assert_tags_behind_the_changelog(tmp_path, released)
    run(["git", "tag", "v1.1.0"], cwd=tmp_path)
    with pytest.raises(AssertionError, match=re.escape("v1.1.0 is not annotated")):
        assert_tags_behind_the_changelog(tmp_path, released)
    run(["git", "tag", "--delete", "v1.1.0"], cwd=tmp_path)
    run(["git", "tag", "--annotate", "v1.1.1", "-m", "1.1.1"], cwd=tmp_path)
    with pytest.raises(AssertionError, match=re.escape("v1.1.1 is newer than the CHANGELOG")):
        assert_tags_behind_the_changelog(tmp_path, released)


# --- the workflows' permissions in a project's SECURITY.md ----------------------------

ROW = re.compile(r"^\| `(\.github/workflows/[^`]+)` \| (\(workflow\)|`[^`]+`) \| (.+) \|$")


def permissions_cell(permissions: object) -> str:
    """A `permissions:` value as SECURITY.md's table writes it."""
    if permissions == {}:
        return "none"
    if isinstance(permissions, str):  # read-all, write-all
        return f"`{permissions}`"
    assert isinstance(permissions, dict), permissions
    return ", ".join(f"`{scope}: {access}`" for scope, access in sorted(permissions.items()))


def asked(project: Path) -> set[tuple[str, str, str]]:
    """(workflow, job or "(workflow)", permissions) for every rendered workflow and job; a
    job without its own `permissions` inherits the workflow's and is listed so."""
    rows = set()
    for path in sorted((project / ".github" / "workflows").glob("*.y*ml")):
        workflow = yaml.safe_load(path.read_text())
        name = path.relative_to(project).as_posix()
        assert "permissions" in workflow, f"{name} sets no top-level permissions"
        rows.add((name, "(workflow)", permissions_cell(workflow["permissions"])))
        for job_id, job in workflow["jobs"].items():
            own = permissions_cell(job["permissions"]) if "permissions" in job else "inherited"
            rows.add((name, f"`{job_id}`", own))
    return rows


def listed(security: str) -> set[tuple[str, str, str]]:
    rows = [ROW.match(line) for line in security.splitlines()]
    return {(row[1], row[2], row[3]) for row in rows if row}


def test_security_md_lists_each_workflows_permissions_exactly(tmp_path: Path) -> None:
    project = render(tmp_path / "p")
    security = (project / "SECURITY.md").read_text()
    documented, actual = listed(security), asked(project)
    assert documented == actual, (
        f"SECURITY.md lists {sorted(documented - actual)} but the workflows ask for "
        f"{sorted(actual - documented)}"
    )
    # The write access is explained with what it needs from the repository.
    assert "Allow GitHub Actions to create and approve pull requests" in security
    assert "nothing more" not in security

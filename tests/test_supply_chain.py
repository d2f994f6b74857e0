"""C15 to C17, the supply chain, for rendered projects and for this repository.

C15: a project starts with a uv.lock (hashes, every supported Python) that matches its
pyproject.toml, and the lock holds no package with a known vulnerability. C16: every
workflow follows the CI rules, and the linters that guard them (zizmor, actionlint, the
schemas) go red on each kind of break. C17 and C18's guard: a project's own pre-commit hooks
refuse a commit with a secret, a private key, conflict markers or an update's leftovers.
The pins in the rendered workflows agree with the ones Dependabot updates here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from advisories import audit_requirements
from harness import (
    PACKAGE,
    PYTHON_VERSIONS,
    ROOT,
    commit_through_hooks,
    copy_worktree,
    git_init,
    hook_env,
    interpreter,
    interpreters,
    make_venv,
    pre_commit,
    render,
    run,
    tool,
    tooling,
    uv,
)

USES = re.compile(r"^[ -]*uses: *([^@\s]+)@(\S+)(?: +# +(\S+))?\s*$", re.MULTILINE)
SHA = re.compile(r"^[0-9a-f]{40}$")
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"


@pytest.fixture(scope="module")
def by_python(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default project rendered for each supported Python (workflows and lock differ)."""
    base = tmp_path_factory.mktemp("python")
    return {version: render(base / version, python_version=version) for version in PYTHON_VERSIONS}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A new project as its owner starts it: rendered, `uv sync --locked`, git, the hooks
    installed, and a first commit that goes through them."""
    project = render(tmp_path_factory.mktemp("project") / "p")
    venv = make_venv(project)
    git_init(project)
    run([tool(venv, "pre-commit"), "install"], cwd=project)
    run(["git", "commit", "--quiet", "-m", "New project"], cwd=project, env=hook_env())
    return project, venv


def commits(project: Path) -> int:
    return int(run(["git", "rev-list", "--count", "HEAD"], cwd=project).stdout)


def workflow_files(root: Path) -> list[Path]:
    return sorted((root / ".github" / "workflows").glob("*.yml"))


def pins(paths: list[Path]) -> dict[str, set[tuple[str, str | None]]]:
    """Every action a set of workflows uses, with its ref and version comment."""
    found: dict[str, set[tuple[str, str | None]]] = {}
    for path in paths:
        for action, ref, version in USES.findall(path.read_text()):
            found.setdefault(action, set()).add((ref, version or None))
    return found


# --- C15: the lock -----------------------------------------------------------------------


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_each_rendered_lock_matches_its_pyproject(by_python: dict[str, Path], version: str) -> None:
    """`uv lock --check` resolves the project again and fails on any difference. It needs
    an interpreter of that Python: a version this machine lacks (3.14) has the resolution
    of the newest one it has, checked here file by file, and its CI's `uv sync --locked`
    on that Python checks it again."""
    project = by_python[version]
    lock = (project / "uv.lock").read_text()
    assert lock == (ROOT / "locks" / f"python{version}" / "uv.lock").read_text()
    assert f'requires-python = ">={version}"' in lock
    if version in interpreters():
        run([uv(), "lock", "--check", "--python", interpreter(version)], cwd=project)
        return
    newest = max(interpreters(), key=lambda v: tuple(map(int, v.split("."))))
    same = (ROOT / "locks" / f"python{newest}" / "uv.lock").read_text()
    floor = 'requires-python = ">={}"'
    assert lock == same.replace(floor.format(newest), floor.format(version))
    run([uv(), "lock", "--check", "--python", interpreter(newest)], cwd=by_python[newest])
    import tomllib

    tag = "cp" + version.replace(".", "")
    for package in tomllib.loads(lock)["package"]:
        # name-version[-build]-python-abi-platform.whl: a wheel for one Python's ABI only
        # (cp313-cp313) leaves that Python without it unless one is for this Python.
        tags = [
            wheel["url"].rsplit("/", 1)[1].split("-")[-3:-1] for wheel in package.get("wheels", [])
        ]
        if tags and all(abi not in ("none", "abi3") for _, abi in tags):
            assert any(python == tag for python, _ in tags), package["name"]


def test_a_renamed_project_keeps_a_valid_lock(tmp_path: Path) -> None:
    project = render(tmp_path / "p", project_name="Zeta Chat")
    lock = (project / "uv.lock").read_text()
    assert '\nname = "zeta-chat"\n' in lock
    assert '\nname = "secure-rooms"\n' not in lock
    run([uv(), "lock", "--check", "--python", sys.executable], cwd=project)


def test_every_locked_file_has_a_hash(by_python: dict[str, Path]) -> None:
    import tomllib

    for project in by_python.values():
        lock = tomllib.loads((project / "uv.lock").read_text())
        for package in lock["package"]:
            if "registry" not in package["source"]:
                continue  # the project itself
            files = [
                *package.get("wheels", []),
                *([package["sdist"]] if "sdist" in package else []),
            ]
            assert files, package["name"]
            assert all(file["hash"].startswith("sha256:") for file in files), package["name"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_no_locked_package_has_a_known_vulnerability(
    by_python: dict[str, Path], version: str, tmp_path: Path
) -> None:
    """What the rendered audit workflow runs: the exported lock, then pip-audit over it."""
    project = by_python[version]
    requirements = tmp_path / "requirements.txt"
    run(
        [uv(), "export", "--quiet", "--frozen", "--all-groups", "--no-emit-project",
         "--format", "requirements-txt", "--output-file", requirements],
        cwd=project,
    )  # fmt: skip
    report = audit_requirements(requirements)
    print(report.summary())
    assert report.audited >= 80, report.summary()
    assert not report.vulnerabilities, report.summary()


# --- C16: the workflows ------------------------------------------------------------------


def all_workflows(by_python: dict[str, Path]) -> list[Path]:
    rendered = [path for project in by_python.values() for path in workflow_files(project)]
    return rendered + workflow_files(ROOT)


# The only jobs that write, by workflow file and job: a project's update job pushes a branch
# and opens a pull request; this repository's Pages deployment publishes the docs site.
WRITES = {
    ("template-update.yml", "update"): {"contents": "write", "pull-requests": "write"},
    ("docs.yml", "deploy"): {"pages": "write", "id-token": "write"},
}


def test_workflows_follow_the_ci_rules(by_python: dict[str, Path]) -> None:
    """Least privilege, pinned actions, no persisted credentials, no pull_request_target,
    no expression in a shell script: in every rendered workflow and in this repository's."""
    for path in all_workflows(by_python):
        text = path.read_text()
        workflow = yaml.safe_load(text)
        triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
        assert "pull_request_target" not in triggers, path
        assert workflow["permissions"] == {}, path
        for name, job in workflow["jobs"].items():
            assert "write-all" not in str(job.get("permissions")), (path, name)
            allowed = WRITES.get((path.name, name), {})
            assert job["permissions"] == (allowed or job["permissions"]), (path, name)
            writes = {scope for scope, level in job["permissions"].items() if level != "read"}
            assert writes <= set(allowed), (path, name)
            assert job["timeout-minutes"] <= 45, (path, name)
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path, name, step)
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, (path, name)
        for action, ref, version in USES.findall(text):
            assert SHA.match(ref), (path, action, ref)
            assert version, (path, action)
            assert version.startswith("v"), (path, action)


def test_live_tests_in_ci_run_on_a_python_whose_openssl_the_server_reaches(
    by_python: dict[str, Path],
) -> None:
    """The rendered CI's live tests run on setup-python's CPython, never on a build uv
    downloads (python-build-standalone hides OpenSSL's symbols: tlsgroups falls back to
    P-256 alone and the X25519 handshake test fails)."""
    for project in by_python.values():
        job = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())["jobs"]["test"]
        assert job["env"]["UV_PYTHON_PREFERENCE"] == "only-system"
        assert job["env"]["UV_PYTHON"] == "${{ matrix.python }}"
        setup = [step for step in job["steps"] if "actions/setup-python@" in step.get("uses", "")]
        assert [step["with"]["python-version"] for step in setup] == ["${{ matrix.python }}"]


def test_rendered_pins_agree_with_the_ones_dependabot_updates(by_python: dict[str, Path]) -> None:
    """Dependabot updates plain workflow files (here and template/.github/workflows/*.yml)
    but not .jinja ones: every pin a project receives must be one of those, and they must
    agree with each other, so a Dependabot pull request that misses one fails here."""
    plain = workflow_files(ROOT) + workflow_files(ROOT / "template")
    reference = pins(plain)
    for action, refs in reference.items():
        assert len(refs) == 1, f"{action} is pinned to different commits: {refs}"
    for project in by_python.values():
        for action, refs in pins(workflow_files(project)).items():
            assert refs == reference.get(action), (action, refs, reference.get(action))
    assert "actions/checkout" in reference
    assert "astral-sh/setup-uv" in reference


def breaks(file: str, old: str, new: str) -> Callable[[Path], None]:
    """An edit of one of the project's supply-chain files that must turn a linter red."""

    def edit(project: Path) -> None:
        path = project / file
        text = path.read_text()
        assert old in text, f"stale breakage: {old!r} is not in {file}"
        path.write_text(text.replace(old, new, 1))

    return edit


def break_workflow(old: str, new: str) -> Callable[[Path], None]:
    return breaks(".github/workflows/ci.yml", old, new)


def break_dependabot(old: str, new: str) -> Callable[[Path], None]:
    return breaks(".github/dependabot.yml", old, new)


def zizmor(project: Path, venv: Path) -> list[str]:
    return [str(tool(venv, "zizmor")), "--offline", ".github"]


def actionlint(project: Path, venv: Path) -> list[str]:
    return [str(tooling("actionlint")), ".github/workflows/ci.yml"]


def workflow_schema(project: Path, venv: Path) -> list[str]:
    checker = str(tool(venv, "check-jsonschema"))
    return [checker, "--builtin-schema", "vendor.github-workflows", ".github/workflows/ci.yml"]


def dependabot_schema(project: Path, venv: Path) -> list[str]:
    checker = str(tool(venv, "check-jsonschema"))
    return [checker, "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml"]


JOB_PERMISSIONS = "    permissions:\n      contents: read\n"
INJECTION = '      - run: echo "${{ github.event.pull_request.title }}"\n'
BREAKAGES = [
    ("unpinned-action", break_workflow(CHECKOUT, "actions/checkout@v7"), zizmor, "unpinned-uses"),
    (
        "permissions-write-all",
        break_workflow(JOB_PERMISSIONS, "    permissions: write-all\n"),
        zizmor,
        "excessive-permissions",
    ),
    (
        "event-in-run",
        break_workflow(
            "      - run: uv sync --locked\n", INJECTION + "      - run: uv sync --locked\n"
        ),
        zizmor,
        "template-injection",
    ),
    (
        "event-in-run",
        break_workflow(
            "      - run: uv sync --locked\n", INJECTION + "      - run: uv sync --locked\n"
        ),
        actionlint,
        "potentially untrusted",
    ),
    (
        "credentials-persisted",
        break_workflow("        with:\n          persist-credentials: false\n", ""),
        zizmor,
        "artipacked",
    ),
    (
        "pull-request-target",
        break_workflow("  pull_request:\n", "  pull_request_target:\n"),
        zizmor,
        "dangerous-triggers",
    ),
    (
        "misspelt-key",
        break_workflow("    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n"),
        workflow_schema,
        "runs_on",
    ),
    (
        "misspelt-key",
        break_workflow("    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n"),
        actionlint,
        "runs_on",
    ),
    (
        "no-cooldown",
        break_dependabot("    cooldown:\n      default-days: 7\n      semver-major-days: 14\n", ""),
        zizmor,
        "dependabot-cooldown",
    ),
    (
        "zero-cooldown",
        break_dependabot("default-days: 7", "default-days: 0"),
        dependabot_schema,
        "default-days",
    ),
]


@pytest.mark.parametrize(
    ("breakage", "linter", "finding"),
    [(edit, linter, finding) for _, edit, linter, finding in BREAKAGES],
    ids=[f"{name}-{linter.__name__}" for name, _, linter, _ in BREAKAGES],
)
def test_each_linter_goes_red_on_a_broken_workflow(
    project: tuple[Path, Path],
    breakage: Callable[[Path], None],
    linter: Callable[[Path, Path], list[str]],
    finding: str,
) -> None:
    path, venv = project
    command = linter(path, venv)
    run(command, cwd=path)  # the project as rendered passes
    breakage(path)
    try:
        result = subprocess.run(command, cwd=path, capture_output=True, text=True, check=False)  # noqa: S603
        assert result.returncode != 0, result.stdout + result.stderr
        assert finding in result.stdout + result.stderr
    finally:
        run(["git", "checkout", "--", ".github"], cwd=path)


# --- C17 and C18: what the hooks refuse ----------------------------------------------------

PEM = (
    "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END " + "RSA PRIVATE KEY-----\n"
)
COPIER_CONFLICT = (
    "<<<<<<< before updating\n"
    "Our own text.\n"
    "=======\n"
    "The template's new text.\n"
    ">>>>>>> after updating\n"
)
CLOUD_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # pragma: allowlist secret
HEX_SECRET = "3f1c9a7e55b2d8c04e6a1f9b7d3c2e8a5b0f4d6c9e1a7b3f"  # pragma: allowlist secret
PLANTED = [
    (
        "cloud-secret",
        f"src/{PACKAGE}/local_settings.py",
        f'AWS_SECRET_ACCESS_KEY = "{CLOUD_SECRET}"\n',
        "no secrets",
    ),
    (
        "signing-secret",
        f"src/{PACKAGE}/keys_local.py",
        f'SIGNING_KEY = "{HEX_SECRET}"\n',
        "no secrets",
    ),
    ("private-key", "deploy/server-key.txt", PEM, "no private keys"),
    ("copier-conflict", "README.md", COPIER_CONFLICT, "no conflict markers"),
    ("update-leftover", f"src/{PACKAGE}/server.py.rej", "@@ -1 +1 @@\n", "no *.rej or *.orig"),
]


@pytest.mark.parametrize(
    ("path", "content", "hook"), [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED]
)
def test_the_hooks_refuse_a_commit(
    project: tuple[Path, Path], path: str, content: str, hook: str
) -> None:
    root, _ = project
    before = commits(root)
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path == "README.md":
            target.write_text(target.read_text() + content)
        else:
            target.write_text(content)
        run(["git", "add", path], cwd=root)
        result = commit_through_hooks(root, "planted")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        failed = [line for line in output.splitlines() if line.endswith("Failed")]
        assert any(line.startswith(hook) for line in failed), output
        assert commits(root) == before
    finally:
        run(["git", "reset", "--quiet", "--hard"], cwd=root)
        run(["git", "clean", "--quiet", "-fd"], cwd=root)


def test_conflict_markers_fail_the_ci_lint_step(project: tuple[Path, Path]) -> None:
    """CI runs `pre-commit run --all-files`: a conflict committed with --no-verify fails it."""
    root, venv = project
    readme = root / "README.md"
    readme.write_text(readme.read_text() + COPIER_CONFLICT)
    try:
        run(["git", "commit", "--quiet", "--no-verify", "-am", "conflict"], cwd=root)
        result = pre_commit(root, venv, "--all-files")
        assert result.returncode != 0
        assert re.search(r"^no conflict markers\.+Failed$", result.stdout, re.MULTILINE)
    finally:
        run(["git", "reset", "--quiet", "--hard", "HEAD~1"], cwd=root)


def test_gitignore_keeps_secrets_and_dev_pki_out(project: tuple[Path, Path]) -> None:
    root, _ = project
    for path in (".env", ".env.local", "certs/ca.pem", "server.key", "jwt.pem", "client.p12"):
        assert run(["git", "check-ignore", "--quiet", "--no-index", path], cwd=root).returncode == 0
    for path in (".env.example", "src/x.py.rej", "uv.lock"):
        result = subprocess.run(  # noqa: S603
            ["git", "check-ignore", "--quiet", "--no-index", path], cwd=root, check=False
        )
        assert result.returncode == 1, path


# --- the pre-commit configurations ----------------------------------------------------------


def test_pre_commit_configs_are_valid(project: tuple[Path, Path]) -> None:
    root, venv = project
    run([tool(venv, "pre-commit"), "validate-config", ".pre-commit-config.yaml"], cwd=root)
    run([tooling("pre-commit"), "validate-config", ".pre-commit-config.yaml"], cwd=ROOT)


def test_this_repository_passes_its_own_checks(tmp_path: Path) -> None:
    """The template repository's pre-commit hooks over all its files (a copy of the
    working tree, so that nothing here is rewritten), and actionlint over its workflows."""
    copy = copy_worktree(tmp_path / "repo")
    (copy / ".venv").symlink_to(Path(sys.executable).parent.parent)
    git_init(copy)
    result = subprocess.run(  # noqa: S603
        [str(tooling("pre-commit")), "run", "--color", "never", "--all-files"],
        cwd=copy,
        env={**os.environ, **hook_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ruff check" in result.stdout
    run([tooling("actionlint"), *workflow_files(ROOT)], cwd=ROOT)
    run([tooling("zizmor"), "--offline", "--persona", "pedantic", ".github"], cwd=ROOT)

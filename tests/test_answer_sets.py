"""Every valid answer works: answer sets chosen to be awkward, each rendered into a fresh git
repository and held to the project's own pre-commit hooks (ruff check, ruff format, mypy
--strict, secrets, YAML/TOML, workflow schemas, zizmor; all but actionlint, which needs the
Go module proxy).

The sets are drawn from a seed: a failure names it, and `ANSWER_SETS_SEED=<seed>` runs the
same sets again. Project names are chosen around every module the rendered project and its
tests import (read from a rendered project, so the list stays true): a package name that
sorts just before or after one of them must not change any import block.

Each set's AsyncAPI document (docs/asyncapi.json) is compared with what its own generator
makes, and goes through the official parser: awkward answers are where the template's copy
and the generator could part.

Cost: one virtual environment (the default project's, made from its lock) serves every set
as its `.venv`: mypy finds the rendered package through its `files` setting (src/), not
through the installed project, and the hooks run with `UV_NO_SYNC=1`. mypy's cache is
shared by the sets of one xdist worker.
"""

from __future__ import annotations

import ast
import keyword
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncapi_docs import DOCUMENT, parse, stale

from harness import (
    ALGORITHMS,
    PROFILES,
    PYTHON_VERSIONS,
    ROOT,
    git_init,
    make_venv,
    pre_commit,
    render,
)

SEED_VARIABLE = "ANSWER_SETS_SEED"
SEED = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
SETS = 32
BATCHES = 8
# No *.rej files in a new project; actionlint is built from its Go module (no network here;
# tests/test_variants.py runs a stand-in build on the workflows).
NOT_RUN_HERE = {"update-leftovers", "actionlint"}

QUESTIONS = yaml.safe_load((Path(__file__).parent.parent / "copier.yml").read_text())
# What validators allow, on purpose: quotes, non-ASCII letters, Markdown, TOML and Python
# punctuation, Jinja-looking text.
WORDS = (
    "realtime", "chat", "service", "it's", "l'équipe", "Über", "naïve", "café", "Łódź",
    "São Paulo", "日本語", "Ωmega", "señor", "Øresund", "straße", "#1", "{{ x }}", "{% y %}",
    "100%", "a&b", "<tag>", "$HOME", "`code`", "a|b", "~tilde", "*star*", "@team", "!bang",
    "why?", "semi;colon", "k=v", "1+1", "'single'", "[link](x)", "C:/path", "'''", "#",
)  # fmt: skip
ISSUER_CHARS = "".join(
    chr(code) for code in range(0x21, 0x7F) if chr(code) not in {'"', "\\"}
)  # the validator's printable set: no space, double quote or backslash
DESCRIPTION_MAX, AUTHOR_MAX, ISSUER_MAX = 200, 100, 200
CREDENTIALS = re.compile(r"://[^{}\s]+:[^{}\s]+@")


def package_of(project_name: str) -> str:
    """copier.yml's package_name, as it derives it from the project name."""
    return re.sub(r"^_|_$", "", re.sub(r"[^a-z0-9]+", "_", project_name.lower()))


def imported_modules(project: Path) -> set[str]:
    """Top-level names of every module the project's Python files import, and the names of
    its test modules (tests/*.py import each other: `live`)."""
    names = {path.stem for path in (project / "tests").glob("*.py")}
    for path in project.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def refused_packages() -> set[str]:
    """The package names copier.yml's project_name validator lists as refused, and the
    standard library's modules it refuses from includes/stdlib.jinja."""
    listed = set(re.findall(r"'([a-z0-9_]+)'", QUESTIONS["project_name"]["validator"]))
    stdlib = (ROOT / "includes" / "stdlib.jinja").read_text()
    body = stdlib[stdlib.index("stdlib_modules() -%}") : stdlib.index("{%- endmacro")]
    return listed | set(body.split()[2:])


def is_refused(package: str) -> bool:
    return package in refused_packages() or package.startswith("test_")


def spell(rng: random.Random, package: str) -> str:
    """A project name that gives `package`: any case, separators as space, '-' or '_'."""
    parts = package.split("_")
    words = [rng.choice([part, part.capitalize(), part.upper()]) for part in parts]
    name = words[0]
    for word in words[1:]:
        name += rng.choice([" ", "-", "_", " - "]) + word
    return name


def neighbours(module: str) -> list[str]:
    """Package names that sort just before and just after `module`."""
    stem = module.strip("_")
    if len(stem) < 2 or not stem[0].isalpha():
        return []
    last = stem[-1]
    before = stem[:-1] + (chr(ord(last) - 1) if last not in "a0" else "")
    return [name for name in (before, stem + "a", stem + "0") if len(name) >= 2]


def project_names(rng: random.Random, modules: set[str]) -> list[str]:
    """Awkward project names: around each imported module, the ends of the alphabet, and
    the shortest and longest allowed."""
    packages = {neighbour for module in modules for neighbour in neighbours(module)}
    packages = {package for package in packages if not is_refused(package)}
    names = [spell(rng, package) for package in sorted(packages)]
    # Word-like: a 40-character run of random letters and digits reads as a secret to
    # detect-secrets, in every file that names the package.
    words = ["Relay", "chat", "Rooms", "edge", "2", "Hub", "live", "sync", "Zone", "42"]
    longest = "Zeta"
    while len(longest) < 40:
        longest += rng.choice([" ", "-", "_"]) + rng.choice(words)
    longest = longest[:40]
    fixed = [
        "Aa",
        "Zz Top",
        "A1",
        "pytest-ish",
        "Livd",
        "Live Chat",
        "Lives",
        "Chat 2 Relay 3",
        # Names detect-secrets' keyword rule reads as a secret's name wherever one is assigned.
        "Secret Santa",
        "Password Vault",
        longest,
    ]
    fixed.append("a" + "-b" * 19 + "c")  # 40 characters, a separator in every other
    rng.shuffle(names)
    return [name for name in fixed if not is_refused(package_of(name))] + names


def text(rng: random.Random, length: int) -> str:
    """Exactly `length` characters of allowed text, ending on a word."""
    if length == 1:
        return rng.choice(["x", "'", "é", "#", ".", "日"])
    out = rng.choice(WORDS)
    while len(out) < length:
        out += rng.choice([" ", ", ", " - ", ": ", ". "]) + rng.choice(WORDS)
    return out[:length].rstrip() or "x"


def issuer(rng: random.Random, length: int) -> str:
    if length < 12:
        value = "".join(rng.choice(ISSUER_CHARS) for _ in range(length))
    else:
        head = rng.choice(["https://", "urn:", "api://", ""])
        value = head + "".join(rng.choice(ISSUER_CHARS) for _ in range(length - len(head)))
    # The validator refuses what looks like a URL with a user and password (copier.yml).
    return value if not CREDENTIALS.search(value) else value.replace("@", "a")


def host(rng: random.Random, long: bool) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    label_count = 4 if long else rng.randint(1, 3)
    labels = []
    for _ in range(label_count):
        size = 61 if long else rng.randint(1, 12)
        middle = "".join(rng.choice(alphabet + "-") for _ in range(max(size - 2, 0)))
        labels.append(rng.choice(alphabet) + middle + (rng.choice(alphabet) if size > 1 else ""))
    return ".".join(labels)


def origins_answer(rng: random.Random, count: int, long: bool) -> str | list[str]:
    """`count` origins, in one of the forms a user may type (or a list, as from a data file)."""
    origins: list[str] = []
    while len(origins) < count:
        port = rng.choice([None, None, 1, 443, 8443, 65535])
        origin = f"https://{host(rng, long and not origins)}" + (f":{port}" if port else "")
        if origin not in origins:
            origins.append(origin)
    form = rng.randrange(4)
    if form == 0:
        return origins
    if form == 1:
        return "[" + ", ".join(origins) + "]"
    if form == 2:
        return ",".join(origins)
    return "[" + ", ".join(f"'{origin}'" for origin in origins) + "]"


def answer_sets(seed: int, modules: set[str]) -> list[dict[str, Any]]:
    """SETS answer sets; every choice and every extreme appears in some set."""
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible from its seed
    names = project_names(rng, modules)
    lengths = {
        "description": [1, 40, DESCRIPTION_MAX],
        "author_name": [1, 40, AUTHOR_MAX],
        "jwt_issuer": [1, 40, ISSUER_MAX],
        "jwt_audience": [ISSUER_MAX, 1, 40],
    }
    sets = []
    for index in range(SETS):
        answers: dict[str, Any] = {
            "project_name": names[index % len(names)],
            "python_version": PYTHON_VERSIONS[index % len(PYTHON_VERSIONS)],
            "jwt_algorithm": ALGORITHMS[(index // 2) % len(ALGORITHMS)],
            "tls_profile": PROFILES[index % len(PROFILES)],
            "description": text(rng, lengths["description"][index % 3]),
            "author_name": text(rng, lengths["author_name"][(index + 1) % 3]),
            "jwt_issuer": issuer(rng, lengths["jwt_issuer"][index % 3]),
            "jwt_audience": issuer(rng, lengths["jwt_audience"][index % 3]),
            "jwt_leeway_seconds": [0, 120, rng.randint(1, 119)][index % 3],
            "max_message_bytes": [1024, 16_777_216, rng.randint(1025, 16_777_215)][index % 3],
            "cors_allowed_origins": origins_answer(rng, 1 + index % 4, long=index % 5 == 0),
        }
        sets.append(answers)
    # A host ending in a secret scanner's keyword, then a port and another origin: in the
    # answers file detect-secrets read `pwdsafe:8443, https://...` as a password (seed
    # 4003955817 found it with `t3oupwdann9z:443`).
    sets[1]["cors_allowed_origins"] = "[https://vault.pwdsafe:8443, https://app.example.com]"
    return sets


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The default project and its virtual environment, which every set borrows."""
    project = render(tmp_path_factory.mktemp("baseline") / "project")
    return project, make_venv(project)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mypy's cache, one per xdist worker (each worker has its own base temp directory)."""
    return tmp_path_factory.getbasetemp() / "mypy-cache"


def ci_pythons(project: Path) -> list[str]:
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    return [str(version) for version in ci["jobs"]["test"]["strategy"]["matrix"]["python"]]


def check_set(project: Path, venv: Path, cache: Path, answers: dict[str, Any]) -> str:
    """Every problem of one rendered answer set, or an empty string."""
    (project / ".venv").symlink_to(venv)
    git_init(project)
    env = {"MYPY_CACHE_DIR": str(cache)}
    result = pre_commit(project, venv, "--all-files", "--show-diff-on-failure", env=env)
    problems = []
    if result.returncode != 0:
        # The report of each failed hook (up to the next hook's line), then the diff.
        failed = re.findall(
            r"^\S.*Failed\n(?:(?!.*\.{3}(?:Passed|Skipped|Failed)$).*\n)*",
            result.stdout,
            re.MULTILINE,
        )
        diff = result.stdout[result.stdout.find("All changes made by hooks:") :][:4000]
        problems.append("".join(failed)[:8000] + diff + result.stderr[-2000:])
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    for hook in hooks:
        if hook["id"] in NOT_RUN_HERE:
            continue
        line = next(
            (line for line in result.stdout.splitlines() if line.startswith(hook["name"])), ""
        )
        if not line.endswith("Passed"):
            problems.append(f"hook {hook['id']}: {line or 'did not run'}")
    chosen = answers["python_version"]
    expected = [version for version in QUESTIONS["python_version"]["choices"] if version >= chosen]
    if ci_pythons(project) != expected:
        problems.append(f"CI tests {ci_pythons(project)}, expected {expected}")
    return "\n".join(problems)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("batch", range(BATCHES))
def test_every_valid_answer_set_passes_the_projects_own_checks(
    baseline: tuple[Path, Path], mypy_cache: Path, tmp_path: Path, batch: int
) -> None:
    default, venv = baseline
    sets = answer_sets(SEED, imported_modules(default))
    failures = []
    projects = {}
    for index in range(batch, SETS, BATCHES):
        answers = sets[index]
        started = time.monotonic()
        project = projects[index] = render(tmp_path / f"set{index}", **answers)
        problems = check_set(project, venv, mypy_cache, answers)
        print(f"set {index}: {time.monotonic() - started:.1f} s")
        if problems:
            failures.append(f"set {index} {answers!r}:\n{problems}")
    # The batch's documents: their generators in one process, then the parser.
    differ = set(stale(list(projects.values()), venv / "bin" / "python"))
    parsed = parse([project / DOCUMENT for project in projects.values()])
    for index, project in projects.items():
        prefix = f"{project / DOCUMENT}: "
        problems = [line for line in parsed.report.splitlines() if line.startswith(prefix)]
        if str(project) in differ:
            problems.insert(0, f"{DOCUMENT} is not what the project's generator makes")
        if problems:
            failures.append(f"set {index} {sets[index]!r}:\n" + "\n".join(problems))
    assert not failures, f"{SEED_VARIABLE}={SEED}\n" + "\n\n".join(failures)


def test_answer_sets_cover_every_choice_and_extreme(baseline: tuple[Path, Path]) -> None:
    sets = answer_sets(SEED, imported_modules(baseline[0]))
    assert len(sets) >= 30
    for question in ("python_version", "jwt_algorithm", "tls_profile"):
        assert {answers[question] for answers in sets} == set(QUESTIONS[question]["choices"])
    assert {0, 120} <= {answers["jwt_leeway_seconds"] for answers in sets}
    assert {1024, 16_777_216} <= {answers["max_message_bytes"] for answers in sets}
    for question, longest in (
        ("description", DESCRIPTION_MAX),
        ("author_name", AUTHOR_MAX),
        ("jwt_issuer", ISSUER_MAX),
        ("jwt_audience", ISSUER_MAX),
    ):
        assert {1, longest} <= {len(answers[question]) for answers in sets}, question
    names = [answers["project_name"] for answers in sets]
    assert {2, 40} <= {len(name) for name in names}
    modules = imported_modules(baseline[0])
    for module in ("live", "conftest", "jwt"):
        assert module in modules
    packages = {package_of(name) for name in names}
    assert any(package < "live" for package in packages)
    assert any(package > "live" for package in packages)


def test_the_refused_package_names_cover_every_import_and_keyword(
    baseline: tuple[Path, Path],
) -> None:
    """A package named like a module the project imports would shadow it; a keyword does
    not parse. copier.yml refuses both; this keeps its list true."""
    refused = refused_packages()
    imported = {name for name in imported_modules(baseline[0]) if not name.startswith("_")}
    imported -= {package_of(QUESTIONS["project_name"]["default"])}
    missing = {name for name in imported if name not in refused and not name.startswith("test_")}
    assert not missing, f"add to copier.yml's project_name validator: {sorted(missing)}"
    lower_keywords = {word for word in keyword.kwlist if word.islower()}
    assert lower_keywords <= refused, sorted(lower_keywords - refused)

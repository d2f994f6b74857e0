"""The rendered projects' AsyncAPI documents (`docs/asyncapi.json`): how the template carries
one, and the official parser that validates them.

The template cannot run the generator (`<script> asyncapi`) at `copier copy` time (no tasks,
no --trust), so it carries the document as `template/docs/asyncapi.json.jinja`: the
generator's output for a project rendered with SENTINELS as answers, each sentinel then
turned back into the answer it stands for. `tests/test_asyncapi.py` holds that file equal to
`as_template()` of a fresh sentinel render; the rendered projects' own drift test
(`tests/test_asyncapi.py`) and the answer-set check hold every render equal to its
generator.

The parser is `@asyncapi/parser` with its default ruleset, pinned with hashes in
tests/asyncapi/package-lock.json and installed with `npm ci` into a temporary directory
once per test process.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness import ROOT, run

PARSER_DIR = ROOT / "tests" / "asyncapi"
TEMPLATE_FILE = ROOT / "template" / "docs" / "asyncapi.json.jinja"
DOCUMENT = Path("docs") / "asyncapi.json"  # in a rendered project, and in this repository
# Answers that appear nowhere else in a document, and the Jinja expression each stands for;
# the algorithm and the profile are choices, so a choice other than the default stands in.
SENTINELS = {
    "project_name": ("Zqx Sentinel", "{{ project_name }}"),
    "description": ("ZQXDESCRIPTION", "{{ description }}"),
    "jwt_issuer": ("ZQXISSUER", "{{ jwt_issuer }}"),
    "jwt_audience": ("ZQXAUDIENCE", "{{ jwt_audience }}"),
    "jwt_algorithm": ("ES256", "{{ jwt_algorithm }}"),
    "tls_profile": ("modern", "{{ tls_profile }}"),
}
# Values copier.yml derives from the project name.
DERIVED = {"ZQX_SENTINEL_": "{{ env_prefix }}", "zqx-sentinel": "{{ script_name }}"}
HEADER = (
    "{# The generator's output (`<script> asyncapi`) with the answers as variables; "
    "tests/test_asyncapi.py says when it is stale and writes the fresh one. -#}\n"
)


def sentinel_answers() -> dict[str, str]:
    return {question: value for question, (value, _) in SENTINELS.items()}


def as_template(document: str) -> str:
    """The template file for the generator's `document` of the sentinel project."""
    for value, expression in [*SENTINELS.values(), *DERIVED.items()]:
        document = document.replace(value, expression)
    return HEADER + document


@functools.cache
def parser() -> Path:
    """A directory with the pinned parser installed and the validation script: `npm ci`
    from the lockfile (every package checked against its hash), no install scripts run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed to validate AsyncAPI documents (Node 20+)")
    directory = Path(tempfile.mkdtemp(prefix="asyncapi-parser-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copy2(PARSER_DIR / name, directory / name)
    run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory, timeout=300)  # fmt: skip
    return directory


def parse(documents: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """Every document through the parser, in one process: exit 1 and a line for each error
    and warning when any has one (validate.mjs)."""
    directory = parser()
    return subprocess.run(  # noqa: S603 - node, our script, our documents
        [shutil.which("node") or "node", directory / "validate.mjs", *documents],
        cwd=directory, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def validate(documents: Sequence[Path]) -> None:
    result = parse(documents)
    assert result.returncode == 0, f"the AsyncAPI parser refused:\n{result.stdout}{result.stderr}"


# Run by a virtual environment that has the projects' dependencies (not the projects), with
# project directories as arguments: prints those whose docs/asyncapi.json is not what their
# own generator makes, given the version and description of their pyproject.toml.
_STALE = """
import importlib, sys, tomllib
from pathlib import Path
for project in map(Path, sys.argv[1:]):
    package = next((project / "src").glob("*/asyncapi.py")).parent.name
    for name in [m for m in sys.modules if m.split(".")[0] == package]:
        del sys.modules[name]  # a set of the same batch with the same package name
    sys.path.insert(0, str(project / "src"))
    generator = importlib.import_module(package + ".asyncapi")
    sys.path.pop(0)
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    made = generator.dumps(generator.document(meta["version"], meta["description"]))
    if made != (project / "docs" / "asyncapi.json").read_text(encoding="utf-8"):
        print(project)
"""


def stale(projects: Sequence[Path], python: Path) -> list[str]:
    """The projects whose rendered document differs from their generator's, run by
    `python` in one process."""
    return run([python, "-c", _STALE, *projects], cwd=ROOT, timeout=300).stdout.split()

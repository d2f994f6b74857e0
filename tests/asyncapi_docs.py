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


def validate(documents: Sequence[Path]) -> str:
    """Every document through the parser in one process; fails naming each error and
    warning (validate.mjs). Returns the parser's report."""
    directory = parser()
    node = shutil.which("node") or "node"
    return run([node, directory / "validate.mjs", *documents], cwd=directory, timeout=300).stdout

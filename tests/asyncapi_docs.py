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
once per test process, which keeps one Node process for all its documents.
"""

from __future__ import annotations

import atexit
import functools
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Parsed:
    problems: int
    report: str  # a line per error or warning: "<file>: <severity> <rule> at <path>: ..."


class _Parser:
    """`validate.mjs --stdin` in a directory where `npm ci` installed the pinned parser
    from the lockfile (every package checked against its hash; no install scripts run)."""

    def __init__(self) -> None:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            raise RuntimeError("node and npm are needed to validate AsyncAPI documents")
        directory = Path(tempfile.mkdtemp(prefix="asyncapi-parser-"))
        for name in ("package.json", "package-lock.json", "validate.mjs"):
            shutil.copy2(PARSER_DIR / name, directory / name)
        run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory, timeout=300)  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - node and our script
            [node, "validate.mjs", "--stdin"], cwd=directory, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        # Lines through a queue, so that waiting for one has a deadline.
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        atexit.register(self._close, directory)

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("")  # the process ended

    def parse(self, documents: Sequence[Path]) -> Parsed:
        assert self._process.stdin is not None
        self._process.stdin.write("\t".join(str(document) for document in documents) + "\n")
        self._process.stdin.flush()
        report = []
        while True:
            try:
                line = self._lines.get(timeout=300)
            except queue.Empty:
                raise AssertionError("the AsyncAPI parser gave no answer in 300 s") from None
            if not line:
                raise AssertionError(f"the AsyncAPI parser ended: {self._stderr()}")
            if line.startswith("done "):
                return Parsed(int(line.removeprefix("done ")), "\n".join(report))
            report.append(line)

    def _stderr(self) -> str:
        self._process.wait(timeout=30)
        assert self._process.stderr is not None
        return self._process.stderr.read()

    def _close(self, directory: Path) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


@functools.cache
def _parser() -> _Parser:
    return _Parser()


def parse(documents: Sequence[Path]) -> Parsed:
    """Every document through the parser (validate.mjs): how many problems, and the lines
    that name them."""
    return _parser().parse(documents)


def validate(documents: Sequence[Path]) -> None:
    parsed = parse(documents)
    assert parsed.problems == 0, f"the AsyncAPI parser refused:\n{parsed.report}"


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

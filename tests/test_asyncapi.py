"""The AsyncAPI document every project carries (docs/asyncapi.json): the template's copy is
its generator's output, the official parser accepts it, and this repository's copy is the
default project's.

The parser also runs on the document of every variant test_variants.py renders, and on
every answer set of test_answer_sets.py, where each rendered document is compared with its
own generator too (asyncapi_docs.stale).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asyncapi_docs import DOCUMENT, TEMPLATE_FILE, as_template, parse, sentinel_answers, validate

from harness import ROOT, make_venv, render, run, tool

REFERENCE = ROOT / DOCUMENT


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("asyncapi") / "project")


def test_the_repositorys_document_is_the_default_projects(default_project: Path) -> None:
    """docs/asyncapi.json feeds the documentation site; it must not go stale."""
    rendered = default_project / DOCUMENT
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    assert committed == rendered.read_text(encoding="utf-8"), (
        f"{DOCUMENT} differs from a default render's: refresh it with `cp {rendered} {DOCUMENT}`"
    )


@pytest.mark.timeout(300)
def test_the_template_document_is_the_generators_output(tmp_path: Path) -> None:
    """The template carries the generator's output with the answers as variables: a project
    rendered with sentinel answers, run through its own `asyncapi` command, gives the
    template file back once the sentinels are turned into variables again."""
    project = render(tmp_path / "project", **sentinel_answers())
    venv = make_venv(project)
    made = run([tool(venv, "zqx-sentinel"), "asyncapi"], cwd=project).stdout
    expected = as_template(made)
    if TEMPLATE_FILE.read_text(encoding="utf-8") != expected:
        fresh = tmp_path / TEMPLATE_FILE.name
        fresh.write_text(expected, encoding="utf-8")
        pytest.fail(
            f"{TEMPLATE_FILE.relative_to(ROOT)} is not the generator's output: refresh it "
            f"with `cp {fresh} {TEMPLATE_FILE.relative_to(ROOT)}`",
            pytrace=False,
        )
    assert (project / DOCUMENT).read_text(encoding="utf-8") == made


def test_the_parser_accepts_the_default_document_and_refuses_broken_ones(
    default_project: Path, tmp_path: Path
) -> None:
    """The parser can fail: a dangling `$ref` and a missing required field are errors it
    names, while the document as rendered passes."""
    document = default_project / DOCUMENT
    validate([document])
    original = json.loads(document.read_text(encoding="utf-8"))
    dangling = json.loads(json.dumps(original))
    dangling["channels"]["main"]["messages"]["client.join"]["payload"]["$ref"] += "Gone"
    incomplete = json.loads(json.dumps(original))
    del incomplete["info"]["version"]
    broken = {"dangling.json": dangling, "incomplete.json": incomplete}
    for name, content in broken.items():
        (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    parsed = parse([document, *(tmp_path / name for name in broken)])
    lines = parsed.report.splitlines()
    assert parsed.problems == len(lines) >= 2, parsed.report
    assert not [line for line in lines if line.startswith(f"{document}: ")], parsed.report
    assert any("dangling.json: error invalid-ref" in line for line in lines), parsed.report
    assert any("incomplete.json: error" in line and '"version"' in line for line in lines), (
        parsed.report
    )

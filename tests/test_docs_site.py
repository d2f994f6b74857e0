"""The documentation site (mkdocs.yml, docs/): one real `mkdocs build --strict`, shared by
the tests of this module. A warning (a broken link or anchor, a page missing from the nav)
fails the build; the generated pages cover every question of copier.yml and every
operation and message of docs/asyncapi.json; the site fetches nothing from elsewhere.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT, tooling

HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


@dataclass(frozen=True)
class Build:
    site: Path
    result: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def page(self, name: str) -> Path:
        assert self.result.returncode == 0, f"mkdocs build failed:\n{self.output}"
        return self.site / name / "index.html"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    mkdocs = tooling("mkdocs")
    assert mkdocs.is_file(), f"{mkdocs} is missing: pip install -r tests/requirements.txt"
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(  # noqa: S603 - the template's own mkdocs, our arguments
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        # Material's banner about MkDocs 2.0 is noise here; no bytecode beside the hooks.
        env={
            "PATH": str(mkdocs.parent),
            "NO_MKDOCS_2_WARNING": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Build(site, result)


class Sections(HTMLParser):
    """The text of a page under each heading that has an id, by that id; and the address of
    every stylesheet, script, image and frame the page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, list[str]] = {}
        self.loads: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in HEADINGS and found.get("id"):
            self._current = str(found["id"])
            self.text.setdefault(self._current, [])
        if tag == "link" and found.get("rel") in ("stylesheet", "preload", "icon", "preconnect"):
            self.loads.append(found.get("href") or "")
        if tag in ("script", "img", "iframe", "source") and found.get("src"):
            self.loads.append(str(found["src"]))

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.text[self._current].append(data)

    def section(self, anchor: str) -> str:
        return " ".join("".join(self.text[anchor]).split())


def parse(page: Path) -> Sections:
    parser = Sections()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_site_builds_strict_without_a_warning(build: Build) -> None:
    """mkdocs.yml sets `strict: true` and warns on every unresolved link, anchor and nav
    entry: a single warning fails the build."""
    assert build.result.returncode == 0, build.output
    warnings = [line for line in build.output.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    assert (build.site / "index.html").is_file()


def test_every_copier_question_has_its_entry_on_the_options_page(build: Build) -> None:
    """Each key of copier.yml that is not a `_` setting has a heading with its name as id,
    and its entry shows its type and default as copier.yml writes them."""
    page = parse(build.page("options"))
    questions = {
        name: spec if isinstance(spec, dict) else {"default": spec}
        for name, spec in yaml.safe_load((ROOT / "copier.yml").read_text()).items()
        if not name.startswith("_")
    }
    missing = [name for name in questions if name not in page.text]
    assert not missing, f"no entry on the options page for: {', '.join(missing)}"
    for name, spec in questions.items():
        entry = page.section(name)
        assert entry.startswith(name), (name, entry[:80])
        if "type" in spec:
            assert f"Type {one_line(str(spec['type']))}" in entry, (name, "type", entry)
        default = spec.get("default")
        if isinstance(default, str) and default:
            assert f"Default {one_line(default)}" in entry, (name, "default", entry)
        elif "default" in spec:
            assert f"Default {json.dumps(default)}" in entry or default == "", (name, entry)
        else:
            assert "Default none" in entry, (name, entry)
        if spec.get("validator"):
            assert "Validated yes" in entry, (name, entry)
            assert "Validator source" in entry, (name, entry)
        assert ("Secret yes" if spec.get("secret") else "Secret no") in entry, (name, entry)


def resolve(document: dict[str, Any], node: Any) -> tuple[Any, str | None]:
    """A node of an AsyncAPI document behind its local `$ref`s, and the first one's key."""
    key = None
    while isinstance(node, dict) and "$ref" in node:
        reference = str(node["$ref"])
        assert reference.startswith("#/"), f"not a local reference: {reference}"
        key = key or reference.rsplit("/", 1)[-1]
        node = document
        for part in reference[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, key


def message_names(document: dict[str, Any]) -> set[str]:
    """The name of every message of the channels, operations (and their replies) and
    components: its `name`, or else the key that refers to it."""
    references = [
        *document.get("components", {}).get("messages", {}).values(),
        *(m for c in document.get("channels", {}).values() for m in c.get("messages", {}).values()),
    ]
    for operation in document.get("operations", {}).values():
        references += operation.get("messages", [])
        references += operation.get("reply", {}).get("messages", [])
    names = set()
    for reference in references:
        message, key = resolve(document, reference)
        names.add(str(message.get("name") or key))
    return names


def test_the_asyncapi_page_names_every_operation_and_message(build: Build) -> None:
    """Each operation of docs/asyncapi.json has a section (its id as heading and anchor),
    every message is named, and the JSON file is published beside the page, linked."""
    document = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    page = parse(build.page("asyncapi"))
    everything = " ".join(page.section(anchor) for anchor in page.text)
    for op_id in document["operations"]:
        anchor = "operation-" + re.sub(r"[^A-Za-z0-9_-]+", "-", op_id).strip("-")
        assert anchor in page.text, f"operation {op_id} has no section on the AsyncAPI page"
        assert page.section(anchor).startswith(op_id), (op_id, page.section(anchor)[:80])
    missing = sorted(
        name for name in message_names(document) if f"Message {name}" not in everything
    )
    assert not missing, f"messages not named on the AsyncAPI page: {', '.join(missing)}"
    published = build.site / "asyncapi.json"
    assert json.loads(published.read_text()) == document
    assert 'href="../asyncapi.json"' in build.page("asyncapi").read_text()


def test_getting_started_shows_the_readmes_two_set_up_commands() -> None:
    """The site's home page and the README give the same two commands."""
    block = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
    readme = block.search((ROOT / "README.md").read_text())
    home = block.search((ROOT / "docs" / "index.md").read_text())
    assert readme, "README.md has no sh block"
    assert home, "docs/index.md has no sh block"
    assert home[1] == readme[1]
    assert [line.split()[0] for line in home[1].splitlines()] == [
        "./scripts/demo",
        "./scripts/test",
    ]


def test_the_site_loads_nothing_from_elsewhere(build: Build) -> None:
    """No web fonts or scripts from another host: the site works offline and tells no
    third party who reads it."""
    build.page("")  # the build succeeded
    for page in build.site.rglob("*.html"):
        foreign = [url for url in parse(page).loads if re.match(r"(https?:)?//", url)]
        assert not foreign, (page.relative_to(build.site), foreign)

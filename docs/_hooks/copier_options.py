"""MkDocs hook: the "Copier options" page (options.md), written from copier.yml at each build.

The page is generated rather than kept by hand so that it cannot fall behind the questions
the template really asks. Nothing in copier.yml is rendered here: its Jinja (computed
types, defaults and `when`, the validators and the macros they import from includes/) is
shown as written, since rendering it would need Copier's environment and the user's other
answers. tests/test_docs_site.py checks that every question has its entry.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files

PAGE = "options.md"
# A line such as `# ------------- security` opens a group of questions in copier.yml.
GROUP = re.compile(r"^# -{3,} *(?P<title>\S.*?) *$")
TOP_LEVEL_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):")
JINJA = re.compile(r"{{|{%")
JINJA_TAG = re.compile(r"{%-?.*?-?%}|{#.*?#}", re.DOTALL)
IMPORT = re.compile(r"""{%-?\s*(?:from|import|include)\s+['"](?P<path>[^'"]+)['"]""")


def copier_file(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent / "copier.yml"


def load_questions(text: str) -> dict[str, Any]:
    """Every question of copier.yml in its order: the keys that are not `_` settings. Copier
    merges several YAML documents in one file, later ones winning."""
    merged: dict[str, Any] = {}
    for document in yaml.safe_load_all(text):
        merged.update(document or {})
    return {key: spec for key, spec in merged.items() if not key.startswith("_")}


def sources(text: str) -> dict[tuple[str, str], str]:
    """The text of each question's fields as written in copier.yml, block scalars
    unfolded: (question, field) -> source. YAML folds a `>-` validator into one line; the
    reader of the page wants the lines the author wrote."""
    found = {}
    for document in yaml.compose_all(text):
        if not isinstance(document, yaml.MappingNode):
            continue
        for key, value in document.value:
            if not isinstance(value, yaml.MappingNode):
                continue
            for field, node in value.value:
                if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
                    body = text[node.start_mark.index : node.end_mark.index].split("\n", 1)[1]
                    found[key.value, field.value] = textwrap.dedent(body).strip()
    return found


def groups(text: str) -> dict[str, str]:
    """The group title of each top-level key, from the comment headers that precede them."""
    title, found = "", {}
    for line in text.splitlines():
        if header := GROUP.match(line):
            title = header["title"]
        elif key := TOP_LEVEL_KEY.match(line):
            found[key["key"]] = title
    return found


def code(text: str) -> str:
    """`text` as an inline code span, on one line, whatever backticks it holds."""
    text = " ".join(text.split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def shown(value: Any) -> str:
    """A value as the reader would type it: strings as written, others in YAML/JSON form."""
    return value if isinstance(value, str) else json.dumps(value)


def spec_of(value: Any) -> dict[str, Any]:
    """Copier's short form `name: default` is a question of the default's type."""
    if isinstance(value, dict):
        return value
    return {"default": value}


def type_of(spec: dict[str, Any]) -> tuple[str, bool]:
    """The question's type and whether copier.yml states it (otherwise Copier infers it
    from the default)."""
    if "type" in spec:
        return str(spec["type"]), True
    default = spec.get("default")
    inferred = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "yaml")
    return inferred, False


def choices_lines(choices: Any) -> list[str]:
    if isinstance(choices, str):
        return [f"    - computed: {code(choices)}"]
    if isinstance(choices, dict):
        lines = []
        for label, value in choices.items():
            if isinstance(value, dict):
                text = f"{code(str(label))}: {code(shown(value.get('value')))}"
                if "validator" in value:
                    text += f", unavailable when {code(str(value['validator']))} gives a message"
            elif shown(value) == str(label):
                text = code(str(label))
            else:
                text = f"{code(str(label))}: {code(shown(value))}"
            lines.append(f"    - {text}")
        return lines
    return [f"    - {code(shown(choice))}" for choice in choices]


def messages(validator: str) -> list[str]:
    """The messages a validator can give: its text between Jinja statements, with the
    `{{ ... }}` parts that name the offending value kept as written."""
    found = []
    for part in JINJA_TAG.split(validator):
        text = " ".join(part.split())
        if text and text not in found:
            found.append(text)
    return found


def asked(spec: dict[str, Any]) -> str:
    when = spec.get("when", True)
    if when is True:
        return "always"
    if when is False:
        return "never: a value derived from other answers, for the templates to use"
    return f"when {code(str(when))} is true"


def entry(name: str, raw: Any, written: dict[tuple[str, str], str]) -> list[str]:
    spec = spec_of(raw)
    kind, stated = type_of(spec)
    lines = [f"### `{name}` {{#{name}}}", ""]
    if help_text := spec.get("help"):
        lines += [f'<p class="copier-help">{html.escape(" ".join(str(help_text).split()))}</p>', ""]
    type_line = code(kind) if stated else f"{code(kind)} (inferred from the default)"
    if JINJA.search(kind):
        type_line += ", computed when the question is asked"
    lines += [f"Type\n:   {type_line}", ""]
    if "default" in spec:
        default = spec["default"]
        text = code(shown(default))
        if isinstance(default, str) and JINJA.search(default):
            text += " (Jinja, rendered with the answers given before it)"
        elif default == "":
            text = "empty"
    else:
        text = "none: the question must be answered"
    lines += [f"Default\n:   {text}", ""]
    if "choices" in spec:
        lines += ["Choices", ":   one of:", "", *choices_lines(spec["choices"]), ""]
    if spec.get("multiselect"):
        lines += ["Multiselect\n:   yes: the answer is a list of the choices", ""]
    if "placeholder" in spec:
        lines += [f"Placeholder\n:   {code(shown(spec['placeholder']))}", ""]
    lines += [f"Asked\n:   {asked(spec)}", ""]
    secret = "yes: never recorded in `.copier-answers.yml`" if spec.get("secret") else "no"
    lines += [f"Secret\n:   {secret}", ""]
    validator = spec.get("validator")
    if spec.get("when") is False:
        return [*lines, "Validated\n:   not asked, so nothing to validate", ""]
    if not validator:
        check = "choices only" if "choices" in spec else "by its type only"
        lines += [f"Validated\n:   {check}", ""]
        return lines
    lines += ["Validated", ":   yes; a wrong answer is refused with one of these messages:", ""]
    lines += [f"    - {code(message)}" for message in messages(str(validator))]
    lines.append("")
    imports = sorted(set(IMPORT.findall(str(validator))))
    if imports:
        listed = ", ".join(code(path) for path in imports)
        lines += [f"    The validator imports macros from {listed}.", ""]
    lines += ['??? note "Validator source (Jinja)"', "", "    ```jinja"]
    source = written.get((name, "validator"), str(validator).strip())
    lines += [f"    {line}".rstrip() for line in source.splitlines()]
    lines += ["    ```", ""]
    return lines


def summary_row(name: str, raw: Any) -> str:
    spec = spec_of(raw)
    kind, _ = type_of(spec)
    default = spec.get("default")
    if "default" not in spec:
        shown_default = "none"
    elif isinstance(default, str) and JINJA.search(default):
        shown_default = "computed"
    else:
        shown_default = code(shown(default)).replace("|", "\\|")
    kind_cell = "computed" if JINJA.search(kind) else code(kind)
    when = spec.get("when", True)
    asked_cell = (
        {True: "yes", False: "no (derived)"}.get(when, "sometimes")
        if isinstance(when, bool)
        else "sometimes"
    )
    return f"| [`{name}`](#{name}) | {kind_cell} | {shown_default} | {asked_cell} |"


def page(text: str) -> str:
    questions = load_questions(text)
    group_of = groups(text)
    written = sources(text)
    lines = [
        "# Copier options",
        "",
        "Every question `copier copy` asks (and the values it derives from the answers),",
        "in the order of `copier.yml`, from which this page is generated at each build.",
        "Pass answers with `--data name=value` or `--data-file answers.yml`; `--defaults`",
        "takes the default of every question not answered. Jinja in a type, default,",
        "condition or validator is shown as written.",
        "",
        "| question | type | default | asked |",
        "|---|---|---|---|",
        *(summary_row(name, raw) for name, raw in questions.items()),
        "",
    ]
    current = None
    for name, raw in questions.items():
        title = group_of.get(name, "")
        if title and title != current:
            current = title
            lines += [f"## {title.capitalize()}", ""]
        lines += entry(name, raw, written)
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    text = copier_file(config).read_text(encoding="utf-8")
    files.append(File.generated(config, PAGE, content=page(text)))
    return files


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder: Any) -> LiveReloadServer:
    """`mkdocs serve` rebuilds when copier.yml or the macros it imports change."""
    root = copier_file(config).parent
    server.watch(str(root / "copier.yml"))
    server.watch(str(root / "includes"))
    return server

"""Every question validates its answer: a bad answer stops the render with a one-line
reason that names the question, and nothing is written."""

from __future__ import annotations

import ast
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PACKAGE, ROOT, interpreters, render

BAD_ANSWERS = [
    ("project_name", "1service", "must start with a letter"),
    ("project_name", "x", "must start with a letter"),
    ("project_name", "name; rm -rf /", "must start with a letter"),
    ("project_name", "In", "'in', a Python keyword"),
    ("project_name", "Live", "would shadow a module"),
    ("project_name", "Jwt", "would shadow a module"),
    ("project_name", "Test Auth", "would shadow a module"),
    ("project_name", "Email", "'email', a module of Python's standard library"),
    ("project_name", "Zipfile", "a module of Python's standard library"),
    ("description", 'say "hi"', "without double quotes"),
    ("description", "x" * 201, "1 to 200 characters"),
    ("author_name", "a\nb", "one line"),
    ("description", "a\rb", "control characters"),
    ("author_name", "tab\there", "control characters"),
    ("python_version", "3.10", "3.10"),
    ("tls_profile", "old", "old"),
    ("jwt_algorithm", "none", "none"),
    ("jwt_algorithm", "HS512", "HS512"),
    ("jwt_issuer", "", "printable characters"),
    ("jwt_issuer", "https://a b", "printable characters"),
    ("jwt_audience", 'aud"ience', "printable characters"),
    ("jwt_issuer", "https://u:p@a.example/", "a user and password"),  # pragma: allowlist secret
    ("jwt_audience", "api://svc/x:y@z", "a user and password"),
    ("jwt_leeway_seconds", -1, "between 0 and 120"),
    ("jwt_leeway_seconds", 3600, "between 0 and 120"),
    ("cors_allowed_origins", "*", "'*' is not an exact https://host[:port] origin"),
    ("cors_allowed_origins", "[unclosed", "'[unclosed' is not an exact"),
    ("cors_allowed_origins", "[]", "at least one origin"),
    ("cors_allowed_origins", "https://a.com,,https://b.com", "has an empty item"),
    ("cors_allowed_origins", "https://a.com:65536", "port 1 to 65535"),
    ("cors_allowed_origins", 42, "must be a list"),
    ("cors_allowed_origins", [], "at least one origin"),
    ("cors_allowed_origins", ["*"], "is not an exact https://host[:port] origin"),
    ("cors_allowed_origins", ["https://*.example.com"], "not an exact"),
    ("cors_allowed_origins", ["http://app.example.com"], "not an exact"),
    ("cors_allowed_origins", ["https://app.example.com/"], "not an exact"),
    ("cors_allowed_origins", ["https://app.example.com/path"], "not an exact"),
    ("cors_allowed_origins", ["https://App.Example.com"], "not an exact"),
    ("cors_allowed_origins", ["https://a.com", "null"], "'null' is not an exact"),
    ("cors_allowed_origins", {"origin": "https://a.com"}, "must be a list"),
    ("cors_allowed_origins", ["https://a.com:0"], "not an exact"),
    ("max_message_bytes", 100, "between 1024 and 16777216"),
    ("max_message_bytes", 2**30, "between 1024 and 16777216"),
]


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    BAD_ANSWERS,
    ids=[f"{q}-{i}" for i, (q, _, _) in enumerate(BAD_ANSWERS)],
)
def test_bad_answer_fails_with_a_one_line_reason(
    tmp_path: Path, question: str, answer: Any, reason: str
) -> None:
    dst = tmp_path / "project"
    with pytest.raises(ValueError, match=f"'{question}'") as failure:
        render(dst, **{question: answer})
    message = str(failure.value)
    assert reason in message
    assert "\n" not in message.strip()
    assert not dst.exists() or not any(dst.iterdir())


COMMAND_LINE_ANSWERS = [
    ("cors_allowed_origins=['*']", "'*' is not an exact https://host[:port] origin"),
    ("cors_allowed_origins=*", "'*' is not an exact https://host[:port] origin"),
    ("cors_allowed_origins=[unclosed", "'[unclosed' is not an exact"),
    ("jwt_leeway_seconds=3600", "must be between 0 and 120 seconds"),
    ("project_name=In", "a Python keyword"),
]


@pytest.mark.parametrize(("data", "reason"), COMMAND_LINE_ANSWERS)
def test_bad_answer_on_the_command_line_ends_with_the_reason(
    tmp_path: Path, data: str, reason: str
) -> None:
    """What a user sees: a non-zero exit whose last line names the question and the fix,
    never a YAML parser's report. (Copier 9.19.1 prints its traceback above that line for
    every answer a validator refuses under --data: it raises ValueError there, and its
    command line prints only its own UserMessageError without one.)"""
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable, "-m", "copier", "copy", "--defaults", "--vcs-ref", "HEAD",
            "--data", data, str(ROOT), str(tmp_path / "p"),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    question = data.split("=", 1)[0]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == f"ValueError: Validation error for question '{question}': {reason}" or (
        question in last_line and reason in last_line
    ), result.stderr
    assert "yaml" not in result.stderr.lower(), result.stderr
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def read_until(fd: int, wanted: str, timeout: float) -> str:
    """What a terminal shows until `wanted` appears (escape sequences stripped)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in ANSI.sub("", seen):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{wanted!r} not shown; the screen:\n{ANSI.sub('', seen)[-3000:]}")
        try:
            seen += os.read(fd, 65536).decode(errors="replace")
        except OSError:  # the child closed the terminal
            raise AssertionError(f"{wanted!r} not shown:\n{ANSI.sub('', seen)[-3000:]}") from None
    return ANSI.sub("", seen)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
# Questions before cors_allowed_origins, answered with their defaults (Enter).
BEFORE_ORIGINS = ["project_name", "description", "author_name", "python_version", "tls_profile",
                  "jwt_algorithm", "jwt_issuer", "jwt_audience", "jwt_leeway_seconds"]  # fmt: skip


def prompt_of(question: str) -> str:
    """The start of a question's prompt: its help, as the terminal shows it."""
    spec = yaml.safe_load((ROOT / "copier.yml").read_text())[question]
    return " ".join(spec["help"].split())[:30]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("question", "typed", "reason"),
    [
        ("project_name", "1service", "must start with a letter"),
        ("cors_allowed_origins", "*", "'*' is not an exact https://host[:port] origin"),
        ("cors_allowed_origins", "[unclosed", "'[unclosed' is not an exact"),
    ],
)
def test_bad_answer_typed_at_the_prompt_shows_the_reason(
    tmp_path: Path, question: str, typed: str, reason: str
) -> None:
    """Interactive copier in a real terminal: the reason under the prompt, not Copier's
    "Invalid input", and the question is asked again."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: copier on the terminal
        os.environ["TERM"] = "xterm"
        os.execv(  # noqa: S606 - this interpreter, fixed arguments
            sys.executable,
            [sys.executable, "-m", "copier", "copy", "--vcs-ref", "HEAD", str(ROOT),
             str(tmp_path / "p")],
        )  # fmt: skip
    # A wide terminal: prompt_toolkit cuts each line at the terminal's width.
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    try:
        for name in [*BEFORE_ORIGINS, question] if question != "project_name" else [question]:
            read_until(fd, prompt_of(name), 60)
            if name != question:
                os.write(fd, b"\r")
        os.write(fd, b"\x15" + typed.encode() + b"\r")  # Ctrl-U clears the default first
        screen = read_until(fd, reason, 30)
        assert "Invalid input" not in screen
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_good_uncommon_answers_render(tmp_path: Path) -> None:
    """Several origins with ports, leeway 0, the smallest message size."""
    origins = ["https://app.example.com", "https://admin.example.com:8443"]
    project = render(
        tmp_path / "p",
        project_name="Chat Edge-2",
        cors_allowed_origins=origins,
        jwt_leeway_seconds=0,
        max_message_bytes=1024,
    )
    rendered = (project / "src" / "chat_edge_2" / "answers.py").read_text()
    for origin in origins:
        assert f'"{origin}",' in rendered
    assert "JWT_LEEWAY_SECONDS: Final = 0\n" in rendered
    assert "MAX_MESSAGE_BYTES: Final = 1024\n" in rendered
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["cors_allowed_origins"] == origins


def test_every_question_has_type_and_help_and_a_validator_where_free_form() -> None:
    questions = {
        name: spec
        for name, spec in yaml.safe_load((ROOT / "copier.yml").read_text()).items()
        if not name.startswith("_") and spec.get("when") is not False
    }
    assert questions
    for name, spec in questions.items():
        assert spec.get("type"), name
        assert len(spec.get("help", "")) > 40, name
        assert "choices" in spec or "validator" in spec, name


@pytest.mark.timeout(300)
def test_an_update_keeps_origins_recorded_as_a_yaml_list(tmp_path: Path) -> None:
    """Projects made when cors_allowed_origins was `type: yaml` record a YAML list in their
    answers file; `copier update` must keep those origins (a `type: str` question would
    drop a list it cannot read and fall back to the default, silently)."""
    from test_update import copier_update
    from updates import project_at, release, template_history

    repo = template_history(tmp_path / "history", [("v1.0.0", None)])
    origins = ["https://app.example.com", "https://admin.example.com:8443"]
    project = project_at(repo, tmp_path / "p", "v1.0.0", cors_allowed_origins=origins)
    answers_file = project / ".copier-answers.yml"
    assert f"cors_allowed_origins:\n- {origins[0]}\n- {origins[1]}\n" in answers_file.read_text()
    readme = repo / "README.md"
    release(repo, "v1.0.1", lambda repo: readme.write_text(readme.read_text() + "\n1.0.1\n"))

    updated = copier_update(project)
    assert updated.returncode == 0, updated.stderr
    assert yaml.safe_load(answers_file.read_text())["cors_allowed_origins"] == origins
    rendered = (project / "src" / PACKAGE / "answers.py").read_text()
    for origin in origins:
        assert f'"{origin}",' in rendered


def answer_range(question: str) -> tuple[int, int]:
    """The bounds a copier.yml validator enforces: `{% if q < LOW or q > HIGH %}`."""
    validator = yaml.safe_load((ROOT / "copier.yml").read_text())[question]["validator"]
    found = re.search(rf"{question} < (\d+) or {question} > (\d+)", validator)
    assert found, f"{question}: no range in its validator"
    return int(found[1]), int(found[2])


def constant(node: ast.expr) -> int | None:
    """An integer written as a literal or as a product or sum of literals (`16 * 1024`)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Add | ast.Pow):
        left, right = constant(node.left), constant(node.right)
        if left is not None and right is not None:
            return int(
                left * right
                if isinstance(node.op, ast.Mult)
                else left + right
                if isinstance(node.op, ast.Add)
                else left**right
            )
    return None


def posture_limits() -> dict[str, int]:
    """posture.py's module-level integer constants (plain Python: read, not imported)."""
    source = (ROOT / "template" / "src" / "{{package_name}}" / "posture.py").read_text()
    limits = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            value = constant(node.value)
            if value is not None:
                limits[node.targets[0].id] = value
    return limits


def test_answer_ranges_are_the_services_limits() -> None:
    """One range each: what copier.yml accepts as an answer is what the rendered service's
    posture check (C14) accepts as a setting, so no answer renders a project that refuses
    to start, and no setting allowed at run time is refused as an answer."""
    limits = posture_limits()
    assert answer_range("jwt_leeway_seconds") == (0, limits["MAX_LEEWAY_SECONDS"])
    assert answer_range("max_message_bytes") == (
        limits["MIN_MESSAGE_BYTES"],
        limits["MAX_MESSAGE_BYTES"],
    )


def test_every_standard_library_module_is_refused_as_a_package_name() -> None:
    """includes/stdlib.jinja lists every public standard-library module of each Python this
    machine has (a package of that name is shadowed by, or shadows, the standard library's)."""
    import jinja2

    listed = set(
        jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT), autoescape=True)
        .get_template("includes/stdlib.jinja")
        .module.stdlib_modules()  # type: ignore[attr-defined]
        .split()
    )
    for version, python in interpreters().items():
        names = subprocess.run(  # noqa: S603 - a local interpreter, our own code
            [python, "-c", "import sys; print(*sorted(sys.stdlib_module_names))"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        public = {name for name in names if not name.startswith("_")}
        assert public <= listed, (version, sorted(public - listed))

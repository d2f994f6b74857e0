"""Every question validates its answer: a bad answer stops the render with a one-line
reason that names the question, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT, render

BAD_ANSWERS = [
    ("project_name", "1service", "must start with a letter"),
    ("project_name", "x", "must start with a letter"),
    ("project_name", "name; rm -rf /", "must start with a letter"),
    ("description", 'say "hi"', "without double quotes"),
    ("description", "x" * 201, "1 to 200 characters"),
    ("author_name", "a\nb", "one line"),
    ("python_version", "3.10", "3.10"),
    ("tls_profile", "old", "old"),
    ("jwt_algorithm", "none", "none"),
    ("jwt_algorithm", "HS512", "HS512"),
    ("jwt_issuer", "", "printable characters"),
    ("jwt_issuer", "https://a b", "printable characters"),
    ("jwt_audience", 'aud"ience', "printable characters"),
    ("jwt_leeway_seconds", -1, "between 0 and 120"),
    ("jwt_leeway_seconds", 3600, "between 0 and 120"),
    ("cors_allowed_origins", "https://app.example.com", "must be a list"),
    ("cors_allowed_origins", [], "at least one origin"),
    ("cors_allowed_origins", ["*"], "is not an exact https://host[:port] origin"),
    ("cors_allowed_origins", ["https://*.example.com"], "not an exact"),
    ("cors_allowed_origins", ["http://app.example.com"], "not an exact"),
    ("cors_allowed_origins", ["https://app.example.com/"], "not an exact"),
    ("cors_allowed_origins", ["https://app.example.com/path"], "not an exact"),
    ("cors_allowed_origins", ["https://App.Example.com"], "not an exact"),
    ("cors_allowed_origins", ["https://a.com", "null"], "null is not an exact"),
    ("cors_allowed_origins", {"origin": "https://a.com"}, "must be a list"),
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


def test_bad_answer_on_the_command_line_ends_with_the_reason(tmp_path: Path) -> None:
    """What a user sees: a non-zero exit whose last line names the question and the fix."""
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable, "-m", "copier", "copy", "--defaults", "--vcs-ref", "HEAD",
            "--data", "cors_allowed_origins=['*']", str(ROOT), str(tmp_path / "p"),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "cors_allowed_origins" in last_line
    assert "is not an exact https://host[:port] origin" in last_line


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

"""Several nodes on one Redis, live (C07, C11, C19): a rendered project's nodes, Debian's
redis-server from the project's own deploy/ files, and clients, all on 127.0.0.1.

The tests themselves are in tests/nodes_live.py, run inside a rendered project by its own
pytest (its live helpers: real uvicorn nodes with real TLS, real python-socketio clients),
with tests/services.py beside them to run redis-server. Each of them must pass, and none may
be missing from the run, skipped or deselected.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
import services

from harness import PACKAGE, ROOT, make_venv, render, run, tool

INNER = ROOT / "tests" / "nodes_live.py"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = services.missing_tools()
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (bash .ci/run installs them)")
    project = render(tmp_path_factory.mktemp("nodes") / "project")
    make_venv(project)
    shutil.copy(INNER, project / "tests" / "test_nodes_live.py")
    shutil.copy(ROOT / "tests" / "services.py", project / "tests" / "services.py")
    return project


def inner_tests() -> set[str]:
    tree = ast.parse(INNER.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_nodes_on_one_redis(project: Path) -> None:
    """Broadcast across nodes; revoke on one, cut off on the other within 1 s; the session
    cap across nodes; Redis killed, frozen and restarted; a restarted node still refusing a
    revoked token; serve refusing a wrong password, plaintext, the default user, no CA."""
    result = run(
        [tool(project / ".venv", "pytest"), "-p", "no:cacheprovider", "-rA", "-q",
         "tests/test_nodes_live.py"],
        cwd=project,
        env={"NODES_PACKAGE": PACKAGE},
        timeout=300,
    )  # fmt: skip
    passed = {
        match.group(1)
        for match in re.finditer(r"^PASSED tests/test_nodes_live\.py::(\w+)", result.stdout, re.M)
    }
    assert passed == inner_tests(), result.stdout[-5000:]
    assert not re.search(r"\b(skipped|deselected|xfailed|xpassed)\b", result.stdout)

"""The benchmark cannot rot: its smoke run renders the project, starts the bare and the
hardened server, drives every phase with the load generator, and writes its figures.

The real run (bench/run, several minutes) is not part of the suite; its figures are in
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from harness import ROOT, run


@pytest.mark.timeout(600)
def test_benchmark_smoke_run(tmp_path: Path) -> None:
    result = run(
        [sys.executable, ROOT / "bench" / "bench.py", "--quick", "--out", tmp_path], cwd=ROOT
    )
    assert "paired" in result.stdout
    data = json.loads((tmp_path / "quick.json").read_text())
    medians = data["medians"]
    for figure in ("connects_per_s", "cpu_us_per_connect", "echo_msgs_per_s", "cpu_us_per_echo"):
        assert set(medians[figure]) == {"bare", "hardened", "paired"}, figure
        assert all(value > 0 for value in medians[figure].values()), figure
        bare, hardened = data["samples"][figure]["bare"], data["samples"][figure]["hardened"]
        assert medians[figure]["paired"] == pytest.approx(hardened[0] / bare[0]), figure
    assert all(math.isfinite(value) for value in medians["rss_kib_per_conn_40"].values())
    assert data["meta"]["versions"]["python-socketio"]
    assert (tmp_path / "quick.png").stat().st_size > 1000

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


@pytest.mark.timeout(300)
def test_nodes_smoke_run(tmp_path: Path) -> None:
    """Several nodes over Redis (bench/nodes.py --quick): one node without a queue, one on
    the queue and two on it, with Debian's redis-server (TLS, ACL) from the rendered
    deploy/ files. The run itself fails unless every client gets every broadcast and
    every message reaches its receiver (across the nodes for two); here its figures must
    be complete and plausible."""
    result = run(
        [sys.executable, ROOT / "bench" / "nodes.py", "--quick", "--out", tmp_path], cwd=ROOT
    )
    assert "two/1" in result.stdout
    data = json.loads((tmp_path / "nodes-quick.json").read_text())
    setups = {"single", "queue", "two"}
    options = data["meta"]["options"]
    broadcasts = data["samples"][f"broadcast_s_{options['hold']}"]
    assert set(broadcasts) == setups
    for setup, times in broadcasts.items():
        assert len(times) == int(options["broadcasts"]), setup
        assert all(0 < value < float(options["wait"]) for value in times), setup
    medians = data["medians"]
    for figure in ("cpu_us_per_msg", "cpu_us_per_msg_nodes", "msgs_per_s", "delivery_p50_ms"):
        assert set(medians[figure]) == setups | {"queue/single", "two/single"}, figure
        assert all(value > 0 for value in medians[figure].values()), figure
    # Redis works only for the nodes on the queue.
    assert medians["cpu_us_per_msg_redis"]["queue"] > 0
    assert medians["cpu_us_per_msg_redis"]["two"] > 0
    assert data["maxima"][f"broadcast_s_{options['hold']}"]["two"] >= min(broadcasts["two"])
    assert data["meta"]["versions"]["redis-server"]

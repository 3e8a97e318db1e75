"""What a newcomer sees of a running swarm: true progress, quiet logs, an honest status.

Three real ``learnae peer start`` processes on skewed shards (3 classes each):
their status lines and ``learnae peer status`` report the accuracy on the
held-out test split of all ten classes (not the peer's own classes, where every
peer looks perfect), and it agrees with ``learnae peer eval`` of the same model;
their stderr holds nothing but learnae's own lines.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from learnae.scenario.process import start_swarm

pytestmark = pytest.mark.slow

OWN_LINE = re.compile(r"^(\d\d:\d\d:\d\d [A-Z]+ +learnae\.|step \d+ |stopped \(|resumed from )")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def test_progress_is_held_out_accuracy_and_stderr_is_learnaes_own(tmp_path):
    peers = start_swarm(tmp_path, 3, ["--partition", "classes:3", "--catch-up-s", "0", "--max-steps", "600",
                                      "--status-every-s", "2"])
    try:
        for p in peers:
            assert p.wait(600) == 0, p.log_tail()
    finally:
        for p in peers:
            if p.alive:
                p.kill()
    for p in peers:
        log = (p.data_dir / "peer.log").read_text()
        foreign = [line for line in log.splitlines() if line.strip() and not OWN_LINE.match(line)]
        assert foreign == [], foreign[:10]  # no library noise, no TensorFlow banner, no traceback
        status_lines = [line for line in log.splitlines() if line.startswith("step ") and "held-out" in line]
        assert status_lines, log[-2000:]  # the figure that matters is on the status line
        assert re.search(r"^stopped \(done\): 600 steps, \d+ merges", log, re.M), log[-1000:]

        status = json.loads(cli("peer", "status", "--data-dir", str(p.data_dir), "--format", "json").stdout)
        assert status["state"] == "left (done)" and status["running"] is False
        evaluated = json.loads(cli("peer", "eval", "--latest", "self", "--data-dir", str(p.data_dir),
                                   "--format", "json").stdout)
        assert evaluated["split"] == "test" and evaluated["step"] == 600
        assert abs(status["test_accuracy"] - evaluated["accuracy"]) <= 0.01, (status, evaluated)

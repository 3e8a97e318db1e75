"""A late joiner in a 6-peer `learnae scenario run`: afterwards every peer's ledger holds every
author's history (issue #14), not only what was gossiped while it was there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from learnae.ledger import Ledger

pytestmark = pytest.mark.slow  # six real peer processes

SCENARIO = """\
name: late
seed: 2
duration: 75s
partition: iid
peers: [peer-0, peer-1, peer-2, peer-3, peer-4, {name: peer-5, start: false}]
train: {max_steps: 0}
events:
  - {at: 10s, join: [peer-5]}
expect:
  - peers_alive == 6
  - ledger_valid: true
"""


def test_a_late_joiner_and_every_other_peer_hold_every_authors_history(tmp_path):
    (tmp_path / "late.yaml").write_text(SCENARIO)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "learnae.cli.main", "scenario", "run", str(tmp_path / "late.yaml"),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    ledgers = {}
    for name in report["peers"]:
        with Ledger.open(out / "peers" / name, readonly=True) as led:
            ledgers[name] = {(e.author, e.seq): e.ts for e in led.entries()}
    union = {key: ts for held in ledgers.values() for key, ts in held.items()}
    assert len({author for author, _ in union}) == 6
    settled = {key for key, ts in union.items() if ts <= max(union.values()) - 10_000}  # gossip + a sync round
    joined = next(e["t"] for e in report["events"] if e["action"] == "join")
    before_join = {key for key, ts in union.items() if ts <= report["started_at"] * 1000 + joined * 1000}
    assert before_join, "nothing was published before the late join: the test proves nothing"
    for name, held in ledgers.items():
        missing = sorted(settled - held.keys())
        assert not missing, f"{name} lacks {len(missing)} of {len(settled)} settled entries, e.g. {missing[:3]}"

"""What a newcomer sees of a running swarm: true progress, quiet logs, an honest status.

Three real ``learnae peer start`` processes on skewed shards (3 classes each):
their status lines and ``learnae peer status`` report the accuracy on the
held-out test split of all ten classes (not the peer's own classes, where every
peer looks perfect), and it agrees with ``learnae peer eval`` of the same model;
their stderr holds nothing but learnae's own lines. A newcomer's mistakes at
start (a stale bootstrap line, a peer not up yet, another model) are said once,
in learnae's words; a peer listening on every interface names the addresses
other machines dial; a restart says where it resumed, and ``peer status`` tells
a crash from a leave.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest

from learnae.identity import Identity
from learnae.scenario.process import PeerProcess, start_swarm
from tests.peer.nodes import wait_until

pytestmark = pytest.mark.slow

OWN_LINE = re.compile(r"^(\d\d:\d\d:\d\d [A-Z]+ +learnae\.|step \d+ |stopped \(|resumed from )")
FOREVER = ["--max-steps", "1000000", "--status-every-s", "1"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_of(peer: PeerProcess) -> str:
    return (peer.data_dir / "peer.log").read_text(errors="replace")


def state_of(peer: PeerProcess) -> str:
    return json.loads(cli("peer", "status", "--data-dir", str(peer.data_dir), "--format", "json").stdout)["state"]


def test_progress_is_held_out_accuracy_and_stderr_is_learnaes_own(tmp_path):
    peers = start_swarm(tmp_path, 3, ["--partition", "classes:3", "--catch-up-s", "0", "--max-steps", "200",
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
        assert re.search(r"^stopped \(done\): 200 steps, \d+ merges", log, re.M), log[-1000:]

        status = json.loads(cli("peer", "status", "--data-dir", str(p.data_dir), "--format", "json").stdout)
        assert status["state"] == "left (done)" and status["running"] is False
        evaluated = json.loads(cli("peer", "eval", "--latest", "self", "--data-dir", str(p.data_dir),
                                   "--format", "json").stdout)
        assert evaluated["split"] == "test" and evaluated["step"] == 200
        assert abs(status["test_accuracy"] - evaluated["accuracy"]) <= 0.01, (status, evaluated)


def test_a_stale_bootstrap_line_is_said_once_and_another_model_prints_no_address(tmp_path):
    there = PeerProcess.start(tmp_path / "there", ["--min-peers", "1", "--catch-up-s", "0", *FOREVER])  # idle
    peers = [there]
    try:
        actual, wrong = there.addr.rsplit("/p2p/", 1)[1], Identity.generate().peer_id
        other = cli("peer", "start", "--data-dir", str(tmp_path / "other"), "--listen", "/ip4/127.0.0.1/tcp/0",
                    "--model", "digits-cnn", "--bootstrap", there.addr, "--max-steps", "10")
        errors = [line for line in other.stderr.splitlines() if line.startswith("learnae: error: ")]
        assert other.returncode == 2 and len(errors) == 1, other.stderr[-2000:]
        assert "trains in swarm" in errors[0] and "fingerprint" in errors[0] and "--model" in errors[0], errors[0]
        assert other.stdout == ""  # it never was a member: no address to hand out

        stale = there.addr.replace(actual, wrong)  # the line of an earlier key, say
        lost = PeerProcess.start(tmp_path / "lost", ["--bootstrap", stale, "--catch-up-s", "0", *FOREVER])
        peers.append(lost)
        wait_until(lambda: "has ID" in log_of(lost), 120, "the line naming the peer there")
        time.sleep(10)  # discovery redials meanwhile, quietly
        assert lost.alive
        lines = log_of(lost).splitlines()
        (said,) = [line for line in lines if wrong in line]
        assert f"the peer at {stale.split('/p2p/')[0]} has ID {actual}, not {wrong}: copy its current first line" \
            in said and "retrying in the background" in said
        assert [line for line in lines if line.strip() and not OWN_LINE.match(line)] == []  # no py-libp2p line
    finally:
        for p in peers:
            p.kill()


def test_a_bootstrap_peer_not_up_yet_is_waited_for_and_a_wildcard_listener_names_its_addresses(tmp_path):
    late_dir, port = tmp_path / "late", free_port()
    late_id = Identity.load_or_create(late_dir).peer_id  # its first line is known before it starts
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{late_id}"
    args = ["--bootstrap", addr, "--min-peers", "1", "--catch-up-s", "0", "--checkpoint-every", "20", *FOREVER]
    early = PeerProcess.start(tmp_path / "early", args)
    peers = [early]
    try:
        wait_until(lambda: "cannot reach" in log_of(early), 60, "the line saying the bootstrap peer is not up")
        late = PeerProcess.launch(late_dir, ["--listen", f"/ip4/0.0.0.0/tcp/{port}", "--catch-up-s", "0", *FOREVER])
        peers.append(late)
        assert late.wait_ready() == addr  # the line for peers on this machine ...
        wait_until(lambda: "listening on every interface" in log_of(late), 30, "the other machines' addresses")
        lan = [line.strip() for line in log_of(late).splitlines() if line.startswith("  /ip")]
        assert all(a.endswith(f"/tcp/{port}/p2p/{late_id}") and "/127.0.0.1/" not in a for a in lan)  # ... theirs
        wait_until(lambda: any(r["step"] >= 40 for r in early.metrics()), 180, "early to train with late",
                   detail=lambda: f"early:\n{log_of(early)[-4000:]}\nlate:\n{log_of(late)[-3000:]}")

        lines = log_of(early).splitlines()
        (said,) = [line for line in lines if addr.split("/p2p/")[0] in line or late_id in line]
        assert f"cannot reach /ip4/127.0.0.1/tcp/{port}: nothing listens there" in said and "retrying" in said
        waiting = [line for line in lines if line.startswith("step 0 ")]
        assert waiting and all("waiting to start" in line and "nan" not in line for line in waiting), waiting
        assert [line for line in lines if line.strip() and not OWN_LINE.match(line)] == []

        early.kill()
        assert state_of(early) == "stopped without leaving (crashed or killed)"
        peers[0] = early = PeerProcess.start(early.data_dir, args)
        assert re.search(r"^resumed from the checkpoint of step [1-9]\d* in ", log_of(early), re.M), log_of(early)
        assert early.stop(30) == 0
        assert state_of(early) == "left (interrupted)"
    finally:
        for p in peers:
            p.kill()

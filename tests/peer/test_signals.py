"""A peer leaves gracefully on SIGINT at any moment of its life: start-up, training, finishing.

A scenario run stops its peers with one SIGINT each; a peer that died of it (a
KeyboardInterrupt escaping while TensorFlow loaded, or during the final
consensus) used to count as failed.
"""

from __future__ import annotations

import signal
import time

import pytest

from learnae.scenario.process import PeerProcess
from tests.peer.nodes import wait_until

pytestmark = pytest.mark.slow


def stop_at(tmp_path, name: str, when, args: list[str]) -> tuple[int, str]:
    p = PeerProcess.launch(tmp_path / name, args)
    try:
        when(p)
        p.signal(signal.SIGINT)
        code = p.wait(60)
    finally:
        if p.alive:
            p.kill()
    return code, p.log_tail(20000)


def trained(p: PeerProcess, steps: int = 1) -> bool:
    return any(r.get("step", 0) >= steps for r in p.metrics())


@pytest.mark.parametrize("after_s", [0.5, 2.0])
def test_sigint_while_python_and_tensorflow_load_is_a_clean_exit(tmp_path, after_s):
    """0.5 s: in the CLI's imports or click's parsing (was a KeyboardInterrupt traceback, or
    "aborted" and exit code 130); 2 s: loading TensorFlow, or still importing on a loaded machine."""
    code, log = stop_at(tmp_path, "me", lambda p: time.sleep(after_s), ["--max-steps", "100000"])
    assert code == 0 and "Traceback" not in log and "error" not in log, log[-3000:]


def test_sigint_while_training_is_a_clean_exit(tmp_path):
    code, log = stop_at(tmp_path, "me", lambda p: (p.wait_ready(), wait_until(lambda: trained(p))),
                        ["--max-steps", "100000", "--status-every-s", "0.5"])
    assert code == 0 and "Traceback" not in log, log[-3000:]
    assert "interrupted" in log or "SIGINT" in log


def test_sigint_during_the_final_consensus_is_a_clean_exit(tmp_path):
    # At max_steps a peer waits (up to a minute) for its neighbours' final snapshots; this
    # neighbour is slowed 50x, so the wait is long enough to be interrupted.
    slow = tmp_path / "slow.json"
    slow.write_text('{"slow": 50}')
    other = PeerProcess.start(tmp_path / "other", ["--max-steps", "1000000", "--faults", str(slow)])
    try:
        code, log = stop_at(tmp_path, "me", lambda p: (p.wait_ready(), wait_until(lambda: trained(p, 50))),
                            ["--max-steps", "50", "--bootstrap", other.addr, "--status-every-s", "0.5",
                             "--catch-up-s", "0"])
    finally:
        other.kill()
    assert code == 0 and "Traceback" not in log, log[-3000:]

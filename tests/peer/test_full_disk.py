"""A full disk under a real ``learnae peer start``: one line and exit 1, then a clean resume.

The data dir lives on a small tmpfs the test mounts (root only); the test fills it
while the peer trains, reads the peer's stderr, frees the space, starts the peer
again and checks that it resumed and that its own chain is intact and unforked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from learnae.identity import Identity
from learnae.ledger import Ledger

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]


def start(data_dir, err_path):
    err = open(err_path, "ab")  # outside the full disk: the error line must survive it
    argv = [sys.executable, "-m", "learnae.cli.main", "peer", "start", "--data-dir", str(data_dir),
            "--listen", "/ip4/127.0.0.1/tcp/0", "--max-steps", "1000000", "--status-every-s", "1"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def own_seqs(data_dir) -> list[int]:
    me = Identity.load(data_dir / "identity.key").peer_id
    with Ledger.open(data_dir, readonly=True) as led:
        return [e.seq for e in led.entries(author=me)]


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
    with open("/proc/mounts") as fh:
        assert str(mount) not in fh.read()  # nothing left behind


def test_a_full_disk_stops_the_peer_in_one_line_and_it_resumes_with_its_chain_intact(tmp_path, small_disk):
    data_dir, err = small_disk / "peer", tmp_path / "stderr.txt"
    peer = start(data_dir, err)
    try:
        wait_for(lambda: (data_dir / "checkpoint.safetensors").exists() and len(own_seqs(data_dir)) > 20, 180,
                 "the peer to train and checkpoint")
        with open(small_disk / "filler", "wb") as fh:  # fill the disk to the last block
            try:
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
            except OSError:
                pass
        code = peer.wait(120)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    text = err.read_text()
    assert code == 1, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("learnae: error: ") and "full" in last and "free some space" in last, last
    before = own_seqs(data_dir)
    assert before == list(range(len(before)))

    (small_disk / "filler").unlink()
    err.write_text("")
    again = start(data_dir, err)
    try:
        wait_for(lambda: len(own_seqs(data_dir)) > len(before) + 5, 180, "the restarted peer to publish")
    finally:
        again.terminate()
        again.wait(60)
    assert "resumed from the checkpoint of step" in err.read_text()
    after = own_seqs(data_dir)
    assert after[: len(before)] == before and after == list(range(len(after)))  # one chain, no seq twice
    check = subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "verify", str(data_dir)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and " 0 forks" in check.stdout, check.stdout + check.stderr

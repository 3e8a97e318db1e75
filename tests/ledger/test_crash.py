"""kill -9 a process appending to its chain, 50 times: the chain stays valid, nothing acknowledged is lost."""

from __future__ import annotations

import os
import random
import select
import signal
import struct
import subprocess
import time

from learnae.ledger import Ledger
from learnae.ledger.log import EntryLog
from tests.ledger.chains import SWARM, ident, raw_cid

KILLS = 50


def _appender(data_dir, ack_fd: int, chunk: int | None) -> None:
    """Child: append snapshots forever, acknowledging each seq once append() returned."""
    EntryLog.write_chunk_bytes = chunk
    EntryLog.write_pause_s = 0.0002 if chunk else 0.0
    try:
        led = Ledger.open(data_dir, ident(5), swarm=SWARM)
        while True:
            seq = led.next_seq
            body = {"model": raw_cid(b"m%d" % seq), "step": seq, "samples": seq * 32,
                    "metrics": {"loss": 1.0 / (seq + 1)}, "parents": []}
            e = led.append("snapshot", body)
            os.write(ack_fd, struct.pack(">I", e.seq))
    finally:
        os._exit(0)


def _drain(fd: int, buf: bytearray) -> None:
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buf += chunk


def test_kill_9_mid_append_never_breaks_the_chain(tmp_path, learnae_cli):
    rng = random.Random(20261121)
    acked_max = -1
    torn = 0  # kills that landed inside a write (informational: depends on timing)
    for _ in range(KILLS):
        r, w = os.pipe()
        pid = os.fork()  # a child with the modules already imported: 50 kills stay fast
        if pid == 0:
            os.close(r)
            _appender(tmp_path, w, rng.choice([None, 5]))
        os.close(w)
        buf = bytearray()
        deadline = time.monotonic() + 10
        while len(buf) < 4 and time.monotonic() < deadline:  # let it get going: open + >= 1 append
            select.select([r], [], [], 0.5)
            _drain(r, buf)
        time.sleep(rng.uniform(0.0, 0.03))  # then kill it at a random moment, usually mid-append
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        torn += bool(EntryLog(tmp_path / "ledger" / "own.log", readonly=True).torn_bytes)
        _drain(r, buf)
        os.close(r)
        acks = [struct.unpack_from(">I", buf, i)[0] for i in range(0, len(buf) - len(buf) % 4, 4)]
        assert acks, "the child never appended"
        assert acks == list(range(acks[0], acks[0] + len(acks)))
        # it resumed right after the last acknowledged entry (or one more, appended but killed before
        # its ack was sent): nothing acknowledged was lost, nothing was skipped
        assert acked_max + 1 <= acks[0] <= acked_max + 2
        acked_max = acks[-1]
    # the CLI finds every entry valid...
    out = subprocess.run([*learnae_cli, "ledger", "verify", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # ...and no seq is skipped: 0..n-1, with everything acknowledged present
    with Ledger.open(tmp_path, ident(5), swarm=SWARM) as led:
        seqs = [e.seq for e in led.entries(author=ident(5).peer_id)]
    assert seqs == list(range(len(seqs))) and len(seqs) - 1 >= acked_max
    print(f"{KILLS} kills, {torn} inside a write, {len(seqs)} entries")

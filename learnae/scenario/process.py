"""Real ``learnae peer start`` processes on loopback, for tests and scenarios.

A :class:`PeerProcess` starts one peer with its own data dir and a free port,
reads its dial line (the first line it prints), and can pause, resume, kill
(``SIGKILL``) or stop it (``SIGINT``, a graceful leave). Its stderr goes to
``<data-dir>/peer.log`` so a failing run can be read afterwards, and its
progress is in ``<data-dir>/metrics.jsonl`` (:meth:`PeerProcess.records`).

Example:
    >>> a = PeerProcess.start(tmp / "a", ["--shard", "0/2", "--max-steps", "200"])
    >>> b = PeerProcess.start(tmp / "b", ["--shard", "1/2", "--max-steps", "200",
    ...                                   "--bootstrap", a.addr])
    >>> a.wait(); b.wait()
    >>> a.records()[-1].test_accuracy
    0.91
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from learnae.errors import ServiceError
from learnae.peer.record import MetricsRecord, read_records

__all__ = ["PeerProcess", "PeerStartError", "start_swarm"]

START_TIMEOUT_S = 120.0  # TensorFlow import and model build on a loaded 2-core machine


class PeerStartError(ServiceError):
    """A peer process exited or stayed silent before printing its dial line."""


class PeerProcess:
    """One running ``learnae peer start`` subprocess."""

    def __init__(self, proc: subprocess.Popen, data_dir: Path, addr: str, args: list[str]):
        self.proc, self.data_dir, self.addr, self.args = proc, data_dir, addr, args

    @classmethod
    def launch(cls, data_dir: Path, args: list[str], *, env: dict | None = None) -> PeerProcess:
        """Start the process without waiting for it (call :meth:`wait_ready` next)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        argv = [sys.executable, "-m", "learnae.cli.main", "peer", "start", "--data-dir", str(data_dir),
                "--listen", "/ip4/127.0.0.1/tcp/0", *args]
        with open(data_dir / "peer.log", "ab") as log:
            # Its own session: a terminal's Ctrl-C reaches whoever started it (the scenario runner),
            # which tells each peer to leave exactly once; a second SIGINT would cut its leave short.
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=full_env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(proc, data_dir, "", args)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Wait for the dial line; return it.

        Raises:
            PeerStartError: it exited or printed nothing in ``timeout_s``; the
                message carries the tail of its log.
        """
        deadline = time.monotonic() + timeout_s
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        addr = line.decode().strip()
        if not addr.startswith("/ip4/"):
            self.kill()
            raise PeerStartError(f"peer in {self.data_dir} did not start (exit {self.proc.returncode}): "
                                 f"{self.log_tail(2000)}")
        self.addr = addr
        return addr

    def poll_ready(self) -> str | None:
        """The dial line if it has been printed (never blocks, never kills); None until then."""
        if self.addr:
            return self.addr
        ready, _, _ = select.select([self.proc.stdout], [], [], 0)
        if ready:
            line = self.proc.stdout.readline().decode().strip()
            if line.startswith("/ip4/"):
                self.addr = line
        return self.addr or None

    @classmethod
    def start(cls, data_dir: Path, args: list[str], *, env: dict | None = None,
              timeout_s: float = START_TIMEOUT_S) -> PeerProcess:
        """Launch a peer listening on 127.0.0.1 (any free port) and wait for its dial line."""
        peer = cls.launch(data_dir, args, env=env)
        peer.wait_ready(timeout_s)
        return peer

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """``kill -9``: no leave entry, no final checkpoint."""
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> int:
        """Ctrl-C (a graceful leave); escalate to SIGKILL after ``timeout_s``."""
        self.signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def wait(self, timeout_s: float | None = None) -> int:
        return self.proc.wait(timeout_s)

    def records(self) -> list[MetricsRecord]:
        """Every metrics record the peer wrote so far, oldest first."""
        return read_records(self.data_dir)

    def metrics(self) -> list[dict]:
        """The records as JSON objects (:meth:`MetricsRecord.to_json`), for callers that index by key."""
        return [r.to_json() for r in self.records()]

    def log_tail(self, n_chars: int = 3000) -> str:
        return (self.data_dir / "peer.log").read_text(errors="replace")[-n_chars:]


def start_swarm(root: Path, n: int, args: list[str], *, prefix: str = "p", env: dict | None = None) -> list[PeerProcess]:
    """Start ``n`` peers with shards ``I/n``; peer 0 is everyone's bootstrap.

    Every peer waits for the whole swarm before its first step (``--min-peers n-1``),
    so no peer trains alone while the others are still importing TensorFlow.
    Data dirs are ``<root>/<prefix><i>``. If a peer fails to start, every peer
    started so far is killed and :class:`PeerStartError` is raised.
    """
    wait = ["--min-peers", str(n - 1)]
    first = PeerProcess.start(Path(root) / f"{prefix}0", ["--shard", f"0/{n}", *wait, *args], env=env)
    peers = [first]
    try:
        peers += [PeerProcess.launch(Path(root) / f"{prefix}{i}",
                                     ["--shard", f"{i}/{n}", "--bootstrap", first.addr, *wait, *args], env=env)
                  for i in range(1, n)]
        for p in peers[1:]:
            p.wait_ready()
    except BaseException:
        for p in peers:
            if p.alive:
                p.kill()
        raise
    return peers

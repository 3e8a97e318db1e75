"""Drive ``python -m tests.gossip.node`` processes from tests (threads read their stdout).

They run with the repository root as working directory, where ``tests`` is importable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class NodeProc:
    """One gossip node process: its dial address, its JSON events, and a command pipe."""

    def __init__(self, swarm: str, *args: str, env: dict | None = None, prefix: list[str] | None = None,
                 start_timeout_s: float = 30.0, module: str = "tests.gossip.node"):
        cmd = (prefix or []) + [sys.executable, "-m", module, "--swarm", swarm, *args]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self._cv = threading.Condition()
        self.addr = None
        threading.Thread(target=self._read_err, daemon=True).start()
        first = self._readline(start_timeout_s)
        if not first or not first.startswith("/"):
            self.kill()
            raise RuntimeError(f"node did not print its address: {first!r}\n{''.join(self.stderr)[-3000:]}")
        self.addr = first.strip()
        self.peer_id = self.addr.rsplit("/p2p/", 1)[1]
        threading.Thread(target=self._read_out, daemon=True).start()

    def _readline(self, timeout_s: float) -> str:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline().decode()), daemon=True)
        t.start()
        t.join(timeout_s)
        return out[0] if out else ""

    def _read_out(self) -> None:
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            with self._cv:
                self.events.append(ev)
                self._cv.notify_all()

    def _read_err(self) -> None:
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace"))

    def send(self, **cmd) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout_s: float = 20.0) -> dict | None:
        """The first event (new or old) matching ``pred``, or None at the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)

    def request(self, cmd: str, *, timeout_s: float = 20.0, **fields) -> dict:
        """Send a command and wait for its answer event (the next one of that name)."""
        ev_name = {"publish": "published", "publish_raw": "published"}.get(cmd, cmd)
        with self._cv:
            n = sum(1 for e in self.events if e.get("ev") == ev_name)
        self.send(cmd=cmd, **fields)
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                answers = [e for e in self.events if e.get("ev") == ev_name]
                if len(answers) > n:
                    return answers[n]
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no {ev_name} answer in {timeout_s} s (exit {self.proc.poll()}); "
                                       f"stderr: {''.join(self.stderr)[-2000:]}")
                self._cv.wait(min(left, 0.5))

    def received(self, author: str | None = None) -> list[dict]:
        with self._cv:
            return [e for e in self.events if e.get("ev") == "recv" and (author is None or e["author"] == author)]

    def quit(self, timeout_s: float = 20.0) -> int:
        try:
            self.send(cmd="quit")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

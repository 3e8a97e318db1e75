"""Drive a real Kubo node (the ``kubo-peer`` test tool) from tests.

``kubo-peer`` embeds Kubo v0.22 on loopback only and speaks JSON lines on
stdin/stdout. It is not part of this repository: on test machines it lives in
the ``shared/tools`` folder next to the repository's root (:data:`TOOLS_DIR`).
This module runs ``kubo-peer-setup`` once (idempotent), starts the peer and
sends commands, from plain threads or from trio. Where the tool is absent (a
plain clone), :class:`KuboUnavailable` is raised and the tests skip.

Example (trio; skip the test when the tool cannot be set up)::

    import pytest
    from tests.kubo_peer import KuboUnavailable, open_kubo_peer

    async def test_kubo_fetches_from_us(tmp_path):
        try:
            async with open_kubo_peer() as kubo:
                print(kubo.peer_id, kubo.addrs[0])          # /ip4/127.0.0.1/tcp/.../p2p/Qm...
                await kubo.acall("connect", addr=my_full_multiaddr)
                got = await kubo.acall("download", cid=str(cid), dest=str(tmp_path / "x"), timeout=30)
                assert got["ok"], got
        except KuboUnavailable as exc:
            pytest.skip(str(exc))

Synchronous use: ``with KuboPeer.start() as kubo: kubo.call("id")``.
A command that fails (``"ok": false``) is returned as is, for the caller to
check; only a dead process or a missing answer raises :class:`KuboPeerError`.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.conftest import SHARED

__all__ = ["TOOLS_DIR", "KuboUnavailable", "KuboPeerError", "KuboPeer", "setup_kubo", "open_kubo_peer"]

TOOLS_DIR = SHARED / "tools"  # the test tools of the machine, outside the repository
_setup_lock = threading.Lock()
_setup_result: tuple[str | None, str] | None = None  # (python, reason)


class KuboUnavailable(Exception):
    """kubo-peer cannot be set up on this machine (tests skip with this reason)."""


class KuboPeerError(Exception):
    """The kubo-peer process died or did not answer in time."""


def setup_kubo(timeout_s: float = 900.0) -> str:
    """Run ``kubo-peer-setup`` once per process; return the venv's python.

    Raises:
        KuboUnavailable: the tool is missing or its setup failed (the reason says why).
    """
    global _setup_result
    with _setup_lock:
        if _setup_result is None:
            script = TOOLS_DIR / "kubo-peer-setup"
            if not script.is_file():
                _setup_result = (None, f"{script} not found")
            else:
                try:
                    res = subprocess.run([str(script)], capture_output=True, text=True, timeout=timeout_s)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    _setup_result = (None, f"kubo-peer-setup failed: {exc}")
                else:
                    lines = res.stdout.strip().splitlines()
                    if res.returncode == 0 and lines:
                        _setup_result = (lines[-1], "")
                    else:
                        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
                        _setup_result = (None, f"kubo-peer-setup exited {res.returncode}: {tail}")
        python, reason = _setup_result
    if python is None:
        raise KuboUnavailable(reason)
    return python


class KuboPeer:
    """One running ``kubo-peer`` process.

    Attributes:
        peer_id: the Kubo node's peer ID (``Qm...``).
        addrs: its full loopback multiaddrs, ending in ``/p2p/<peer_id>``.
        ready: the whole ``ready`` line.
    """

    def __init__(self, proc: subprocess.Popen, stderr_path: Path):
        self.proc = proc
        self.stderr_path = stderr_path
        self._own_dir: Path | None = None  # a temp workdir start() made, removed on close()
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._next_id = 0
        threading.Thread(target=self._pump, daemon=True).start()
        ready = self._get(120.0)
        if ready.get("ev") != "ready":
            self.close()
            raise KuboUnavailable(f"kubo-peer did not start: {ready}; stderr: {self.stderr_tail()}")
        self.ready = ready
        self.peer_id: str = ready["peer_id"]
        self.addrs: list[str] = list(ready["addrs"])

    @classmethod
    def start(cls, workdir: str | Path | None = None) -> KuboPeer:
        """Set up (once) and start a fresh Kubo node with a temp repo.

        Raises:
            KuboUnavailable: setup failed or the node did not start.
        """
        python = setup_kubo()
        own_dir = workdir is None
        workdir = Path(workdir or tempfile.mkdtemp(prefix="kubo-peer-"))
        workdir.mkdir(parents=True, exist_ok=True)
        err = workdir / f"kubo-peer.{os.getpid()}.{id(workdir)}.stderr"
        with open(err, "wb") as err_fh:
            proc = subprocess.Popen([python, str(TOOLS_DIR / "kubo-peer")], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err_fh, cwd=workdir)
        peer = cls(proc, err)
        peer._own_dir = workdir if own_dir else None
        return peer

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:
                self._lines.put({"ev": "garbage", "ok": False, "raw": raw.decode("utf-8", "replace")})
        self._lines.put({"ev": "eof", "ok": False})

    def _get(self, timeout_s: float) -> dict:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return {"ev": "no-answer", "ok": False}

    def call(self, cmd: str, *, wait_s: float | None = None, **fields) -> dict:
        """Send one command and return its answer line (blocking).

        Args:
            cmd: ``id``, ``connect``, ``add``, ``hash``, ``download``, ``sub``, ``pub``, ...
            wait_s: how long to wait for the answer (default: the command's
                ``timeout`` field plus 30 s).
            **fields: the command's fields, e.g. ``addr=...``, ``path=...``.

        Raises:
            KuboPeerError: the process exited or did not answer in time.
        """
        with self._lock:
            self._next_id += 1
            req = {"cmd": cmd, "id": self._next_id, **fields}
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(req) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise KuboPeerError(f"kubo-peer is gone: {exc}; stderr: {self.stderr_tail()}") from exc
            limit = wait_s if wait_s is not None else float(fields.get("timeout", 60)) + 30
            while True:
                ans = self._get(limit)
                if ans.get("ev") in ("eof", "no-answer"):
                    raise KuboPeerError(f"kubo-peer gave no answer to {cmd}: {ans}; stderr: {self.stderr_tail()}")
                if ans.get("id") in (self._next_id, None):
                    return ans

    async def acall(self, cmd: str, **fields) -> dict:
        """:meth:`call` from trio, in a worker thread."""
        import trio

        return await trio.to_thread.run_sync(lambda: self.call(cmd, **fields))

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.stderr_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """Quit the node (``quit``, then SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if self._own_dir is not None:
            import shutil

            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def __enter__(self) -> KuboPeer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@asynccontextmanager
async def open_kubo_peer(workdir: str | Path | None = None) -> AsyncIterator[KuboPeer]:
    """Start a Kubo node from trio; it quits when the block exits.

    Raises:
        KuboUnavailable: the tool cannot be set up or the node did not start.
    """
    import trio

    peer = await trio.to_thread.run_sync(lambda: KuboPeer.start(workdir))
    try:
        yield peer
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(peer.close)

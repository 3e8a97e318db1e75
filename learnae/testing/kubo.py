"""Drive a real Kubo node (``../shared/tools/kubo-peer``) from tests.

``kubo-peer`` embeds Kubo v0.22 on loopback only and speaks JSON lines on
stdin/stdout (see ``../shared/tools/README.md``). This module finds the tool
relative to the repository, runs ``kubo-peer-setup`` once (idempotent), starts
the peer and sends commands, from plain threads or from trio.

Example (trio; skip the test when the tool cannot be set up)::

    import pytest
    from learnae.testing.kubo import KuboUnavailable, open_kubo_peer

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

__all__ = ["TOOLS_DIR", "KuboUnavailable", "KuboPeerError", "KuboPeer", "FakeKuboRPC", "setup_kubo", "open_kubo_peer"]

TOOLS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "tools"
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


class FakeKuboRPC:
    """An in-process stand-in for Kubo's RPC API (``/api/v0``), for unit tests of ``KuboStore``.

    It answers the calls :class:`learnae.storage.kubo.KuboStore` makes (version,
    add, block/get|put|stat, pin/add|rm|ls, repo/gc) from a real
    :class:`~learnae.storage.blockstore.BlockStore`, with Kubo's error shape
    (HTTP 500, ``{"Message": ..., "Type": "error"}``). Loopback only. It is no
    substitute for a daemon (``LEARNAE_TEST_KUBO_API``): it cannot tell whether
    Kubo itself accepts a request, only that the client makes well-formed ones.

    Example::

        with FakeKuboRPC(tmp_path / "blocks") as fake:
            store = KuboStore(fake.api)          # "/ip4/127.0.0.1/tcp/<port>"
    """

    def __init__(self, root: str | Path):
        import http.server

        from learnae.storage.blockstore import BlockStore

        self.blocks = BlockStore(root)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                status, ctype, out = fake._dispatch(self)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api = f"/ip4/127.0.0.1/tcp/{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @staticmethod
    def _body(req) -> bytes:
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while size := int(req.rfile.readline().strip() or b"0", 16):
                out += req.rfile.read(size)
                req.rfile.readline()
            req.rfile.readline()
            return out
        return req.rfile.read(int(req.headers.get("Content-Length") or 0))

    @staticmethod
    def _first_file(req, body: bytes) -> bytes:
        from email.parser import BytesParser

        msg = BytesParser().parsebytes(b"Content-Type: " + req.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
        for part in msg.walk():
            if not part.is_multipart():
                return part.get_payload(decode=True) or b""
        return b""

    def _dispatch(self, req) -> tuple[int, str, bytes]:
        from urllib.parse import parse_qs, urlsplit

        from learnae.errors import LearnaeError
        from learnae.storage.cid import cid_of, parse_cid
        from learnae.storage.store import _walk_all
        from learnae.storage.unixfs import import_bytes

        url = urlsplit(req.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body(req)

        def ok(value) -> tuple[int, str, bytes]:
            return 200, "application/json", json.dumps(value).encode()

        def err(message: str) -> tuple[int, str, bytes]:
            return 500, "application/json", json.dumps({"Message": message, "Code": 0, "Type": "error"}).encode()

        try:
            path = url.path.removeprefix("/api/v0/")
            if path == "version":
                return ok({"Version": "0.22.0-fake", "Commit": "", "Repo": "14", "System": "fake", "Golang": ""})
            if path == "add":
                data = self._first_file(req, body)
                cid = import_bytes(data, self.blocks.put_verified, cid_version=int(q.get("cid-version", 0)))
                if q.get("pin", "true").lower() == "true":
                    self.blocks.pin(cid)
                return ok({"Name": str(cid), "Hash": str(cid), "Size": str(len(data))})
            if path in ("block/get", "block/stat"):
                cid = parse_cid(q["arg"])
                if not self.blocks.has(cid):
                    return err("block was not found locally (offline): ipld: could not find " + str(cid))
                data = self.blocks.get_block(cid)
                return (200, "text/plain", data) if path == "block/get" else ok({"Key": str(cid), "Size": len(data)})
            if path == "block/put":
                data = self._first_file(req, body)
                cid = cid_of(data, q.get("cid-codec", "raw"))
                self.blocks.put_block(cid, data)
                return ok({"Key": str(cid), "Size": len(data)})
            if path == "pin/add":
                cid = parse_cid(q["arg"])
                _walk_all(self.blocks, cid)
                self.blocks.pin(cid)
                return ok({"Pins": [str(cid)]})
            if path == "pin/rm":
                cid = parse_cid(q["arg"])
                if not self.blocks.is_pinned(cid):
                    return err("not pinned or pinned indirectly")
                self.blocks.unpin(cid)
                return ok({"Pins": [str(cid)]})
            if path == "pin/ls":
                return ok({"Keys": {str(c): {"Type": "recursive"} for c in self.blocks.pins()}})
            if path == "repo/gc":
                before = set(map(str, self.blocks.cids()))
                self.blocks.gc()
                gone = before - set(map(str, self.blocks.cids()))
                return 200, "application/json", b"".join(json.dumps({"Key": {"/": c}}).encode() + b"\n" for c in gone)
            return err(f"unknown command {path!r}")
        except (LearnaeError, KeyError, ValueError) as exc:
            return err(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeKuboRPC:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""An in-process fake of Kubo's RPC API, for unit tests of code that talks to a Kubo daemon.

:class:`FakeKuboRPC` serves the ``/api/v0`` calls that
:class:`learnae.storage.kubo.KuboStore` makes from a real block store, on
127.0.0.1, so ``KuboStore`` (or a user's own code built on it) can be tested
with no daemon installed. It ships with the library, like the other fakes in
:mod:`learnae.testing`, because users need it for their own tests.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

__all__ = ["FakeKuboRPC"]


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

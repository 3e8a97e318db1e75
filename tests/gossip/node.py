"""A standalone gossip node process, driven by JSON lines (tests, benchmarks, debugging).

Run from the repository root (``tests`` is a package there, not part of the
installed library): ``python -m tests.gossip.node --swarm SID [--listen MA]
[--bootstrap MA]...``.
The first stdout line is the node's full multiaddr (what others pass as
``--bootstrap``); every later line is one JSON event. Commands arrive on stdin,
one JSON object per line:

=====================================  =============================================
command                                answer / effect
=====================================  =============================================
``{"cmd": "publish", "n": 10}``        signs and publishes n chained ``leave``
                                       entries (``"rate": R`` paces them at R/s);
                                       answers ``{"ev": "published", "n": 10}``
``{"cmd": "publish_raw", "hex": H}``   publishes raw bytes (for rejection tests)
``{"cmd": "connect", "addr": MA}``     ``{"ev": "connect", "ok": true}``
``{"cmd": "stats"}``                   ``{"ev": "stats", ...counters, "peers": [...]}``
``{"cmd": "provide", "key": CID}``     ``{"ev": "provide", "ok": true}``
``{"cmd": "find", "key": CID}``        ``{"ev": "find", "providers": [peer ids]}``
``{"cmd": "quit"}``                    clean shutdown, then ``{"ev": "bye"}``, exit 0
=====================================  =============================================

Each received announcement prints ``{"ev": "recv", "author", "seq", "sent_s",
"recv_s"}``, where ``sent_s`` is the publisher's ``time.time()`` at signing (in
the entry's ``reason``), so latency can be measured across processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import trio

from learnae.gossip.announce import open_gossip
from learnae.gossip.discovery import DiscoveryParams, open_discovery
from learnae.gossip.host import connect, dial_line, open_host
from learnae.identity import Identity
from learnae.ledger.entry import sign_entry
from learnae.log import configure_logging

__all__ = ["main"]

log = logging.getLogger(__name__)


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_lines(fd: int = 0):
    """Yield stdin lines without blocking the trio loop."""
    stream = trio.lowlevel.FdStream(os.dup(fd))
    buf = b""
    async with stream:
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield line


class Publisher:
    """Signs this node's chained entries."""

    def __init__(self, ident: Identity, swarm: str):
        self.ident, self.swarm, self.seq, self.prev = ident, swarm, 0, None

    def next(self):
        e = sign_entry(self.ident, swarm=self.swarm, seq=self.seq, prev=self.prev, kind="leave",
                       body={"reason": f"t={time.time():.6f}"})
        self.seq, self.prev = self.seq + 1, e.cid
        return e


async def run(args: argparse.Namespace) -> None:
    ident = Identity.from_seed(bytes.fromhex(args.seed)) if args.seed else Identity.generate()
    async with open_host(ident, [args.listen], mdns=args.mdns) as host, \
            open_gossip(host, args.swarm) as gossip, \
            open_discovery(host, args.swarm, DiscoveryParams(
                bootstrap=tuple(args.bootstrap), mdns=args.mdns, dht=not args.no_dht)) as disc:
        print(dial_line(host), flush=True)
        pub = Publisher(ident, args.swarm)

        async def receive() -> None:
            async for ann in gossip.announcements():
                reason = ann.entry.body.get("reason", "")
                sent = float(reason[2:]) if reason.startswith("t=") else None
                emit({"ev": "recv", "author": ann.origin, "seq": ann.entry.seq,
                      "sent_s": sent, "recv_s": ann.received_s})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            async for line in read_lines():
                try:
                    cmd = json.loads(line)
                    name = cmd.get("cmd")
                except (ValueError, AttributeError):
                    emit({"ev": "error", "error": f"not a JSON object: {line[:80]!r}"})
                    continue
                if name == "quit":
                    break
                if name == "publish":
                    gap = 1.0 / cmd["rate"] if cmd.get("rate") else 0.0
                    for _ in range(int(cmd.get("n", 1))):
                        await gossip.publish(pub.next())
                        if gap:
                            await trio.sleep(gap)
                    emit({"ev": "published", "n": cmd.get("n", 1), "seq": pub.seq})
                elif name == "publish_raw":
                    await gossip.publish(bytes.fromhex(cmd["hex"]))
                    emit({"ev": "published", "n": 1})
                elif name == "connect":
                    try:
                        await connect(host, cmd["addr"])
                        emit({"ev": "connect", "ok": True})
                    except Exception as exc:
                        emit({"ev": "connect", "ok": False, "error": str(exc)})
                elif name == "stats":
                    emit({"ev": "stats", **gossip.stats(), "peer_id": ident.peer_id,
                          "peers": [r.peer_id for r in disc.table.connected()],
                          "mdns_found": sorted(disc.found_by_mdns)})
                elif name == "provide":
                    emit({"ev": "provide", "ok": bool(await disc.provide(cmd["key"]))})
                elif name == "find":
                    found = await disc.find_providers(cmd["key"])
                    emit({"ev": "find", "providers": [p.peer_id.to_base58() for p in found]})
                else:
                    emit({"ev": "error", "error": f"unknown command {name!r}"})
            nursery.cancel_scope.cancel()
    emit({"ev": "bye"})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.gossip.node", description=__doc__.split("\n")[0])
    ap.add_argument("--swarm", required=True, help="swarm id (16 hex chars)")
    ap.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--mdns", action="store_true", help="LAN multicast discovery")
    ap.add_argument("--no-dht", action="store_true")
    ap.add_argument("--seed", help="hex 32-byte identity seed (default: a fresh key)")
    args = ap.parse_args(argv)
    configure_logging()
    trio.run(run, args)


if __name__ == "__main__":
    main()

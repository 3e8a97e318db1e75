"""Ledger sync throughput between two real py-libp2p hosts on 127.0.0.1, bulk framing vs per frame.

A server ledger holds ``--authors`` chains of ``--per-author`` entries; an empty
client syncs it all (``learnae.gossip.sync.sync_with``: verified, chained and
stored, exactly as a late joiner does). The reference in the same run is the same
protocol with py-libp2p's own framing, one stream write per frame and a length
prefix read one byte at a time (``read_varint_prefixed_bytes_limited``), as the
sync did before ``learnae.gossip.frames``: the wire bytes are identical, only the
I/O differs. Both hosts live in one process, so the time is the sum of both
sides' work. Best of ``--repeats``, alternating.

Usage::

    .venv/bin/python -m bench.ledger_sync --authors 3 --per-author 400 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from unittest import mock

import trio
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from learnae.gossip import connect, dial_line, open_host
from learnae.gossip import sync as sync_module
from learnae.gossip.sync import serve_sync, sync_with
from learnae.identity import Identity
from learnae.ledger import Ledger
from tests.ledger.chains import SWARM, ident, make_chain


class PlainReader:
    """py-libp2p's framing: a varint read byte by byte, then the body."""

    def __init__(self, stream):
        self.stream = stream

    async def read(self, limit: int) -> bytes:
        return await read_varint_prefixed_bytes_limited(self.stream, limit)


class PlainWriter:
    """One stream write per frame."""

    def __init__(self, stream):
        self.stream = stream

    async def write(self, payload: bytes) -> None:
        await self.stream.write(encode_varint_prefixed(payload))

    async def flush(self) -> None:
        pass


@contextmanager
def framing(mode: str):
    if mode == "bulk":
        yield
        return
    with mock.patch.object(sync_module, "FrameReader", PlainReader), \
            mock.patch.object(sync_module, "FrameWriter", PlainWriter):
        yield


async def one_sync(server_ledger: Ledger, client_dir: Path, mode: str) -> tuple[float, int]:
    with Ledger.open(client_dir, ident(11), swarm=SWARM) as ours, framing(mode):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(open_host(Identity.generate()))
            client = await stack.enter_async_context(open_host(Identity.generate()))
            await connect(client, dial_line(server))
            serve_sync(server, server_ledger, SWARM)
            t = time.perf_counter()
            stats = await sync_with(client, server.get_id(), ours, SWARM)
            return time.perf_counter() - t, stats.stored


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", type=int, default=3)
    ap.add_argument("--per-author", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ledger-sync-"))
    n = args.authors * args.per_author
    print(f"building {n} entries ...", flush=True)
    with Ledger.open(root / "server", ident(10), swarm=SWARM) as theirs:
        for a in range(args.authors):
            for e in make_chain(ident(a), args.per_author):
                theirs.receive(e)
        best = {"per-frame (reference)": float("inf"), "bulk": float("inf")}
        for r in range(args.repeats):
            for label, mode in (("per-frame (reference)", "plain"), ("bulk", "bulk")):
                seconds, stored = trio.run(one_sync, theirs, root / f"client-{mode}-{r}", mode)
                assert stored == n, (label, stored)
                best[label] = min(best[label], seconds)
                print(f"  {label}: {seconds:.2f} s", flush=True)
    print("| framing | entries | best time | entries/s |")
    print("|---|---|---|---|")
    for label, seconds in best.items():
        print(f"| {label} | {n} | {seconds:.2f} s | {n / seconds:,.0f} |")


if __name__ == "__main__":
    main()

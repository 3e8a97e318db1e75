"""In-process swarms of real py-libp2p hosts on 127.0.0.1 for gossip tests."""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import trio

from learnae.gossip import connect, dial_line, open_host
from learnae.gossip.announce import Gossip, open_gossip
from learnae.identity import Identity
from learnae.ledger.entry import sign_entry

SWARM = "8cbb34e94bc00dcc"


@dataclass
class Peer:
    ident: Identity
    host: object
    gossip: Gossip
    addr: str
    got: list = field(default_factory=list)
    seq: int = 0
    prev: object = None

    def entry(self, **over):
        kw = dict(swarm=SWARM, seq=self.seq, prev=self.prev, kind="leave", body={"reason": f"n{self.seq}"})
        kw.update(over)
        e = sign_entry(self.ident, **kw)
        if not over:
            self.seq, self.prev = self.seq + 1, e.cid
        return e


async def _collect(peer: Peer) -> None:
    async for ann in peer.gossip.announcements():
        peer.got.append(ann)


@asynccontextmanager
async def swarm(n: int, links: list[tuple[int, int]] | None = None, *, chain_check=None, collect=True,
                publish=None):
    """``n`` peers; ``links`` (default: a star around peer 0) are dialed, then the
    mesh is given time to form. Yields the list of :class:`Peer`."""
    links = [(i, 0) for i in range(1, n)] if links is None else links
    async with AsyncExitStack() as stack:
        peers = []
        for _ in range(n):
            ident = Identity.generate()
            host = await stack.enter_async_context(open_host(ident))
            g = await stack.enter_async_context(open_gossip(host, SWARM, chain_check=chain_check,
                                                                    publish=publish))
            peers.append(Peer(ident, host, g, dial_line(host)))
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        for a, b in links:
            await connect(peers[a].host, peers[b].addr)
        degree = {i: 0 for i in range(n)}
        for a, b in links:
            degree[a] += 1
            degree[b] += 1
        for i, p in enumerate(peers):
            await p.gossip.wait_for_topic_peers(degree[i], timeout_s=15)
        if collect:
            for p in peers:
                nursery.start_soon(_collect, p)
        yield peers


async def wait_until(pred, timeout_s: float = 15.0, step_s: float = 0.05) -> bool:
    with trio.move_on_after(timeout_s):
        while not pred():
            await trio.sleep(step_s)
        return True
    return pred()

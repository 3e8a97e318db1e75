"""Discovery between real hosts: Kademlia provide/find, swarm rendezvous, bootstrap redial."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from learnae.gossip import dial_line, open_host
from learnae.gossip.discovery import DiscoveryParams, open_discovery
from learnae.identity import Identity

from .helpers import SWARM, wait_until

KEY = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


async def _peers(stack, n, params):
    out = []
    for i in range(n):
        host = await stack.enter_async_context(open_host(Identity.generate()))
        p = params(i, out)
        disc = await stack.enter_async_context(open_discovery(host, SWARM, p))
        out.append((host, disc))
    return out


async def test_dht_provide_find_and_swarm_rendezvous():
    # A line of bootstrap links: 0 <- 1 <- 2 <- 3. Nobody is told about anyone else.
    async with AsyncExitStack() as stack:
        peers = await _peers(stack, 4, lambda i, prev: DiscoveryParams(
            bootstrap=(dial_line(prev[i - 1][0]),) if i else (), rendezvous_every_s=1.0))
        hosts = [h for h, _ in peers]
        assert await wait_until(lambda: all(d.table.connected() for _, d in peers))
        # The far end provides a CID; the other end finds it through the DHT.
        assert await peers[3][1].provide(KEY)
        found = []
        with trio.fail_after(20):
            while not found:
                found = [p.peer_id.to_base58() for p in await peers[0][1].find_providers(KEY)]
                await trio.sleep(0.2)
        assert hosts[3].get_id().to_base58() in found
        # Rendezvous on the swarm key: everyone ends up connected to everyone.
        assert await wait_until(lambda: all(len(d.table.connected()) == 3 for _, d in peers), 30)


async def test_bootstrap_peer_is_redialed_after_it_comes_back():
    ident = Identity.generate()
    async with open_host(Identity.generate()) as me:
        async with open_host(ident, ["/ip4/127.0.0.1/tcp/0"]) as boot:
            addr = dial_line(boot)
        port_addr = addr.split("/p2p/")[0]
        # The bootstrap peer is down when we start; it comes back on the same address.
        async with open_discovery(me, SWARM, DiscoveryParams(bootstrap=(addr,), dht=False)) as disc:
            await trio.sleep(1.0)
            assert not disc.table.connected()
            async with open_host(ident, [port_addr]):
                assert await wait_until(lambda: [r.peer_id for r in disc.table.connected()]
                                        == [ident.peer_id], 20)
            assert await wait_until(lambda: not disc.table.connected(), 10)
            rec = disc.table.get(ident.peer_id)
            assert rec.disconnects == 1 and rec.last_seen_s >= rec.first_seen_s

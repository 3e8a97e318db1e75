"""The peer core: the DHT as the block exchange's last resort, and mDNS peers on a LAN.

The DHT test runs four real :class:`learnae.peer.node.PeerNode` stacks in this
process on 127.0.0.1; the mDNS test runs two ``learnae peer start --mdns``
processes, each in a network namespace of its own that the test creates (so the
multicast never touches a real interface).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import trio

from learnae.errors import FetchError
from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.storage.snapshot import decode_snapshot
from tests.netns import netns_pair_fixture  # noqa: F401 - the netns_pair fixture
from tests.peer.nodes import SPECS, config, eventually, node_task


async def test_a_snapshot_whose_author_is_gone_is_fetched_from_a_holder_the_dht_names(tmp_path):
    from learnae.gossip import connect

    weights = [np.full(s, 0.5, np.float32) for _, s, _ in SPECS]
    stop_a, stop_rest = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as author:
            a = await author.start(node_task, config(tmp_path / "a"), stop_a)
            await a.join(SPECS)
            b = await nursery.start(node_task, config(tmp_path / "b", bootstrap=[a.addr]), stop_rest)
            c = await nursery.start(node_task, config(tmp_path / "c", bootstrap=[a.addr]), stop_rest)
            await b.join(SPECS)
            await c.join(SPECS)

            model = await a.publish(weights, step=5, samples=160, metrics={"loss": 1.0})
            await eventually(lambda: b.view.latest(a.peer_id) is not None, "b to hear of a's snapshot")
            assert await b.merge([np.zeros(s, np.float32) for _, s, _ in SPECS], step=5) is not None  # b holds it
            await eventually(lambda: b.routing.provided >= 1, "b to provide what it fetched")
            assert not await c.store.has(model)  # c never merged it
            stop_a.set()  # the author leaves for good

        # d is no swarm member (like `peer eval`): connected to c only, which lacks the block.
        # Without a DHT it has nobody left to ask; with one, it finds b.
        for dht, name in ((False, "d-without-dht"), (True, "d")):
            cfg = dataclasses.replace(config(tmp_path / name), dht=dht)
            stop_d = trio.Event()
            d = await nursery.start(node_task, cfg, stop_d)
            await connect(d.host, c.addr)
            assert b.host.get_id() not in d.host.get_connected_peers()
            if not dht:
                with pytest.raises(FetchError):
                    await d.store.get(model, providers=[a.addr])  # the announcing author first: unreachable
                stop_d.set()
                continue
            with trio.fail_after(60):
                data = await d.store.get(model, providers=[a.addr])
            snap = decode_snapshot(data, fingerprint=a.fingerprint)
            assert all(np.array_equal(x, y) for x, y in zip(snap.arrays, weights))
            assert b.store.bitswap.stats["blocks_sent"] >= 1  # b, the only holder left, served it
            assert not await c.store.has(model)
            stop_d.set()
        stop_rest.set()


@pytest.mark.slow
def test_peers_started_with_mdns_find_each_other_on_a_lan_and_train_together(tmp_path, netns_pair):
    (ns_a, ip_a), (ns_b, ip_b) = netns_pair
    procs = []
    try:
        for name, ns, addr in (("a", ns_a, ip_a), ("b", ns_b, ip_b)):
            log = open(tmp_path / f"{name}.log", "wb")
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "learnae.cli.main", "peer", "start",
                 "--data-dir", str(tmp_path / name), "--listen", f"/ip4/{addr}/tcp/4010", "--mdns",
                 "--min-peers", "1", "--catch-up-s", "0", "--max-steps", "150", "--shard", f"{len(procs)}/2"],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL))
        for p in procs:  # no --bootstrap anywhere: they meet by multicast, or wait for each other forever
            assert p.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()[-3000:] + (
                tmp_path / "b.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    first_lines = [p.stdout.readline().decode().strip() for p in procs]
    assert first_lines[0].startswith(f"/ip4/{ip_a}/tcp/4010/p2p/"), first_lines
    ids = {n: Identity.load(tmp_path / n / "identity.key").peer_id for n in ("a", "b")}
    for me, other in (("a", "b"), ("b", "a")):
        with Ledger.open(tmp_path / me, readonly=True) as led:
            merged = [led.entry(p["entry"]) for e in led.entries(author=ids[me], kind="snapshot")
                      for p in e.body["parents"]]
        assert any(m is not None and m.author == ids[other] for m in merged), f"{me} never merged {other}"

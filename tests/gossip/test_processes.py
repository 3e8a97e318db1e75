"""Gossip between separate peer processes (python -m tests.gossip.node) on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from tests.netns import netns_pair_fixture  # noqa: F401 - the netns_pair fixture

from .helpers import SWARM
from .procs import NodeProc

pytestmark = pytest.mark.slow  # real processes: make test runs it, make check does not


def _wait(pred, timeout_s=30.0, step_s=0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step_s)
    return pred()


def test_announcements_reach_every_process_completely():
    boot = NodeProc(SWARM, "--no-dht")  # the DHT has its own test; keep this one lean
    nodes = []
    try:
        # The first line a peer prints is the address to dial: the others bootstrap from it.
        assert boot.addr.startswith("/ip4/127.0.0.1/tcp/") and boot.addr.endswith("/p2p/" + boot.peer_id)
        nodes = [NodeProc(SWARM, "--bootstrap", boot.addr, "--no-dht") for _ in range(4)]
        everyone = [boot, *nodes]
        assert _wait(lambda: all(n.request("stats")["topic_peers"] >= 1 for n in everyone))
        assert _wait(lambda: boot.request("stats")["topic_peers"] == 4)
        time.sleep(0.5)
        # A burst of 200 from one process and a few from another: all arrive, once each.
        nodes[0].request("publish", n=200)
        boot.request("publish", n=5)
        for n in everyone:
            want = {nodes[0].peer_id: 200, boot.peer_id: 5}
            want.pop(n.peer_id, None)
            assert _wait(lambda: all(len(n.received(a)) >= k for a, k in want.items()), 90), \
                {a: len(n.received(a)) for a in want}
            for author, k in want.items():
                seqs = sorted(e["seq"] for e in n.received(author))
                assert seqs == list(range(k))  # complete, no duplicates
            stats = n.request("stats")
            assert stats["shed"] == 0 and stats["dropped"] == {} and stats["rejected"] == {}
    finally:
        for n in [boot, *nodes]:
            assert n.quit() == 0, "".join(n.stderr)[-2000:]


# -- mDNS, inside two network namespaces this test creates (LAN multicast never leaves them)

def test_mdns_finds_a_peer_on_the_lan_with_zero_configuration(netns_pair):
    (ns_a, ip_a), (ns_b, ip_b) = netns_pair
    procs = []
    try:
        for ns, ip in ((ns_a, ip_a), (ns_b, ip_b)):
            procs.append(NodeProc(SWARM, "--listen", f"/ip4/{ip}/tcp/0", "--mdns", "--no-dht",
                                  prefix=["ip", "netns", "exec", ns]))
        a, b = procs
        assert a.addr.startswith(f"/ip4/{ip_a}/tcp/")
        # No --bootstrap anywhere: they must find each other by multicast.
        assert _wait(lambda: b.peer_id in a.request("stats")["peers"], 30)
        assert _wait(lambda: a.peer_id in b.request("stats")["peers"], 30)
        assert _wait(lambda: b.request("stats")["topic_peers"] == 1, 15)
        stats = [p.request("stats") for p in procs]
        assert stats[0]["mdns_found"] or stats[1]["mdns_found"]
        a.request("publish", n=3)
        assert _wait(lambda: len(b.received(a.peer_id)) == 3, 20)
    finally:
        for p in procs:
            assert p.quit() == 0, "".join(p.stderr)[-2000:]

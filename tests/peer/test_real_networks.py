"""Peers on separate hosts: real ``learnae peer start`` processes, each in a network namespace.

Every peer has its own address on one bridge (``tests/netns.py``); nothing listens
on or dials 127.0.0.1. The same 4-peer swarm trains to 0.90 meeting by mDNS (the
multicast stays on the bridge), by bootstrap alone, and with every link capped at
10 Mbit/s each way; and 3 reachable peers train with 2 behind a masquerading NAT
router, which join through a relay. Needs root (and iptables for the NAT): otherwise
each test skips with the reason. ``python -m bench.real_networks`` runs the same
swarms and prints their numbers (docs/BENCHMARKS.md, "Real networks").
"""

from __future__ import annotations

import collections
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.scenario.process import PeerProcess
from tests.netns import Host, Lan, lan_factory  # noqa: F401 - the lan_factory fixture

pytestmark = pytest.mark.slow

PORT = 4010
STEPS = 400  # digits, IID shards: 0.95-0.97 at 400 steps
WAIT_S = 170  # per peer process, start-up (TensorFlow) included
RELAY_LOG = "learnae.gossip.relay=info"  # reservations, relayed connections and their upgrades


def start_peer(bed: Lan, host: Host, data_dir: Path, args: list[str], *, log: str = "") -> PeerProcess:
    """``learnae peer start`` inside ``host``'s namespace, listening on its own address only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "learnae.cli.main", "peer", "start", "--data-dir", str(data_dir),
            "--listen", f"/ip4/{host.ip}/tcp/{PORT}", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"LEARNAE_LOG": log} if log else {})}
    with open(data_dir / "peer.log", "ab") as fh:
        proc = bed.popen(host, argv, stdout=subprocess.PIPE, stderr=fh, stdin=subprocess.DEVNULL, env=env,
                         start_new_session=True)
    return PeerProcess(proc, data_dir, "", args)


def common_args(n: int, steps: int, extra=()) -> list[str]:
    """Every peer waits for the whole swarm before its first step."""
    return ["--max-steps", str(steps), "--min-peers", str(n - 1), "--catch-up-s", "0", "--status-every-s", "2",
            *extra]


def run_swarm(bed: Lan, root: Path, *, mdns: bool, steps: int = STEPS, extra=(), wait_s: float = WAIT_S
              ) -> list[PeerProcess]:
    """Start a peer on every host of ``bed`` (shard i/n) and wait for them all to finish.

    With ``mdns`` nobody is given an address; otherwise host 0 is everyone's bootstrap.
    """
    n = len(bed.hosts)
    peers: list[PeerProcess] = []
    try:
        for i, host in enumerate(bed.hosts):
            args = ["--shard", f"{i}/{n}", *common_args(n, steps, extra)]
            if mdns:
                args.append("--mdns")
            elif i > 0:
                args += ["--bootstrap", peers[0].addr]
            peers.append(start_peer(bed, host, root / host.name, args))
            if i == 0 and not mdns:
                peers[0].wait_ready()
        for p in peers[0 if mdns else 1:]:
            p.wait_ready()
        finish(peers, wait_s)
    finally:
        kill(peers)
    return peers


def finish(peers: list[PeerProcess], wait_s: float = WAIT_S) -> None:
    for p in peers:
        assert p.wait(wait_s) == 0, p.log_tail()


def kill(peers) -> None:
    for p in peers:
        if p.alive:
            p.kill()


def peer_id(p: PeerProcess) -> str:
    return Identity.load(p.data_dir / "identity.key").peer_id


def check_swarm(bed: Lan, peers: list[PeerProcess]) -> list[dict]:
    """Every peer merged, 0.90 on average, no 127.0.0.1 or wildcard address anywhere; every ledger
    holds every chain, complete from seq 0 (up to the few entries an author wrote after a peer left)."""
    for host, p in zip(bed.hosts, peers):
        assert p.addr.startswith(f"/ip4/{host.ip}/tcp/{PORT}/p2p/"), p.addr
    final = [p.metrics()[-1] for p in peers]
    assert all(r["merges"] > 0 for r in final), final
    accs = [r["test_accuracy"] for r in final]
    assert statistics.mean(accs) >= 0.90, accs
    ids = [peer_id(p) for p in peers]
    own = {}
    for pid, p in zip(ids, peers):
        with Ledger.open(p.data_dir, readonly=True) as led:
            own[pid] = led.chain_heads()[pid][0]
    for p in peers:
        with Ledger.open(p.data_dir, readonly=True) as led:
            heads = led.chain_heads()
            assert set(heads) == set(ids), (p.data_dir, heads)
            assert led.gaps() == 0
            for pid in ids:
                chain = led.entries(author=pid)
                assert [e.seq for e in chain] == list(range(len(chain))), (p.data_dir, pid)
                assert any(e.kind == "snapshot" for e in chain)
                assert own[pid] - heads[pid][0] <= 6, (p.data_dir, pid, heads[pid][0], own[pid])
                join = next(e for e in chain if e.kind == "join")
                assert join.body["addrs"] and not any("/127." in a or "/0.0.0.0/" in a for a in join.body["addrs"])
    return final


def merged_authors(p: PeerProcess) -> collections.Counter:
    """Whose snapshots ``p`` merged, by author: the parents of its own snapshot entries."""
    me = peer_id(p)
    out: collections.Counter = collections.Counter()
    with Ledger.open(p.data_dir, readonly=True) as led:
        for e in led.entries(author=me, kind="snapshot"):
            for parent in e.body["parents"]:
                entry = led.entry(parent["entry"])
                out[entry.author if entry is not None else None] += 1
    return out


def snapshot_bytes(data_dir: Path) -> int:
    """The size of this peer's latest own snapshot (the file its neighbours fetch), read from its block store."""
    from learnae.storage import BlockStore, parse_cid
    from learnae.storage.unixfs import read_file

    me = Identity.load(data_dir / "identity.key").peer_id
    with Ledger.open(data_dir, readonly=True) as led:
        model = led.latest_snapshot(me).body["model"]
    blocks = BlockStore(data_dir / "blocks")
    return sum(len(chunk) for chunk in read_file(parse_cid(str(model)), blocks.get_block))


def tcp_reaches(bed: Lan, src: Host, ip: str, port: int = PORT, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connect from ``src``'s namespace to ``ip:port`` succeeds."""
    code = (f"import socket; s = socket.socket(); s.settimeout({timeout_s})\n"
            f"try:\n s.connect(({ip!r}, {port})); print('yes')\nexcept OSError: print('no')")
    return bed.run(src.ns, sys.executable, "-c", code).stdout.strip() == "yes"


def run_nat_swarm(bed: Lan, root: Path, steps: int = STEPS) -> dict:
    """3 reachable peers (p0 relays) and 2 behind the NAT (n0, n1), which reserve a slot on p0.

    p1 and p2 are also given a NATed peer's relayed address as a second bootstrap peer
    (p1 -> n1, p2 -> n0), so each of them first reaches that peer through the relay. The
    router drops what n0 sends to p2: that pair stays relayed (as two peers behind
    different NATs would), while n1 can upgrade to a direct connection to p1.
    """
    p0h, p1h, p2h, n0h, n1h = bed.hosts
    bed.cut(n0h, p2h)
    common = common_args(5, steps)
    peers: dict[str, PeerProcess] = {}
    # the relay's address is known before it runs (its key is made here): the NATed peers start with it,
    # and retry their reservation until it listens
    relay = f"/ip4/{p0h.ip}/tcp/{PORT}/p2p/{Identity.load_or_create(root / 'p0').peer_id}"
    try:
        peers["p0"] = start_peer(bed, p0h, root / "p0", ["--shard", "0/5", "--relay", *common], log=RELAY_LOG)
        boot = ["--bootstrap", relay]
        for name, host, shard in (("n0", n0h, 3), ("n1", n1h, 4)):
            peers[name] = start_peer(bed, host, root / name, ["--shard", f"{shard}/5", "--behind-nat", *boot, *common],
                                     log=RELAY_LOG)
        assert peers["p0"].wait_ready() == relay
        circuit = {}
        for name in ("n0", "n1"):  # ready = joined, so holding its relay slot (taken before the join)
            circuit[name] = f"{relay}/p2p-circuit/p2p/{peers[name].wait_ready().rsplit('/p2p/', 1)[1]}"
        for name, host, shard, via in (("p1", p1h, 1, "n1"), ("p2", p2h, 2, "n0")):
            peers[name] = start_peer(bed, host, root / name,
                                     ["--shard", f"{shard}/5", *boot, "--bootstrap", circuit[via], *common],
                                     log=RELAY_LOG)
        for name in ("p1", "p2"):
            peers[name].wait_ready()
        # nothing dials in: neither the NATed peers' own addresses nor the router's answer from outside
        dial_in = {h.name: (tcp_reaches(bed, p1h, h.ip), tcp_reaches(bed, p1h, "10.77.0.254")) for h in (n0h, n1h)}
        dial_out = tcp_reaches(bed, n0h, p1h.ip)
        finish(list(peers.values()))
    finally:
        kill(peers.values())
    return {"peers": peers, "circuit": circuit, "dial_in": dial_in, "dial_out": dial_out}


def relay_events(p: PeerProcess) -> dict[str, list[str]]:
    """What ``learnae.gossip.relay`` logged: peers reached through a relay, and those upgraded to direct."""
    text = (p.data_dir / "peer.log").read_text(errors="replace")
    return {"dialed_via_relay": re.findall(r"connected to (\w+) through relay", text),
            "relayed_only": re.findall(r"connected to (\w+) through a relay only", text),
            "upgraded": re.findall(r"connection to (\w+) upgraded: direct now", text),
            "reserved": re.findall(r"reserved a relay slot: other peers reach this one at (\S+)", text)}


@pytest.mark.parametrize("discovery", ["mdns", "bootstrap"])
def test_four_peers_on_separate_hosts_train_to_090(tmp_path, lan_factory, discovery):
    bed = lan_factory(4)
    peers = run_swarm(bed, tmp_path, mdns=discovery == "mdns")
    check_swarm(bed, peers)
    if discovery == "mdns":  # nobody was given an address: they found each other by multicast on the bridge
        assert all("--bootstrap" not in p.args for p in peers)
    # a full mesh, not a star around host 0: each peer was connected to the 3 others at some point
    assert all(max(r["peers"] for r in p.metrics()) == 3 for p in peers), [[r["peers"] for r in p.metrics()]
                                                                         for p in peers]


def test_four_peers_capped_at_10_mbit_each_way_still_reach_090(tmp_path, lan_factory):
    bed = lan_factory(4, rate_mbit=10)
    assert all("rate 10Mbit" in q for q in bed.qdiscs().values()), bed.qdiscs()
    peers = run_swarm(bed, tmp_path, mdns=False)
    final = check_swarm(bed, peers)
    fetch = [r["fetch_latency_s"] for r in final]
    size = snapshot_bytes(peers[0].data_dir)
    # a snapshot cannot arrive faster than its bytes cross a 10 Mbit/s link
    assert all(f is not None and f >= size * 8 / 10e6 for f in fetch), (fetch, size)
    print(f"\n10 Mbit/s: snapshot {size} bytes, median fetch per peer {[round(f, 3) for f in fetch]} s, "
          f"test accuracy {[round(r['test_accuracy'], 3) for r in final]}")


def test_peers_behind_nat_join_through_a_relay_and_their_snapshots_are_merged(tmp_path, lan_factory):
    bed = lan_factory(3, natted=2)
    run = run_nat_swarm(bed, tmp_path)
    peers = run["peers"]
    assert run["dial_in"] == {"n0": (False, False), "n1": (False, False)} and run["dial_out"], run
    check_swarm(bed, [peers[h.name] for h in bed.hosts])
    ids = {name: peer_id(p) for name, p in peers.items()}
    events = {name: relay_events(p) for name, p in peers.items()}
    for name in ("n0", "n1"):  # each holds a slot on p0, and announced the relayed address in its join entry
        assert events[name]["reserved"] == [run["circuit"][name]], events[name]
        with Ledger.open(peers["p1"].data_dir, readonly=True) as led:
            join = next(e for e in led.entries(author=ids[name]) if e.kind == "join")
        assert run["circuit"][name] in join.body["addrs"], join.body
    # the reachable peers fetched and merged the NATed peers' snapshots: their own ledgers say so
    for name in ("p0", "p1", "p2"):
        merged = merged_authors(peers[name])
        assert merged[ids["n0"]] > 0 and merged[ids["n1"]] > 0, (name, merged)
    # p1 and p2 reached their NATed bootstrap peer through the relay ...
    assert ids["n1"] in events["p1"]["dialed_via_relay"] and ids["n0"] in events["p2"]["dialed_via_relay"], events
    assert ids["p2"] in events["n0"]["relayed_only"], events
    # ... n1 can dial p1 directly: when p1's relayed dial came first, n1 upgraded that connection (DCUtR's
    # first step); when n1's own dial won the race (seen once in a loaded run) there was nothing to upgrade.
    # n0 could not reach p2 (the router drops it), so that pair stayed relayed and still exchanged snapshots
    if ids["p1"] in events["n1"]["relayed_only"]:
        assert ids["p1"] in events["n1"]["upgraded"], events["n1"]
    assert ids["p2"] not in events["n0"]["upgraded"], events["n0"]
    assert merged_authors(peers["p2"])[ids["n0"]] > 0 and merged_authors(peers["n0"])[ids["p2"]] > 0

"""Reference gossip node: py-libp2p 0.8.1 as shipped, for side-by-side benchmarks.

Same JSON-line protocol and the same signed entries as ``python -m tests.gossip.node``
(publish, stats, quit; ``recv`` events), but built from py-libp2p's defaults:
``new_host()``, ``Pubsub(host, GossipSub(protocols, 6, 4, 12))`` with every other
constructor default (120 s heartbeat, 10 msg/s spam limit, 32-slot subscription
channel, no publish backpressure) and plain ``host.connect()``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from learnae.identity import Identity
from learnae.ledger.entry import decode_entry, sign_entry


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(args):
    ident = Identity.generate()
    host = new_host(key_pair=ident.to_libp2p_keypair())
    listen = multiaddr.Multiaddr(args.listen)
    async with host.run(listen_addrs=[listen]):
        pubsub = Pubsub(host, GossipSub([PROTOCOL_ID_V11, PROTOCOL_ID], 6, 4, 12))
        async with background_trio_service(pubsub), background_trio_service(pubsub.router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(args.topic)
            print(str(host.get_addrs()[0]), flush=True)
            for b in args.bootstrap:
                try:
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(b)))
                except Exception as exc:
                    print(f"bootstrap failed: {exc}", file=sys.stderr)
            seq, prev, published = 0, None, 0

            async def receive():
                while True:
                    msg = await sub.get()
                    e = decode_entry(msg.data)
                    if e.author == ident.peer_id:
                        continue
                    r = e.body.get("reason", "")
                    emit({"ev": "recv", "author": e.author, "seq": e.seq,
                          "sent_s": float(r[2:]) if r.startswith("t=") else None, "recv_s": time.time()})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                stdin = trio.wrap_file(sys.stdin)
                while True:
                    line = await stdin.readline()
                    if not line:
                        break
                    cmd = json.loads(line)
                    if cmd["cmd"] == "quit":
                        break
                    if cmd["cmd"] == "publish":
                        gap = 1.0 / cmd["rate"] if cmd.get("rate") else 0.0
                        for _ in range(int(cmd.get("n", 1))):
                            e = sign_entry(ident, swarm=args.swarm, seq=seq, prev=prev, kind="leave",
                                           body={"reason": f"t={time.time():.6f}"})
                            seq, prev = seq + 1, e.cid
                            await pubsub.publish(args.topic, e.to_bytes())
                            published += 1
                            if gap:
                                await trio.sleep(gap)
                        emit({"ev": "published", "n": cmd.get("n", 1)})
                    elif cmd["cmd"] == "stats":
                        emit({"ev": "stats", "published": published, "peer_id": ident.peer_id,
                              "topic_peers": len(pubsub.peer_topics.get(args.topic, ())),
                              "peers": [p.to_base58() for p in host.get_connected_peers()]})
                nursery.cancel_scope.cancel()
    emit({"ev": "bye"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--swarm", required=True)
    ap.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    ap.add_argument("--bootstrap", action="append", default=[])
    a = ap.parse_args()
    a.topic = f"/learnae/1/{a.swarm}/entries"
    trio.run(run, a)

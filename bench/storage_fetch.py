"""Benchmark: 50 MiB Bitswap fetch between two peer processes, next to a raw py-libp2p stream.

The server process holds a 50 MiB snapshot-sized file in its block store and
serves it over Bitswap; it also serves a raw stream protocol that just writes
the same number of bytes (the py-libp2p ceiling: TCP + Noise + Yamux, no
Bitswap). The client alternates raw reads and full Bitswap fetches (into a
fresh block store every round, every block verified and written to disk) and
reports the medians and their ratio.

Usage:
    .venv/bin/python -m bench.storage_fetch [--mib 50] [--rounds 3]
Target (issue 3): Bitswap >= 60 MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

RAW_PROTOCOL = "/learnae/bench/raw/1.0.0"
CPU_PROTOCOL = "/learnae/bench/cpu/1.0.0"  # the server answers with its CPU seconds so far
TARGET_MB_S = 60.0


async def serve(mib: int) -> None:
    from learnae.gossip.host import dial_line, open_host
    from learnae.identity import Identity
    from learnae.storage.bitswap import Bitswap
    from learnae.storage.store import EmbeddedStore

    size = mib * 1024 * 1024
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    store = EmbeddedStore(tmp / "blocks")
    cid = await store.put(os.urandom(size))
    piece = os.urandom(1024 * 1024)

    async def raw(stream):
        left = size
        while left:
            n = min(left, len(piece))
            await stream.write(piece[:n])
            left -= n
        await stream.close()

    async def cpu(stream):
        await stream.write(repr(time.process_time()).encode())
        await stream.close()

    try:
        async with open_host(Identity.generate()) as host, Bitswap(host, store.blocks).run():
            host.set_stream_handler(RAW_PROTOCOL, raw)
            host.set_stream_handler(CPU_PROTOCOL, cpu)
            print(json.dumps({"addr": dial_line(host), "cid": str(cid)}), flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)  # until the client closes our stdin
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def client(addr: str, cid: str, mib: int, rounds: int, store_dir: str | None = None) -> dict:
    from learnae.gossip.host import connect, open_host
    from learnae.identity import Identity
    from learnae.storage.bitswap import Bitswap
    from learnae.storage.blockstore import BlockStore

    size = mib * 1024 * 1024
    raw_mb_s, bitswap_mb_s = [], []
    cpu = {"raw_client": [], "raw_server": [], "bitswap_client": [], "bitswap_server": []}

    async def server_cpu(host, peer_id) -> float:
        stream = await host.new_stream(peer_id, [CPU_PROTOCOL])
        value = float((await stream.read(100)).decode())
        await stream.close()
        return value

    leftovers: list[Path] = []
    for _ in range(rounds):  # a fresh client peer (identity, connection, store) every round
        tmp = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=store_dir))
        try:
            async with open_host(Identity.generate()) as host, Bitswap(host, BlockStore(tmp)).run() as bitswap:
                info = await connect(host, addr)
                c0, s0 = time.process_time(), await server_cpu(host, info.peer_id)
                t = time.perf_counter()
                stream = await host.new_stream(info.peer_id, [RAW_PROTOCOL])
                got = 0
                while got < size:
                    chunk = await stream.read(1024 * 1024)
                    if not chunk:
                        break
                    got += len(chunk)
                raw_mb_s.append(got / (time.perf_counter() - t) / 1e6)
                await stream.close()
                c1, s1 = time.process_time(), await server_cpu(host, info.peer_id)

                stats = await bitswap.fetch(cid, [addr], timeout_s=120)
                bitswap_mb_s.append(stats.bytes / stats.elapsed_s / 1e6)
                c2, s2 = time.process_time(), await server_cpu(host, info.peer_id)
                cpu["raw_client"].append(c1 - c0)
                cpu["raw_server"].append(s1 - s0)
                cpu["bitswap_client"].append(c2 - c1)
                cpu["bitswap_server"].append(s2 - s1)
                print(f"round: raw {raw_mb_s[-1]:.1f} MB/s, bitswap {bitswap_mb_s[-1]:.1f} MB/s "
                      f"({stats.blocks} blocks, {stats.elapsed_s:.2f} s)", file=sys.stderr)
        finally:
            leftovers.append(tmp)  # deleted at the end: a deletion slows the next writes (ext4 discard)
    for tmp in leftovers:
        shutil.rmtree(tmp, ignore_errors=True)
    raw_med, bs_med = statistics.median(raw_mb_s), statistics.median(bitswap_mb_s)
    return {
        "mib": mib, "rounds": rounds,
        "raw_stream_MB_s": [round(x, 1) for x in raw_mb_s],
        "bitswap_MB_s": [round(x, 1) for x in bitswap_mb_s],
        "raw_median_MB_s": round(raw_med, 1), "bitswap_median_MB_s": round(bs_med, 1),
        "bitswap_over_raw": round(bs_med / raw_med, 2),
        "cpu_s_median": {k: round(statistics.median(v), 2) for k, v in cpu.items()},
        # high-water mark of the client process (imports included): a fetch streams to
        # disk, so this stays far below the file size times the rounds
        "client_max_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "target_MB_s": TARGET_MB_S, "meets_target": bs_med >= TARGET_MB_S,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the client's block store goes (default: a temp dir)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        trio.run(serve, args.mib)
        return
    server = subprocess.Popen([sys.executable, "-m", "bench.storage_fetch", "--serve", "--mib", str(args.mib)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        hello = json.loads(server.stdout.readline())
        result = trio.run(client, hello["addr"], hello["cid"], args.mib, args.rounds, args.dir)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

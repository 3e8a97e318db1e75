"""Fixtures for the storage tests: deterministic content and the UnixFS vectors."""

from __future__ import annotations

import hashlib
import json
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

# A copy kept in the repository, so the suite runs from a plain clone (vectors/README.md).
VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "unixfs-cids.json"


def content(seed: str, size: int) -> bytes:
    """The vectors' content function (tests/storage/vectors/README.md)."""
    n = (size + 31) // 32
    return b"".join(hashlib.sha256(f"{seed}:{i}".encode("ascii")).digest() for i in range(n))[:size]


def load_vectors() -> list[dict]:
    return json.loads(VECTORS_PATH.read_text())["vectors"]


@pytest.fixture(scope="session")
def big_content() -> bytes:
    """content("learnae", 64 MiB): every vector's content is a prefix of it."""
    return content("learnae", max(v["size"] for v in load_vectors()))


@asynccontextmanager
async def running_host(identity=None):
    """A real py-libp2p host on 127.0.0.1 (fast connects: max_connections_per_peer=1)."""
    import multiaddr
    from libp2p import new_host
    from libp2p.network.config import ConnectionConfig

    from learnae.identity import Identity

    ident = identity or Identity.generate()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=ident.to_libp2p_keypair(), listen_addrs=listen,
                    connection_config=ConnectionConfig(max_connections_per_peer=1))
    async with host.run(listen_addrs=listen):
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                for peer in list(host.get_connected_peers()):
                    try:
                        await host.disconnect(peer)
                    except Exception:  # noqa: BLE001 - best effort at teardown
                        pass


def full_addr(host) -> str:
    return str(host.get_addrs()[0])


def repeated_leaf_dag(leaf: bytes, copies: int, *, lie: dict | None = None) -> tuple:
    """A UnixFS file DAG whose ``copies`` leaves are all the raw block ``leaf``: a "DAG bomb".

    Its size claims are consistent (every node's filesize is its blocksizes' sum), so it is
    a valid file of ``copies * len(leaf)`` bytes made of a handful of blocks: 174 x 174
    copies of a 256 KiB chunk are a 7.9 GB file in 270 KB of blocks. Identical nodes of a
    level are one block.

    Args:
        lie: ``{"filesize": n}`` makes the root claim ``n`` bytes instead (inconsistent).

    Returns:
        ``(root CID, {cid: block})``.
    """
    from learnae.storage.cid import cid_of
    from learnae.storage.dagpb import FILE, Link, encode_node, encode_unixfs
    from learnae.storage.unixfs import MAX_LINKS

    leaf_cid = cid_of(leaf)
    blocks = {leaf_cid: leaf}
    level = [(leaf_cid, len(leaf))] * copies
    while len(level) > 1 or level[0][0] == leaf_cid:
        nodes = []
        for i in range(0, len(level), MAX_LINKS):
            group = level[i:i + MAX_LINKS]
            sizes = [n for _, n in group]
            filesize = sum(sizes)
            if lie is not None and len(level) <= MAX_LINKS:  # the root
                filesize = lie["filesize"]
            node = encode_node([Link(c, n) for c, n in group], encode_unixfs(FILE, filesize=filesize, blocksizes=sizes))
            cid = cid_of(node, "dag-pb")
            blocks[cid] = node
            nodes.append((cid, sum(sizes)))
        level = nodes
    return level[0][0], blocks


def rss_bytes() -> int:
    """This process's resident set size, from /proc/self/statm (no psutil)."""
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

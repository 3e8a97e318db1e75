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

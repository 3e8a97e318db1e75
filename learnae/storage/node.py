"""The embedded IPFS node: an :class:`EmbeddedStore` whose misses are fetched over Bitswap.

This is what a peer runs on its libp2p host (the same host as gossip): blocks
on disk in ``<data-dir>/blocks``, served to anyone who asks (Kubo included) and
fetched from the announcement's author, connected peers, then the DHT.

Example:
    async with open_host(identity) as host:                       # learnae.gossip.open_host
        async with open_embedded_node(host, data_dir, find_providers=dht.find) as store:
            cid = await store.put(encode_snapshot(weights, names))
            theirs = await store.get(their_cid, providers=[author_multiaddr])
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from learnae.storage.bitswap import Bitswap
from learnae.storage.bitswap.engine import ProviderLookup
from learnae.storage.store import EmbeddedStore

__all__ = ["open_embedded_node"]


@asynccontextmanager
async def open_embedded_node(host, data_dir: str | Path, *, find_providers: ProviderLookup | None = None,
                             fetch_timeout_s: float = 120.0, serve=None,
                             **bitswap_opts) -> AsyncIterator[EmbeddedStore]:
    """Serve and fetch ``<data_dir>/blocks`` over Bitswap on ``host`` until the block exits.

    Args:
        host: a running py-libp2p host.
        data_dir: the peer's data directory.
        find_providers: ``async find_providers(cid)`` (the DHT), asked last.
        fetch_timeout_s: deadline of one ``get`` that has to fetch.
        serve: optional ``serve(blocks) -> blocks`` wrapping the block store Bitswap
            answers from (it must offer ``has``/``get_block`` and pass the rest
            through), e.g. to also serve blocks kept elsewhere, such as ledger entries.
        **bitswap_opts: ``window_blocks``, ``request_timeout_s``, ``connect_timeout_s``.

    Yields:
        the store; ``store.fetcher`` is the running Bitswap's fetch, ``store.bitswap`` the Bitswap.
    """
    store = EmbeddedStore(Path(data_dir) / "blocks")
    served = store.blocks if serve is None else serve(store.blocks)
    bitswap = Bitswap(host, served, find_providers=find_providers, **bitswap_opts)
    async with bitswap.run():
        async def fetch(cid, providers=(), *, recursive: bool = True, max_bytes: int | None = None):
            return await bitswap.fetch(cid, providers, recursive=recursive, timeout_s=fetch_timeout_s,
                                       max_bytes=max_bytes)

        store.fetcher = fetch
        store.bitswap = bitswap
        try:
            yield store
        finally:
            store.fetcher = None

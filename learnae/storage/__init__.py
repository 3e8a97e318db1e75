"""learnae.storage: content-addressed storage, Kubo-compatible.

CIDs, the on-disk block store, UnixFS files (the CIDs ``ipfs add`` gives),
the snapshot codec (with its float16 / int8 encodings, ``compress``), Bitswap
1.2.0 on a py-libp2p host, and the Kubo backend.
Layering: imports libp2p, ipfshttpclient and, of learnae, only the foundation
modules (``errors``, ``fsutil``, ``threads``, ``log``); never ``learnae.gossip`` or
``learnae.peer`` (a host is passed in). See docs/architecture.md.
"""

from learnae.storage.blockstore import BlockNotFoundError, BlockStore, CorruptBlockError
from learnae.storage.cid import CID, cid_of, parse_cid
from learnae.storage.store import EmbeddedStore, Store, open_store
from learnae.storage.unixfs import unixfs_cid

__all__ = [
    "CID", "cid_of", "parse_cid", "unixfs_cid",
    "Store", "EmbeddedStore", "open_store", "open_embedded_node",
    "BlockStore", "BlockNotFoundError", "CorruptBlockError",
]


def __getattr__(name: str):
    # The embedded node pulls in libp2p (~1 s); CLI commands that only touch the
    # block store should not pay for it.
    if name == "open_embedded_node":
        from learnae.storage.node import open_embedded_node

        return open_embedded_node
    raise AttributeError(f"module 'learnae.storage' has no attribute {name!r}")

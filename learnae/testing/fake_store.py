"""``MemoryStore``: an in-memory content store for unit tests.

It implements the ``put``/``get``/``has`` part of ``learnae.storage.Store`` over a
dict. CIDs are CIDv1 ``raw`` sha2-256 of the whole byte string (a real store
chunks into UnixFS, so CIDs of data over one block differ; nothing here depends
on that). ``get`` verifies the bytes against the CID like a real store, and
raises ``learnae.errors.FetchError`` for unknown CIDs. Use it to test code that
publishes and fetches content without starting a node.

Example:
    >>> import trio
    >>> store = MemoryStore()
    >>> cid = trio.run(store.put, b"hello")
    >>> trio.run(store.get, cid)
    b'hello'
"""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from learnae.errors import FetchError, InvalidBlockError

__all__ = ["MemoryStore"]


class MemoryStore:
    """Content-addressed bytes in a dict; counts ``puts`` and ``gets``."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.puts = 0
        self.gets = 0

    @staticmethod
    def cid_of(data: bytes) -> CID:
        return CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))

    async def put(self, data: bytes) -> CID:
        data = bytes(data)
        cid = self.cid_of(data)
        self.blobs[str(cid)] = data
        self.puts += 1
        return cid

    async def get(self, cid: CID | str) -> bytes:
        self.gets += 1
        key = str(CID.decode(str(cid)).set(base="base32"))
        if key not in self.blobs:
            raise FetchError(f"{cid} is not in this MemoryStore")
        data = self.blobs[key]
        if self.cid_of(data) != CID.decode(key):
            raise InvalidBlockError(f"{cid}: stored bytes do not match the CID")
        return data

    async def has(self, cid: CID | str) -> bool:
        return str(CID.decode(str(cid)).set(base="base32")) in self.blobs

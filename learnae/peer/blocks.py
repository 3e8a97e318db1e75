"""The blocks a peer serves: its block store plus its ledger's entries.

Ledger entries are dag-cbor blocks other peers fetch by CID (a late joiner
filling the gaps of an author's chain). They already live, verified, in the
ledger's logs, so instead of copying each one into the block store (where a
recursive pin would drag every linked snapshot of the whole history along), the
peer hands Bitswap this view: block store first, ledger entries second.
"""

from __future__ import annotations

from multiformats import CID

__all__ = ["LedgerBackedBlocks"]

_DAG_CBOR = 0x71


class LedgerBackedBlocks:
    """A :class:`~learnae.storage.BlockStore` that also answers for ledger entries."""

    def __init__(self, blocks, ledger):
        self.blocks = blocks
        self.ledger = ledger

    def _entry(self, cid: CID) -> bytes | None:
        return self.ledger.entry_bytes(cid) if cid.codec.code == _DAG_CBOR else None

    def has(self, cid: CID) -> bool:
        return self.blocks.has(cid) or self._entry(cid) is not None

    def get_block(self, cid: CID) -> bytes:
        if not self.blocks.has(cid) and (data := self._entry(cid)) is not None:
            return data
        return self.blocks.get_block(cid)

    def __getattr__(self, name: str):
        return getattr(self.blocks, name)

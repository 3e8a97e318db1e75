"""learnae.ledger: the signed, append-only contribution log of a swarm.

Each peer appends signed entries to its own hash chain; the union of all chains
is the swarm's ledger. Layering: imports ``learnae.identity`` (and optionally a
block fetcher given as a callable); never imports ``gossip`` or ``peer``.
"""

from learnae.ledger.entry import KINDS, MAX_ENTRY_BYTES, Entry, decode_entry, sign_entry

__all__ = ["KINDS", "MAX_ENTRY_BYTES", "Entry", "decode_entry", "sign_entry"]

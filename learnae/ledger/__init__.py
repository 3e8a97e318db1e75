"""learnae.ledger: the signed, append-only contribution log of a swarm.

Each peer appends signed entries to its own hash chain; the union of all chains
is the swarm's ledger (docs/architecture.md, wire formats; docs/ledger.md).
Layering: imports ``learnae.identity`` only (a block store is passed in as a
callable); never imports ``gossip`` or ``peer``.

Example:
    >>> # with Ledger.open(data_dir, identity, swarm=sid) as led:
    >>> #     led.append("join", {"fingerprint": fp, "framework": "keras", "addrs": addrs})
    >>> #     led.receive(gossip_message_bytes).status
"""

from learnae.ledger.credits import Credit
from learnae.ledger.entry import KINDS, MAX_ENTRY_BYTES, Entry, decode_entry, sign_entry
from learnae.ledger.ledger import ForkProof, Ledger, ReceiveResult, Status
from learnae.ledger.lineage import Lineage
from learnae.ledger.schema import Parent
from learnae.ledger.verify import VerifyReport, verify_blocks

__all__ = [
    "KINDS", "MAX_ENTRY_BYTES", "Entry", "decode_entry", "sign_entry",
    "Ledger", "Status", "ReceiveResult", "ForkProof", "Credit", "Lineage", "Parent",
    "VerifyReport", "verify_blocks",
]

"""learnae.gossip: the libp2p host, GossipSub announcements, validators and discovery.

Layering: imports libp2p and learnae.ledger (entry decoding) only; storage and
ledger never import gossip, and peer/ wires gossip to the rest.
"""

from learnae.gossip.host import connect, dial_line, full_addrs, open_host, parse_peer_addr
from learnae.gossip.topics import swarm_id, topic

__all__ = ["open_host", "full_addrs", "dial_line", "connect", "parse_peer_addr", "swarm_id", "topic"]

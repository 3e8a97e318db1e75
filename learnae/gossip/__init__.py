"""learnae.gossip: the libp2p host, GossipSub announcements, validators and discovery.

Layering: imports libp2p and learnae.ledger (entry decoding) only; storage and
ledger never import gossip, and peer/ wires gossip to the rest. See docs/gossip.md.
"""

from learnae.gossip.announce import Gossip, PublishParams, open_gossip
from learnae.gossip.discovery import DiscoveryParams, open_discovery
from learnae.gossip.host import connect, dial_line, full_addrs, open_host, parse_peer_addr
from learnae.gossip.inbox import Announcement
from learnae.gossip.router import GossipParams
from learnae.gossip.topics import swarm_id, topic

__all__ = [
    "open_host", "full_addrs", "dial_line", "connect", "parse_peer_addr",
    "swarm_id", "topic",
    "open_gossip", "Gossip", "Announcement", "GossipParams", "PublishParams",
    "open_discovery", "DiscoveryParams",
]

"""learnae: fully decentralized neural network training.

Equal peers train one model on their own data, publish weight snapshots as IPFS
content IDs, announce them over libp2p GossipSub, merge their neighbours'
snapshots by asynchronous averaging, and record every contribution on an
append-only signed ledger. There is no coordinator anywhere.

Layering (see ../shared/DESIGN.md section 2): ``averaging`` is pure numpy;
``storage`` and ``ledger`` never import ``gossip`` or ``peer``; ``peer`` wires
the parts together; ``cli`` only talks to ``peer``, ``scenario``, ``ledger``,
``data`` and config.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""The peer runtime: wires storage, gossip, ledger, averaging and training together.

``peer/`` may import every other package; nothing but ``cli/`` and
``scenario/`` imports ``peer/``. Configuration lives in :mod:`learnae.peer.config`.
"""

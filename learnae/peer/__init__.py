"""The peer runtime: wires storage, gossip, ledger, averaging and training together.

``peer/`` may import every other package; nothing but ``cli/``, ``scenario/``
and the user-facing :mod:`learnae.keras` (its networked peer) imports ``peer/``. Configuration lives in :mod:`learnae.peer.config`.
"""

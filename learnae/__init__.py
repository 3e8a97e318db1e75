"""learnae: fully decentralized neural network training.

Equal peers train one model on their own data, publish weight snapshots as IPFS
content IDs, announce them over libp2p GossipSub, merge their neighbours'
snapshots by asynchronous averaging, and record every contribution on an
append-only signed ledger. There is no coordinator anywhere.

The public face, for a training script of your own (``learnae peer start`` is
the command-line face; docs/keras.md has the whole story)::

    import learnae

    model = learnae.load_model("digits-mlp")       # or any Keras model: the swarm's architecture
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with learnae.connect(data_dir="~/my-peer", listen="/ip4/127.0.0.1/tcp/0",
                         bootstrap=["/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW..."]) as peer:
        model.fit(x, y, batch_size=32, epochs=20, callbacks=[learnae.GossipAveraging(peer)])

Names are loaded on first use, so ``import learnae`` stays cheap (TensorFlow
loads only with ``GossipAveraging``, ``connect`` or ``load_model``).
The packages and what each may import: docs/architecture.md.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_EXPORTS = {
    "GossipAveraging": "learnae.keras",
    "SwarmPeer": "learnae.keras",
    "connect": "learnae.keras",
    "load_model": "learnae.training",
    "PeerConfig": "learnae.peer.config",
    "load_config": "learnae.peer.config",
    "LearnaeError": "learnae.errors",
    "UserError": "learnae.errors",
    "ConfigError": "learnae.errors",
    "RemoteError": "learnae.errors",
    "ServiceError": "learnae.errors",
    "FetchError": "learnae.errors",
    "StoreError": "learnae.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'learnae' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""The ``learnae`` command line: noun-verb groups built with click.

Each group lives in its own module (``key.py``, ``ipfs.py``, ``ledger.py``, ...)
and only talks to ``peer``, ``scenario``, ``ledger``, ``data``, ``storage`` and
config; heavy imports (TensorFlow, libp2p) happen inside commands, so
``learnae --help`` stays fast.
"""

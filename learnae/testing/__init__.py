"""learnae.testing: in-process fakes that ship with the library, for users' own unit tests.

Each lives in its own module, imported explicitly (importing this package loads nothing):

* :mod:`learnae.testing.fake_store`: ``MemoryStore``, a complete
  :class:`~learnae.storage.store.Store` in memory, with the CIDs ``ipfs add
  --cid-version=1`` gives; it passes the same contract as the real stores
  (``tests/storage/test_store_contract.py``).
* :mod:`learnae.testing.fake_kubo`: ``FakeKuboRPC``, Kubo's ``/api/v0`` on 127.0.0.1
  over a real block store, for code that talks to a Kubo daemon.
* :mod:`learnae.testing.fake_peer`: ``FakeSwarm`` / ``FakePeer``, a
  :class:`learnae.keras.SwarmPeer` without networking.
"""

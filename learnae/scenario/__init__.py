"""Many real peers on one machine, driven by scenario YAML files (docs/scenarios.md).

* :mod:`~learnae.scenario.schema`: the file format, validation with YAML paths, the resolved plan.
* :mod:`~learnae.scenario.runner`: ``learnae scenario run``: processes, the timeline, the report.
* :mod:`~learnae.scenario.process`: one ``learnae peer start`` subprocess (also used by tests and benchmarks).
* :mod:`~learnae.scenario.report`: the plot, report.md and ``compare``.
* :mod:`~learnae.scenario.replay`: ``from-ledger``: a finished run's ledger back into a scenario.
* :mod:`~learnae.scenario.compose`: ``learnae scenario compose``: the same peers as containers.

Faults are injected inside the peers (:mod:`learnae.peer.faults`); nothing here imports
TensorFlow or libp2p.
"""

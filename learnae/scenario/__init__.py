"""Many real peers on one machine, driven by scenario YAML files (docs/scenarios.md).

* :mod:`~learnae.scenario.schema`: the file format, validation with YAML paths, the resolved plan.
* :mod:`~learnae.scenario.timeline`: the plan's timeline items and the events a run fired, typed.
* :mod:`~learnae.scenario.lifecycle`: the timeline as a state machine: impossible events, who runs at the end.
* :mod:`~learnae.scenario.runner`: ``learnae scenario run``: drives the timeline, ends the run.
* :mod:`~learnae.scenario.fleet`: the run's peer processes and the faults file each one is told.
* :mod:`~learnae.scenario.process`: one ``learnae peer start`` subprocess (also used by tests and benchmarks).
* :mod:`~learnae.scenario.measurement`: metrics records, consensus distance, ledger checks, the data partition.
* :mod:`~learnae.scenario.assembly`: the report of a finished run, expectations checked.
* :mod:`~learnae.scenario.report`: report.json as typed records (:class:`~learnae.scenario.report.Report`).
* :mod:`~learnae.scenario.plot`, :mod:`~learnae.scenario.markdown`, :mod:`~learnae.scenario.compare`:
  accuracy.png, report.md and ``learnae scenario compare``, drawn from report.json alone.
* :mod:`~learnae.scenario.replay`: ``from-ledger``: a finished run's ledger back into a scenario.
* :mod:`~learnae.scenario.compose`: ``learnae scenario compose``: the same peers as containers.

Faults are injected inside the peers (:mod:`learnae.peer.faults`); nothing here imports
TensorFlow or libp2p at import time.
"""

"""learnae.averaging: how a peer folds its neighbours' models into its own.

Pure numpy: this package imports nothing else of learnae (and no TensorFlow), so every
rule can be tested and studied on its own. The peer runtime decodes neighbours'
snapshots into :class:`Contribution` values and calls :func:`merge`.

Modules: ``contribution`` (values, validation), ``linear`` (mean, weighted, staleness,
consensus, push-sum), ``robust`` (median, trimmed-mean, krum, multi-krum,
centered-clip), ``merge`` (the pipeline and the per-neighbour weight cap), ``clipping``
(distances to the local model; clipping a contribution onto a radius around it). Snapshot
encodings (float16, int8) belong to the snapshot codec, :mod:`learnae.storage.compress`;
the in-process swarm simulator is a benchmark harness, ``bench/averaging_sim.py``.

Example:
    >>> import numpy as np
    >>> from learnae.averaging import Contribution, merge
    >>> local = [np.zeros(3, np.float32)]
    >>> result = merge(local, [Contribution([np.ones(3, np.float32)], samples=50, author="A")],
    ...                rule="mean", weight_cap=0.5)
    >>> result.weights[0].tolist(), result.influence
    ([0.5, 0.5, 0.5], {'A': 0.5})
"""

from learnae.averaging.contribution import REASONS, AveragingError, Contribution, MergeResult
from learnae.averaging.merge import RULES, merge

__all__ = ["Contribution", "MergeResult", "AveragingError", "RULES", "REASONS", "merge"]

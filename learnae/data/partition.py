"""Split a labelled dataset into disjoint shards, one per peer.

Three schemes, named by a short string (the same one ``PeerConfig.partition`` takes):

* ``iid``: a seeded shuffle cut into ``n_shards`` near-equal parts. Every shard sees
  every class in about the dataset's proportions.
* ``dirichlet:ALPHA``: label skew as in Hsu, Qi & Brown 2019 ("Measuring the effects
  of non-identical data distribution for federated visual classification"): for each
  class, the fractions of its samples that go to each shard are drawn from
  ``Dirichlet(ALPHA, ..., ALPHA)``. Small ALPHA (0.1) gives very skewed shards, large
  ALPHA (100) approaches ``iid``. Draws that leave a shard empty are redrawn.
* ``classes:K``: pathological skew as in McMahan et al. 2017 (FedAvg): every shard
  holds exactly K distinct classes. Classes are dealt round-robin over a seeded
  permutation, so shard ``i`` gets classes ``perm[(i*K + j) % C]`` for ``j < K``; a
  class held by several shards is split evenly between them. With ``n_shards * K < C``
  some classes are left out (their samples are in no shard).

Every scheme returns sorted, disjoint int64 index arrays and is a pure function of
``(labels, n_shards, scheme, seed)``.

Example:
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(10), 20)
    >>> shards = partition(labels, 8, "classes:2", seed=0)
    >>> [len(np.unique(labels[s])) for s in shards]
    [2, 2, 2, 2, 2, 2, 2, 2]
"""

from __future__ import annotations

import re

import numpy as np

from learnae.errors import UserError

__all__ = ["SCHEME_FORMS", "PartitionError", "partition", "parse_scheme", "class_histogram"]

SCHEME_FORMS = "iid, dirichlet:ALPHA (ALPHA > 0, e.g. dirichlet:0.5) or classes:K (K >= 1, e.g. classes:2)"
_MAX_DIRICHLET_DRAWS = 1000


class PartitionError(UserError):
    """A partition scheme string or its arguments are invalid."""


def parse_scheme(scheme: str) -> tuple[str, float | int | None]:
    """Parse a scheme string into ``(kind, parameter)``.

    Raises:
        PartitionError: the string is not one of the accepted forms.

    Example:
        >>> parse_scheme("dirichlet:0.5")
        ('dirichlet', 0.5)
    """
    s = scheme.strip() if isinstance(scheme, str) else scheme
    if s == "iid":
        return "iid", None
    if isinstance(s, str):
        if m := re.fullmatch(r"dirichlet:(\d*\.?\d+(?:[eE][-+]?\d+)?)", s):
            alpha = float(m[1])
            if alpha > 0 and np.isfinite(alpha):
                return "dirichlet", alpha
        if m := re.fullmatch(r"classes:([1-9]\d*)", s):
            return "classes", int(m[1])
    raise PartitionError(f"partition scheme {scheme!r} is not valid: use {SCHEME_FORMS}")


def partition(labels: np.ndarray, n_shards: int, scheme: str, seed: int) -> list[np.ndarray]:
    """Split sample indices ``0..len(labels)-1`` into ``n_shards`` disjoint shards.

    Args:
        labels: 1-D integer class labels, one per sample.
        n_shards: number of shards (peers), >= 1.
        scheme: ``iid``, ``dirichlet:ALPHA`` or ``classes:K``.
        seed: the same seed always gives the same shards.

    Returns:
        ``n_shards`` sorted int64 index arrays, pairwise disjoint.

    Raises:
        PartitionError: bad scheme string, ``n_shards`` < 1 or more shards than samples,
            labels not 1-D integers, or K larger than the number of classes.

    Example:
        >>> import numpy as np
        >>> [s.tolist() for s in partition(np.array([0, 1, 0, 1]), 2, "iid", seed=1)]
        [[0, 1], [2, 3]]
    """
    kind, param = parse_scheme(scheme)
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise PartitionError(f"labels must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    if not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise PartitionError(f"n_shards must be an integer >= 1, got {n_shards!r}")
    if n_shards > len(y):
        raise PartitionError(f"cannot split {len(y)} samples into {n_shards} non-empty shards: use fewer shards")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(len(y)), n_shards)
    elif kind == "dirichlet":
        parts = _dirichlet(y, n_shards, float(param), rng, scheme)
    else:
        parts = _classes(y, n_shards, int(param), rng, scheme)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _dirichlet(y: np.ndarray, n: int, alpha: float, rng: np.random.Generator, scheme: str) -> list[np.ndarray]:
    classes = np.unique(y)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    for _ in range(_MAX_DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(n)]
        for idx in by_class:
            p = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for shard, chunk in enumerate(np.split(idx, cuts)):
                parts[shard].append(chunk)
        out = [np.concatenate(p) for p in parts]
        if min(len(p) for p in out) > 0:
            return out
    raise PartitionError(
        f"partition scheme {scheme!r} left a shard empty in {_MAX_DIRICHLET_DRAWS} draws "
        f"for {len(y)} samples and {n} shards: use a larger ALPHA or fewer shards"
    )


def _classes(y: np.ndarray, n: int, k: int, rng: np.random.Generator, scheme: str) -> list[np.ndarray]:
    classes = rng.permutation(np.unique(y))
    c = len(classes)
    if k > c:
        raise PartitionError(f"partition scheme {scheme!r} asks for {k} classes per shard but the labels have {c}: use K <= {c}")
    owners: dict[int, list[int]] = {}
    for shard in range(n):
        for j in range(k):
            owners.setdefault((shard * k + j) % c, []).append(shard)
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    for ci, shards in owners.items():
        idx = rng.permutation(np.flatnonzero(y == classes[ci]))
        for shard, chunk in zip(shards, np.array_split(idx, len(shards))):
            parts[shard].append(chunk)
    return [np.concatenate(p) if p else np.zeros(0, np.int64) for p in parts]


def class_histogram(labels: np.ndarray, shard: np.ndarray) -> dict[int, int]:
    """Samples per class in one shard, e.g. for a ledger ``shard`` entry's body.

    Example:
        >>> import numpy as np
        >>> class_histogram(np.array([3, 3, 5]), np.array([0, 1, 2]))
        {3: 2, 5: 1}
    """
    values, counts = np.unique(np.asarray(labels)[shard], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}

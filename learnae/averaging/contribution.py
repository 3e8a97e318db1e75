"""The values a merge takes and returns, and the checks a contribution must pass.

A :class:`Contribution` is one neighbour's snapshot as the peer runtime decoded it: the
tensors plus what the ledger entry said about them (sample count, age, author, push-sum
mass). Every field that came from the network is untrusted; :func:`validate` checks the
tensors against the local model and the metadata for sane values, and the merge drops
anything that fails, with a short kebab-case reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Contribution", "MergeResult", "AveragingError", "validate", "validate_local", "REASONS"]

log = logging.getLogger(__name__)

# Why a contribution was left out of a merge (MergeResult.excluded values).
REASONS = (
    "not-a-list",  # weights is not a list/tuple of arrays
    "tensor-count",  # a different number of tensors than the local model
    "shape",  # a tensor's shape differs from the local model's
    "dtype",  # a tensor's dtype differs from the local model's
    "non-finite",  # NaN or inf somewhere
    "bad-metadata",  # negative samples / staleness, non-positive or non-finite mass
    "duplicate-author",  # a second contribution from an author already in this merge
)


class AveragingError(ValueError):
    """A merge was asked for with bad parameters (unknown rule, eps out of bounds, ...).

    This is a local configuration mistake, not bad remote data; the peer runtime reports it
    as a config error. (``learnae.averaging`` imports nothing of learnae, so it subclasses
    the builtin ``ValueError`` rather than ``learnae.errors.ConfigError``.)
    """


@dataclass(frozen=True, slots=True)
class Contribution:
    """One neighbour's model, offered for merging.

    Attributes:
        weights: the tensors, in the local model's layer order.
        samples: samples the author trained on (claimed; weights the ``weighted`` rule).
        staleness_steps: local steps since the author produced it (>= 0).
        staleness_s: seconds since the author produced it (>= 0).
        author: the author's peer ID; keys ``MergeResult.influence``/``excluded``.
        mass: push-sum mass the author attached to this snapshot (> 0).

    Example:
        >>> import numpy as np
        >>> c = Contribution([np.zeros(3, np.float32)], samples=100, author="12D3KooA")
        >>> c.staleness_steps, c.mass
        (0, 1.0)
    """

    weights: list[np.ndarray]
    samples: int
    staleness_steps: int = 0
    staleness_s: float = 0.0
    author: str = ""
    mass: float = 1.0


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a merge produced.

    Attributes:
        weights: the merged tensors (same shapes and dtypes as the local model).
        influence: author -> effective weight of that contribution in the result (its mean
            per-coordinate weight; recorded in the ledger as ``parents[].weight``). Together
            with ``local_weight`` these sum to 1.
        excluded: author -> reason (one of :data:`REASONS`) for contributions not merged.
        local_weight: the effective weight the local model kept.
        mass: the local model's push-sum mass after the merge (``push-sum`` only; else 1.0).
        skipped: non-empty when the rule could not run (e.g. too few contributions for
            Krum's ``n >= 2f + 3``) and the local model was returned unchanged.
    """

    weights: list[np.ndarray]
    influence: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    local_weight: float = 1.0
    mass: float = 1.0
    skipped: str = ""


def validate_local(local: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check the local model itself (a bug here is ours, so it raises).

    Raises:
        AveragingError: not a list of finite floating-point arrays.
    """
    if not isinstance(local, (list, tuple)) or not local:
        raise AveragingError("local model must be a non-empty list of numpy arrays")
    out = []
    for i, t in enumerate(local):
        a = np.asarray(t)
        if a.dtype.kind != "f":
            raise AveragingError(f"local tensor {i} has dtype {a.dtype}; expected a float dtype")
        if not np.all(np.isfinite(a)):
            raise AveragingError(f"local tensor {i} holds NaN or inf; refusing to merge into it")
        out.append(a)
    return out


def _check(c: object, local: Sequence[np.ndarray]) -> str | None:
    if not isinstance(c, Contribution) or not isinstance(c.weights, (list, tuple)):
        return "not-a-list"
    if len(c.weights) != len(local):
        return "tensor-count"
    for w, ref in zip(c.weights, local):
        if not isinstance(w, np.ndarray) or w.shape != ref.shape:
            return "shape"
        if w.dtype != ref.dtype:
            return "dtype"
    for w in c.weights:
        if not np.all(np.isfinite(w)):
            return "non-finite"
    try:
        ok = (
            int(c.samples) == c.samples and c.samples >= 0
            and int(c.staleness_steps) == c.staleness_steps and c.staleness_steps >= 0
            and math.isfinite(c.staleness_s) and c.staleness_s >= 0
            and math.isfinite(c.mass) and c.mass > 0
        )
    except (TypeError, ValueError, OverflowError):
        ok = False
    return None if ok else "bad-metadata"


def validate(
    local: Sequence[np.ndarray], contributions: Sequence[Contribution]
) -> tuple[list[Contribution], dict[str, str], list[str]]:
    """Split contributions into those safe to merge and those excluded.

    Returns:
        ``(kept, excluded, keys)``: the valid contributions in order, author -> reason for
        the others, and the key of each kept one (its author, or ``#<index>`` if empty).
        Only an author's first contribution is considered; later ones are excluded as
        ``duplicate-author``, so an author is in exactly one of the two outputs.

    Example:
        >>> import numpy as np
        >>> local = [np.zeros(2, np.float32)]
        >>> bad = Contribution([np.array([np.nan, 0], np.float32)], 1, author="B")
        >>> kept, excluded, _ = validate(local, [bad])
        >>> kept, excluded
        ([], {'B': 'non-finite'})
    """
    kept: list[Contribution] = []
    keys: list[str] = []
    excluded: dict[str, str] = {}
    for i, c in enumerate(contributions):
        key = (getattr(c, "author", "") or f"#{i}") if isinstance(c, Contribution) else f"#{i}"
        reason = _check(c, local)
        if key in keys or key in excluded:
            reason = "duplicate-author"
        if reason is not None:
            log.warning("excluded contribution from %s: %s", key, reason)
            excluded.setdefault(key, reason)
            continue
        kept.append(c)
        keys.append(key)
    return kept, excluded, keys

"""``merge()``: validate the contributions, run a rule, cap each neighbour, combine.

The four stages are the same for every rule:

1. :func:`~learnae.averaging.contribution.validate` drops contributions with a wrong
   tensor count, shape or dtype, non-finite values, bad metadata or a repeated author;
   they are reported in ``MergeResult.excluded`` and never reach a rule.
2. The rule turns ``(local, valid contributions)`` into weights over participants
   (scalar, or per coordinate for median and trimmed mean), summing to 1.
3. The per-neighbour cap: no contribution may weigh more than ``weight_cap`` in any
   coordinate; the excess goes back to the local model (the one model a peer trusts).
   So with ``weight_cap=0.25`` a single liar moves any weight at most a quarter of the
   way, under every rule, whatever sample count or mass it claims.
4. The merged model is the weighted sum, computed in float64 and returned in the local
   model's dtype.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from learnae.averaging import linear, robust
from learnae.averaging.contribution import AveragingError, Contribution, MergeResult, validate, validate_local
from learnae.averaging.linear import Plan

__all__ = ["RULES", "RULE_FUNCTIONS", "merge", "apply_cap"]

log = logging.getLogger(__name__)

RULE_FUNCTIONS: dict[str, Callable[..., Plan]] = {
    "mean": linear.mean,
    "weighted": linear.weighted,
    "staleness": linear.staleness,
    "consensus": linear.consensus,
    "push-sum": linear.push_sum,
    "median": robust.median,
    "trimmed-mean": robust.trimmed_mean,
    "krum": robust.krum,
    "multi-krum": robust.multi_krum,
    "centered-clip": robust.centered_clip,
}
RULES: tuple[str, ...] = tuple(RULE_FUNCTIONS)


def apply_cap(weights: np.ndarray, cap: float) -> np.ndarray:
    """Clip every neighbour's weight (rows 1..n-1) at ``cap``; row 0 (local) takes the excess.

    Works on ``(n,)`` scalar weights and on ``(n, *shape)`` per-coordinate weights alike.

    Example:
        >>> apply_cap(np.array([0.2, 0.6, 0.2]), 0.3).tolist()
        [0.5, 0.3, 0.2]
    """
    w = np.array(weights, dtype=np.float64, copy=True)
    if cap >= 1.0 or len(w) < 2:
        return w
    excess = np.maximum(w[1:] - cap, 0.0)
    w[1:] -= excess
    w[0] += excess.sum(axis=0)
    return w


@functools.cache
def _accepted(name: str) -> tuple[str, ...]:
    sig = inspect.signature(RULE_FUNCTIONS[name])
    return tuple(p for p in sig.parameters if p not in ("local", "contribs"))


def _check_params(name: str, params: dict) -> None:
    accepted = _accepted(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise AveragingError(
            f"rule {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(accepted) or 'no parameters'}"
        )


def merge(
    local: Sequence[np.ndarray],
    contributions: Sequence[Contribution],
    rule: str = "mean",
    *,
    weight_cap: float = 1.0,
    **params,
) -> MergeResult:
    """Fold neighbours' models into the local model with an averaging rule.

    Args:
        local: the local model's tensors (finite floats).
        contributions: neighbours' snapshots; invalid ones are excluded, never merged.
        rule: one of :data:`RULES`.
        weight_cap: largest weight any one neighbour may have in any coordinate, in
            ``(0, 1]``; ``1.0`` means no cap. The local model takes the excess.
        **params: the rule's own parameters, e.g. ``exponent`` (staleness), ``eps`` and
            ``max_degree`` (consensus), ``local_mass`` (push-sum), ``local_samples``
            (weighted), ``f`` (trimmed-mean, krum), ``m`` (multi-krum), ``tau`` and
            ``iterations`` (centered-clip). See each rule's docstring.

    Returns:
        A :class:`MergeResult`; ``influence`` holds every merged author's effective
        weight (0.0 for one a robust rule left out), ``excluded`` the rejected ones.

    Raises:
        AveragingError: unknown rule or parameter, a parameter out of its bounds, or a
            local model that is not a list of finite float arrays.

    Example:
        >>> import numpy as np
        >>> local = [np.zeros(2, np.float32)]
        >>> good = Contribution([np.ones(2, np.float32)], samples=10, author="A")
        >>> bad = Contribution([np.ones(3, np.float32)], samples=10, author="B")
        >>> r = merge(local, [good, bad], "mean")
        >>> r.weights[0].tolist(), r.influence, r.excluded
        ([0.5, 0.5], {'A': 0.5}, {'B': 'shape'})
    """
    if rule not in RULE_FUNCTIONS:
        raise AveragingError(f"unknown averaging rule {rule!r}: use one of {', '.join(RULES)}")
    if not (isinstance(weight_cap, (int, float)) and 0 < weight_cap <= 1 and math.isfinite(weight_cap)):
        raise AveragingError(f"weight_cap must be in (0, 1], got {weight_cap!r}")
    _check_params(rule, params)
    local = validate_local(local)
    kept, excluded, keys = validate(local, contributions)
    if not kept:  # nothing to merge: every rule leaves the local model as it is
        mass = params.get("local_mass", 1.0) if rule == "push-sum" else 1.0
        return MergeResult([t.copy() for t in local], {}, excluded, 1.0, mass, "")
    problem = robust.panel_problem(rule, len(kept) + 1)  # one minimum-panel rule for every robust rule
    plan = Plan(np.ones(1), skipped=problem) if problem else RULE_FUNCTIONS[rule](local, kept, **params)
    if plan.skipped:
        log.info("merge with %s skipped: %s", rule, plan.skipped)
        return MergeResult(
            weights=[t.copy() for t in local], influence={k: 0.0 for k in keys}, excluded=excluded,
            local_weight=1.0, mass=params.get("local_mass", 1.0) if rule == "push-sum" else 1.0,
            skipped=plan.skipped,
        )
    if isinstance(plan.weights, list):  # per coordinate, one array per tensor
        capped = [apply_cap(w, weight_cap) for w in plan.weights]
        merged = [np.sum(w * robust._stack(local, kept, t), axis=0) for t, w in enumerate(capped)]
        size = sum(w[0].size for w in capped)
        share = sum(w.reshape(len(w), -1).sum(axis=1) for w in capped) / max(size, 1)
    else:
        share = apply_cap(plan.weights, weight_cap)
        merged = []
        for t, own in enumerate(local):
            acc = share[0] * own.astype(np.float64)
            for j, c in enumerate(kept, start=1):
                if share[j]:
                    acc += share[j] * c.weights[t].astype(np.float64)
            merged.append(acc)
    return MergeResult(
        weights=[m.astype(own.dtype) for m, own in zip(merged, local)],
        influence={k: float(share[j]) for j, k in enumerate(keys, start=1)},
        excluded=excluded,
        local_weight=float(share[0]),
        mass=plan.mass,
        skipped="",
    )

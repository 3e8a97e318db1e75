"""Averaging rules that give each model one scalar weight.

Every rule here returns a :class:`Plan`: one non-negative weight per participant, the
local model first, summing to 1. The merged model is the weighted sum, so it always lies
in the convex hull of the local model and its neighbours. None of these rules resists a
malicious neighbour on its own (a peer may claim any sample count); the per-neighbour
weight cap applied by :func:`learnae.averaging.merge` bounds the damage, and the rules in
:mod:`learnae.averaging.robust` are for swarms with untrusted peers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learnae.averaging.contribution import AveragingError, Contribution

__all__ = ["Plan", "mean", "weighted", "staleness", "consensus", "push_sum"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How to combine the participants (index 0 = local model).

    ``weights`` is either an ``(n,)`` array of scalar weights, or one ``(n, *shape)``
    array per tensor for rules that weight each coordinate separately; in both cases the
    weights over participants sum to 1.
    """

    weights: np.ndarray | list[np.ndarray]
    mass: float = 1.0
    skipped: str = ""


def _normalize(w: np.ndarray) -> np.ndarray:
    total = float(np.sum(w))
    if not total > 0 or not math.isfinite(total):
        raise AveragingError("merge weights sum to zero or overflow: check sample counts and masses")
    return w / total


def mean(local: Sequence[np.ndarray], contribs: Sequence[Contribution]) -> Plan:
    """Plain average of the local model and every contribution.

    Source: model averaging as in FedAvg (McMahan et al. 2017) and gossip learning
    (Ormándi et al. 2013). Assumes all participants are honest and equally informative.
    """
    n = len(contribs) + 1
    return Plan(np.full(n, 1.0 / n))


def weighted(
    local: Sequence[np.ndarray], contribs: Sequence[Contribution], *, local_samples: float | None = None
) -> Plan:
    """Average weighted by sample count, as FedAvg weights clients (McMahan et al. 2017).

    Args:
        local_samples: samples behind the local model; default: the mean of the
            contributions' counts (the local model counts like an average neighbour).

    Assumes honest sample counts: a liar claiming many samples gains weight (cap it with
    ``weight_cap``). Zero-sample contributions get weight 0.
    """
    counts = np.array([float(c.samples) for c in contribs])
    own = float(np.mean(counts)) if local_samples is None and len(counts) else float(local_samples or 0)
    if own < 0:
        raise AveragingError(f"local_samples must be >= 0, got {local_samples}")
    w = np.concatenate([[own], counts])
    if not np.sum(w) > 0:  # nobody trained yet: fall back to a plain mean
        w = np.ones_like(w)
    return Plan(_normalize(w))


def staleness(
    local: Sequence[np.ndarray],
    contribs: Sequence[Contribution],
    *,
    exponent: float = 0.5,
    half_life_s: float | None = None,
    by_samples: bool = False,
    local_samples: float | None = None,
) -> Plan:
    """Average where older contributions count less.

    Each contribution's base weight (1, or its sample count with ``by_samples``) is
    multiplied by ``(1 + staleness_steps) ** -exponent`` and, if ``half_life_s`` is set, by
    ``0.5 ** (staleness_s / half_life_s)``. The local model has staleness 0.

    Source: the polynomial staleness function of asynchronous federated optimization
    (FedAsync, Xie et al. 2019) and staleness-aware asynchronous SGD (Zhang et al. 2016);
    VC-ASGD (Kiss et al.) applies the same idea to volunteer computing. Assumes that age
    measures how far a model lags the swarm, and honest staleness reports.
    """
    if exponent < 0 or (half_life_s is not None and not half_life_s > 0):
        raise AveragingError("staleness: exponent must be >= 0 and half_life_s > 0")
    base = weighted(local, contribs, local_samples=local_samples).weights if by_samples else None
    decay = np.array(
        [1.0]
        + [
            (1.0 + c.staleness_steps) ** -exponent
            * (0.5 ** (c.staleness_s / half_life_s) if half_life_s else 1.0)
            for c in contribs
        ]
    )
    w = decay * (base if base is not None else 1.0)
    return Plan(_normalize(w))


def consensus(
    local: Sequence[np.ndarray],
    contribs: Sequence[Contribution],
    *,
    eps: float | None = None,
    max_degree: int | None = None,
) -> Plan:
    """One step of distributed averaging consensus: ``x <- x + eps * sum_j (x_j - x)``.

    Source: Xiao & Boyd 2004, "Fast linear iterations for distributed averaging", with
    constant edge weights. With the same ``eps`` on every peer of a connected, undirected
    graph, the iteration matrix ``I - eps * L`` is symmetric and doubly stochastic, and
    repeating it converges to the exact average when ``0 < eps < 1 / max_degree`` (the
    bound enforced here; it also keeps every weight non-negative).

    Args:
        eps: step size; default ``1 / (max_degree + 1)``.
        max_degree: the largest degree in the graph (default: this merge's neighbour
            count, which is right for regular topologies such as a ring or random-k).

    Raises:
        AveragingError: ``eps`` outside ``(0, 1 / max_degree)`` or ``max_degree`` smaller
            than the number of neighbours in this merge.
    """
    d = len(contribs)
    deg = d if max_degree is None else int(max_degree)
    if deg < d:
        raise AveragingError(f"consensus: max_degree={deg} but this merge has {d} neighbours")
    step = 1.0 / (deg + 1) if eps is None else float(eps)
    if not (0 < step and (deg == 0 or step < 1.0 / deg)):
        raise AveragingError(
            f"consensus: eps={step} breaks the stability bound 0 < eps < 1/max_degree = {1.0 / max(deg, 1):.4g}"
        )
    return Plan(np.array([1.0 - step * d] + [step] * d))


def push_sum(
    local: Sequence[np.ndarray], contribs: Sequence[Contribution], *, local_mass: float = 1.0
) -> Plan:
    """Push-sum averaging: models travel with a mass, the merge is mass-weighted.

    Source: Kempe, Dobra & Gehrke 2003, "Gossip-based computation of aggregate
    information". Each peer holds ``(x, m)``; to send, it halves its mass and attaches the
    half to its snapshot (``Contribution.mass``); a receiver's new model is
    ``(m x + sum m_j x_j) / (m + sum m_j)`` and its new mass ``m + sum m_j``
    (``MergeResult.mass``). Because mass is conserved, the mass-weighted mean of all
    models never changes, so averaging stays unbiased on directed, asynchronous gossip.
    Assumes each sent unit of mass is merged by exactly one receiver (a snapshot
    broadcast to many peers must carry ``mass / receivers``) and none is lost.
    """
    if not (math.isfinite(local_mass) and local_mass > 0):
        raise AveragingError(f"push-sum: local_mass must be finite and > 0, got {local_mass}")
    m = np.array([float(local_mass)] + [float(c.mass) for c in contribs])
    return Plan(_normalize(m), mass=float(np.sum(m)))

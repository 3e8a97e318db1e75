"""Byzantine-robust rules: for swarms where some neighbours may send anything.

Every rule runs on the ``n`` participants = the local model (trusted, index 0) plus the
valid contributions, of which at most ``f`` may be arbitrary. Each returns a
:class:`~learnae.averaging.linear.Plan` (weights over participants, summing to 1), so the
per-neighbour weight cap and the influence report work as for the linear rules.

=============== ==================================== ==================== ============================
rule            source                               tolerates            guarantee (tested)
=============== ==================================== ==================== ============================
median          Yin et al. 2018 (coordinate-wise)    f < n / 2            each coordinate in honest range
trimmed-mean    Yin et al. 2018 (drop f per side)    n >= 2f + 1          each coordinate in honest range
krum            Blanchard et al. 2017                n >= 2f + 3          within (sqrt(n-f-2)+1) * D of honest mean
multi-krum      Blanchard et al. 2017 (mean of m)    n >= 2f + 3, m<=n-f  same as krum
centered-clip   Karimireddy, He & Jaggi 2021         f < n / 2            one pass, tau >= D: within f/n (|x0-mu| + tau)
=============== ==================================== ==================== ============================

(``D`` = largest distance between two honest participants, ``mu`` = honest mean,
``x0`` = local model.) When ``n`` is too small for the requested ``f`` the rule does not
guess: it returns a plan with ``skipped`` set and the merge keeps the local model.

Every robust rule assumes at least one arbitrary participant (``f >= 1``), so each has a
minimum panel (:data:`MIN_PANEL`, checked once for all of them by :func:`panel_problem`):
with fewer participants a "robust" rule would be a plain mean in disguise (median of two
models is their mean), and a peer whose only reachable neighbour is hostile would take half
of whatever it sends. Below the minimum the merge keeps the local model and says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learnae.averaging.contribution import AveragingError, Contribution
from learnae.averaging.linear import Plan

__all__ = ["median", "trimmed_mean", "krum", "multi_krum", "centered_clip", "MIN_PANEL", "panel_problem"]

# Participants (the local model included) each rule needs to tolerate one arbitrary one.
MIN_PANEL = {"median": 3, "trimmed-mean": 3, "centered-clip": 3, "krum": 5, "multi-krum": 5}


def panel_problem(rule: str, n: int) -> str | None:
    """Why ``n`` participants are too few for ``rule`` to be robust, or None (not robust: always None)."""
    need = MIN_PANEL.get(rule)
    if need is None or n >= need:
        return None
    return (f"{rule} needs at least {need} participants to tolerate one arbitrary model, have {n} "
            f"(the local model and {n - 1} neighbour(s)); keeping the local model")


def _stack(local: Sequence[np.ndarray], contribs: Sequence[Contribution], t: int) -> np.ndarray:
    return np.stack([np.asarray(local[t], np.float64)] + [np.asarray(c.weights[t], np.float64) for c in contribs])


def _skip(n: int, reason: str) -> Plan:
    w = np.zeros(n)
    w[0] = 1.0
    return Plan(w, skipped=reason)


def _trim(local, contribs, b: int) -> Plan:
    n = len(contribs) + 1
    keep = n - 2 * b
    out = []
    for t in range(len(local)):
        x = _stack(local, contribs, t)
        order = np.argsort(x, axis=0, kind="stable")
        w = np.zeros_like(x)
        np.put_along_axis(w, order[b : n - b], 1.0 / keep, axis=0)
        out.append(w)
    return Plan(out)


def trimmed_mean(local: Sequence[np.ndarray], contribs: Sequence[Contribution], *, f: int | None = None) -> Plan:
    """Coordinate-wise trimmed mean: in each coordinate drop the ``f`` largest and ``f``
    smallest values and average the rest.

    Source: Yin, Chen, Ramchandran & Bartlett 2018, "Byzantine-robust distributed learning:
    towards optimal statistical rates". With at most ``f`` arbitrary values among ``n >=
    2f + 1``, every kept value, hence the result, lies between the smallest and largest
    honest value of that coordinate. Default ``f = max(1, n // 4)`` (for ``n >= 3``).
    """
    n = len(contribs) + 1
    b = (max(1, n // 4) if n >= 3 else 0) if f is None else int(f)
    if b < 0:
        raise AveragingError(f"trimmed-mean: f must be >= 0, got {f}")
    if n < 2 * b + 1:
        return _skip(n, f"trimmed-mean needs n >= 2f+1 participants, have n={n}, f={b}")
    return _trim(local, contribs, b)


def median(local: Sequence[np.ndarray], contribs: Sequence[Contribution]) -> Plan:
    """Coordinate-wise median (the mean of the two middle values when ``n`` is even).

    Source: Yin et al. 2018. It is the trimmed mean with ``f = (n - 1) // 2``, so each
    coordinate stays within the honest range while fewer than half are arbitrary. Costs
    accuracy on non-IID data, where honest models legitimately disagree.
    """
    n = len(contribs) + 1
    return _trim(local, contribs, (n - 1) // 2)


def _flat(local, contribs) -> np.ndarray:
    """All participants as rows of one (n, P) float64 matrix."""
    return np.stack(
        [np.concatenate([np.ravel(t) for t in local]).astype(np.float64)]
        + [np.concatenate([np.ravel(t) for t in c.weights]).astype(np.float64) for c in contribs]
    )


def _sq_distances(local, contribs) -> np.ndarray:
    # exact differences, not the Gram trick: models are close together, and cancellation
    # in |a|^2 + |b|^2 - 2ab would blur exactly the distances Krum ranks by
    x = _flat(local, contribs)
    return np.stack([np.sum((x - row) ** 2, axis=1) for row in x])


def multi_krum(
    local: Sequence[np.ndarray], contribs: Sequence[Contribution], *, f: int | None = None, m: int | None = None
) -> Plan:
    """Multi-Krum: average the ``m`` participants with the lowest Krum scores.

    Source: Blanchard, El Mhamdi, Guerraoui & Stainer 2017, "Machine learning with
    adversaries: Byzantine tolerant gradient descent". A participant's score is the sum of
    squared distances to its ``n - f - 2`` nearest others; with ``n >= 2f + 3`` a selected
    model is close to at least ``n - 2f - 1 >= 2`` honest ones, so it lies within
    ``(sqrt(n - f - 2) + 1) * D`` of the honest mean. Defaults: ``f = (n - 3) // 2`` (the
    most it tolerates, and at least 1), ``m = n - f``. Ties favour the local model.
    """
    n = len(contribs) + 1
    ff = max(1, (n - 3) // 2) if f is None else int(f)
    if ff < 0:
        raise AveragingError(f"krum: f must be >= 0, got {f}")
    if n < 2 * ff + 3:
        return _skip(n, f"krum needs n >= 2f+3 participants, have n={n}, f={ff}")
    mm = n - ff if m is None else int(m)
    if not 1 <= mm <= n - ff:
        raise AveragingError(f"multi-krum: m must be in 1..n-f = {n - ff}, got {m}")
    d2 = _sq_distances(local, contribs)
    closest = np.sort(d2 + np.diag(np.full(n, np.inf)), axis=1)[:, : n - ff - 2]
    scores = closest.sum(axis=1)
    chosen = np.argsort(scores, kind="stable")[:mm]
    w = np.zeros(n)
    w[chosen] = 1.0 / mm
    return Plan(w)


def krum(local: Sequence[np.ndarray], contribs: Sequence[Contribution], *, f: int | None = None) -> Plan:
    """Krum: take the single participant with the lowest score (multi-Krum with ``m = 1``).

    Source: Blanchard et al. 2017; needs ``n >= 2f + 3``. Robust but throws away the
    variance reduction of averaging, so it learns slowly on non-IID data.
    """
    return multi_krum(local, contribs, f=f, m=1)


def centered_clip(
    local: Sequence[np.ndarray],
    contribs: Sequence[Contribution],
    *,
    tau: float | None = None,
    iterations: int = 1,
) -> Plan:
    """Centered clipping around the local model.

    ``v <- x0``; repeat ``iterations`` times: ``v <- v + (1/n) sum_i clip_tau(x_i - v)``
    with ``clip_tau(z) = z * min(1, tau / |z|)`` (L2 norm over all tensors).

    Source: Karimireddy, He & Jaggi 2021, "Learning from history for Byzantine robust
    optimization". Each arbitrary participant moves the result by at most ``tau / n`` per
    iteration, whatever it sends. With one iteration and ``tau`` at least the honest
    spread ``D``, the result is within ``(f / n) * (|x0 - mu| + tau)`` of the honest mean
    ``mu``. Default ``tau``: the lower median distance of the contributions from the local
    model (so half of them or fewer cannot inflate it).
    """
    n = len(contribs) + 1
    if iterations < 1:
        raise AveragingError(f"centered-clip: iterations must be >= 1, got {iterations}")
    if n == 1:
        return Plan(np.ones(1))
    d0 = np.sqrt(np.maximum(_sq_distances(local, contribs)[0], 0.0))
    # the lower median: with two contributions, one hostile one cannot set the radius
    radius = float(np.sort(d0[1:])[(n - 2) // 2]) if tau is None else float(tau)
    if not radius >= 0:
        raise AveragingError(f"centered-clip: tau must be >= 0, got {tau}")
    a = np.zeros(n)
    a[0] = 1.0  # v = sum_i a_i x_i: clipping scales whole vectors, so v stays affine in x
    for it in range(iterations):
        dist = d0 if it == 0 else _distances_to(local, contribs, a)
        with np.errstate(divide="ignore"):
            c = np.where(dist > radius, radius / np.where(dist > 0, dist, 1.0), 1.0)
        a = a * (1.0 - c.sum() / n) + c / n
    return Plan(a)


def _distances_to(local, contribs, a: np.ndarray) -> np.ndarray:
    x = _flat(local, contribs)
    return np.sqrt(np.sum((x - a @ x) ** 2, axis=1))

"""In-process simulator: N peers train numpy MLPs and merge with a chosen rule.

No networking and no TensorFlow: peers step in lock-step on their own shards, publish a
snapshot every ``merge_every`` local steps and merge their neighbours' snapshots through
:func:`learnae.averaging.merge`, exactly as the peer runtime does. It exists to compare
rules, topologies, merge periods and momentum handling quickly, and to measure how
Byzantine peers hurt each rule (``bench/averaging_quality.py``). It is a research
harness, not part of the installed library, so it lives in ``bench/``; the MLP it
trains is :mod:`bench.averaging_mlp`.

Asynchrony is modelled by staleness: with ``max_lag`` > 0 each neighbour's snapshot is
one published between 0 and ``max_lag`` merge periods ago (drawn at random), and the
contribution carries that age in ``staleness_steps``.

Attackers (the last ``n_attackers`` peers) know every honest snapshot (gossip is
public). Attack names are the peer's own (:data:`learnae.peer.faults.ATTACK_MODES`), so a
result here names the same attack as a scenario's ``byzantine`` event. With
``mu``/``sigma`` the coordinate-wise mean/std of the honest snapshots:
``sign-flip`` publishes ``-attack_scale * mu`` (default 4: with 2 of 8 attackers the plain
mean becomes ``-mu / 4``, a flipped model; an unscaled ``-mu`` only shrinks the mean);
``noise`` publishes ``mu + N(0, attack_scale^2)``; ``a-little-is-enough`` (Baruch et
al. 2019) publishes ``mu - z * sigma`` with ``z`` from the paper's formula; ``scaled``
(model replacement, Bagdasaryan et al. 2020) trains on flipped labels and publishes
``mu + attack_scale * (x_attacker - mu)``. ``equivocate`` (two signed entries with one
seq) attacks the ledger, which the simulator does not have, so it is refused.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> shards = [np.arange(0, 100), np.arange(100, 200)]
    >>> r = simulate(SimConfig(n_peers=2, steps=50, hidden=8), x, y, shards, x, y)
    >>> r.final_mean_acc > 0.8
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.averaging_mlp import accuracy, init_params, loss_and_grads
from learnae.averaging.contribution import Contribution
from learnae.averaging.merge import RULES, merge
from learnae.peer.faults import ATTACK_MODES

__all__ = ["SimConfig", "SimResult", "simulate", "train_centralized", "TOPOLOGIES", "ATTACKS", "MOMENTUM_MODES"]

TOPOLOGIES = ("complete", "ring", "random-k")
# The weight attacks of the peer's vocabulary; equivocation needs a ledger, which the sim lacks.
_NOT_SIMULATED = ("equivocate",)
ATTACKS = ("none",) + tuple(m for m in ATTACK_MODES if m not in _NOT_SIMULATED)
MOMENTUM_MODES = ("keep", "reset", "average")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated swarm. Steps are local SGD steps (one batch each)."""

    n_peers: int = 8
    steps: int = 1000  # local steps per peer
    batch_size: int = 32  # samples per step
    lr: float = 0.05
    momentum: float = 0.9
    momentum_on_merge: str = "keep"  # keep | reset | average (study only: needs neighbours' buffers)
    hidden: int = 64  # hidden units of the MLP
    rule: str = "mean"
    rule_params: dict = field(default_factory=dict)
    weight_cap: float = 1.0
    topology: str = "random-k"
    k: int = 2  # neighbours per merge (random-k, ring); complete uses all
    merge_every: int = 10  # local steps between merges
    max_lag: int = 0  # merge periods a neighbour's snapshot may be old
    attack: str = "none"
    n_attackers: int = 0
    attack_scale: float = 0.0  # 0 = the attack's default (sign-flip: 4, noise: 1, scaled: n_peers)
    eval_every: int = 100  # steps
    seed: int = 0

    def check(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule {self.rule!r} not in {RULES}")
        if self.attack in _NOT_SIMULATED:
            raise ValueError(f"attack {self.attack!r} forks the ledger, which the simulator does not have "
                             f"(attack in {ATTACKS})")
        if self.topology not in TOPOLOGIES or self.attack not in ATTACKS or self.momentum_on_merge not in MOMENTUM_MODES:
            raise ValueError(f"topology in {TOPOLOGIES}, attack in {ATTACKS}, momentum_on_merge in {MOMENTUM_MODES}")
        if not 0 <= self.n_attackers < self.n_peers or (self.attack == "none") != (self.n_attackers == 0):
            raise ValueError("n_attackers must be in [0, n_peers) and > 0 exactly when attack is set")


@dataclass(frozen=True, slots=True)
class SimResult:
    """Accuracy of the honest peers over time (fractions, on the test set)."""

    config: SimConfig
    history: list[tuple[int, float, float]]  # (step, mean honest accuracy, min honest accuracy)
    final_mean_acc: float
    final_min_acc: float
    final_premerge_acc: float  # mean honest accuracy at the last step just before its merge (worst point of a period)
    excluded: int  # contributions rejected by validation
    skipped: int  # merges a rule could not run (too few participants)
    wall_s: float


def _neighbours(cfg: SimConfig, i: int, rng: np.random.Generator) -> list[int]:
    n = cfg.n_peers
    if cfg.topology == "complete":
        return [j for j in range(n) if j != i]
    if cfg.topology == "ring":
        half = max(1, cfg.k // 2)
        return sorted({(i + d) % n for d in range(-half, half + 1) if d} - {i})
    others = [j for j in range(n) if j != i]
    return sorted(rng.choice(others, size=min(cfg.k, len(others)), replace=False).tolist())


def _little_is_enough_z(n: int, f: int) -> float:
    s = n // 2 + 1 - f
    return statistics.NormalDist().inv_cdf((n - s) / n) if 0 < (n - s) / n < 1 else 1.0


def _attack(cfg: SimConfig, honest: list[list[np.ndarray]], own: list[np.ndarray], rng) -> list[np.ndarray]:
    mu = [np.mean([h[t] for h in honest], axis=0) for t in range(len(own))]
    if cfg.attack == "sign-flip":
        return [(-(cfg.attack_scale or 4.0) * m).astype(np.float32) for m in mu]
    if cfg.attack == "noise":
        s = cfg.attack_scale or 1.0
        return [(m + rng.normal(0, s, m.shape)).astype(np.float32) for m in mu]
    if cfg.attack == "a-little-is-enough":
        z = _little_is_enough_z(cfg.n_peers, cfg.n_attackers)
        return [(m - z * np.std([h[t] for h in honest], axis=0)).astype(np.float32) for t, m in enumerate(mu)]
    s = cfg.attack_scale or float(cfg.n_peers)  # scaled: boost the poisoned model's deviation
    return [(m + s * (o - m)).astype(np.float32) for m, o in zip(mu, own)]


def _quiet(fn):
    def run(*a, **kw):
        with np.errstate(over="ignore", invalid="ignore"):  # diverging peers are part of the experiment
            return fn(*a, **kw)
    return run


@_quiet
def simulate(
    cfg: SimConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    shards: Sequence[np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> SimResult:
    """Run one swarm and report the honest peers' test accuracy.

    Args:
        cfg: the swarm's settings.
        x_train, y_train: the whole training set (features float32, integer labels).
        shards: one index array into the training set per peer (``learnae.data.partition``).
        x_test, y_test: the held-out set every honest peer is evaluated on.
    """
    cfg.check()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    n, h = cfg.n_peers, cfg.n_attackers
    honest_ids = list(range(n - h))
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    params = init_params(rng, n, x_train.shape[1], cfg.hidden, n_classes)
    velocity = [np.zeros_like(p) for p in params]
    y_used = y_train.copy()
    flip = np.zeros(n, bool)
    if cfg.attack == "scaled":
        flip[n - h :] = True  # the attackers' poisoned models learn flipped labels
    history_snap: list[list[list[np.ndarray]]] = []  # per merge period: each peer's published model
    mass = np.ones(n)
    history, excluded, skipped = [], 0, 0
    for step in range(1, cfg.steps + 1):
        idx = np.stack([s[rng.integers(0, len(s), cfg.batch_size)] for s in shards])
        yb = np.where(flip[:, None], n_classes - 1 - y_used[idx], y_used[idx])
        _, grads = loss_and_grads(params, x_train[idx], yb)
        for p, v, g in zip(params, velocity, grads):
            v *= cfg.momentum
            v -= cfg.lr * g
            p += v
        if step == cfg.steps:  # the drifted state, before the last merge pulls peers together
            pre = accuracy(params, x_test, y_test)[honest_ids]
        if step % cfg.merge_every == 0:
            e, s = _merge_round(cfg, params, velocity, mass, shards, history_snap, honest_ids, step, rng)
            excluded, skipped = excluded + e, skipped + s
        if step % cfg.eval_every == 0 or step == cfg.steps:
            acc = accuracy(params, x_test, y_test)[honest_ids]
            history.append((step, float(acc.mean()), float(acc.min())))
    return SimResult(cfg, history, history[-1][1], history[-1][2], float(pre.mean()), excluded, skipped,
                     time.perf_counter() - t0)


def _merge_round(cfg, params, velocity, mass, shards, history_snap, honest_ids, step, rng) -> tuple[int, int]:
    n = cfg.n_peers
    own = [[p[i].copy() for p in params] for i in range(n)]
    honest = [own[i] for i in honest_ids]
    published = [own[i] if i in honest_ids else _attack(cfg, honest, own[i], rng) for i in range(n)]
    history_snap.append(published)
    del history_snap[: -(cfg.max_lag + 1)]
    vel_before = [[v[i].copy() for v in velocity] for i in range(n)]
    pushes: dict[int, list[Contribution]] = {i: [] for i in range(n)}
    if cfg.rule == "push-sum":  # push: each peer splits its mass between itself and k targets
        honest_mass = float(np.mean(mass[honest_ids]))
        for j in range(n):
            targets = _neighbours(cfg, j, rng)
            if j in honest_ids:
                share = mass[j] / (len(targets) + 1)
                mass[j] = share
            else:  # an attacker claims a typical mass (never receiving, its real mass would vanish)
                share = honest_mass / (len(targets) + 1)
            for i in targets:
                pushes[i].append(Contribution(published[j], len(shards[j]), author=str(j), mass=share))
    excluded = skipped = 0
    for i in honest_ids:
        if not all(np.all(np.isfinite(t)) for t in own[i]):
            continue  # this peer's training diverged (NaN/inf): it stays broken, its neighbours exclude it
        if cfg.rule == "push-sum":
            contribs = pushes[i]
            extra = {"local_mass": mass[i]}
        else:
            contribs = []
            for j in _neighbours(cfg, i, rng):
                lag = int(rng.integers(0, min(cfg.max_lag, len(history_snap) - 1) + 1))
                contribs.append(Contribution(history_snap[-1 - lag][j], len(shards[j]), author=str(j),
                                             staleness_steps=lag * cfg.merge_every))
            extra = {"max_degree": len(contribs)} if cfg.rule == "consensus" else {}
        r = merge(own[i], contribs, cfg.rule, weight_cap=cfg.weight_cap, **cfg.rule_params, **extra)
        excluded += len(r.excluded)
        skipped += bool(r.skipped)
        if cfg.rule == "push-sum":
            mass[i] = r.mass
        for p, w in zip(params, r.weights):
            p[i] = w
        if cfg.momentum_on_merge == "reset":
            for v in velocity:
                v[i] = 0.0
        elif cfg.momentum_on_merge == "average":
            for t, v in enumerate(velocity):
                v[i] = r.local_weight * vel_before[i][t] + sum(
                    wt * vel_before[int(a)][t] for a, wt in r.influence.items() if int(a) in honest_ids
                )
    return excluded, skipped


def train_centralized(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
    steps: int = 1000, batch_size: int = 32, lr: float = 0.05, momentum: float = 0.9,
    hidden: int = 64, seed: int = 0, eval_every: int = 100,
) -> list[tuple[int, float]]:
    """The reference: one model, the same MLP and optimizer, on the pooled training set.

    Returns:
        ``(step, test accuracy)`` every ``eval_every`` steps and at the end.
    """
    cfg = SimConfig(n_peers=1, steps=steps, batch_size=batch_size, lr=lr, momentum=momentum, hidden=hidden,
                    rule="mean", topology="complete", merge_every=steps + 1, eval_every=eval_every, seed=seed)
    r = simulate(cfg, x_train, y_train, [np.arange(len(y_train))], x_test, y_test)
    return [(s, m) for s, m, _ in r.history]

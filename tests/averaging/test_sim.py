"""The in-process simulator: peers learn, merging spreads knowledge, attackers hurt naive rules."""

from __future__ import annotations

import numpy as np
import pytest

from bench.averaging_sim import ATTACKS, SimConfig, simulate, train_centralized
from learnae.data.partition import partition
from learnae.peer.faults import ATTACK_MODES


@pytest.fixture(scope="module")
def blobs():
    """Four well-separated Gaussian classes in 8 dimensions (fast, deterministic)."""
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 3, (4, 8))
    y = np.repeat(np.arange(4), 150)
    x = (centers[y] + rng.normal(0, 1, (len(y), 8))).astype(np.float32)
    test = rng.permutation(len(y))[:200]
    train = np.setdiff1d(np.arange(len(y)), test)
    return x[train], y[train], x[test], y[test]


def test_centralized_reference_learns(blobs):
    xtr, ytr, xte, yte = blobs
    curve = train_centralized(xtr, ytr, xte, yte, steps=150, hidden=16, eval_every=50)
    assert curve[-1][1] > 0.9


def test_merging_spreads_classes_a_peer_never_saw(blobs):
    xtr, ytr, xte, yte = blobs
    shards = partition(ytr, 4, "classes:1", seed=0)  # each peer sees one class only
    base = dict(n_peers=4, steps=200, hidden=16, eval_every=100, topology="complete")
    alone = simulate(SimConfig(**base, merge_every=10_000), xtr, ytr, shards, xte, yte)
    merged = simulate(SimConfig(**base, merge_every=2), xtr, ytr, shards, xte, yte)
    assert alone.final_mean_acc <= 0.3  # a one-class model is right about a quarter of the time
    assert merged.final_mean_acc > 0.85


def test_sign_flip_attackers_break_mean_but_not_median(blobs):
    xtr, ytr, xte, yte = blobs
    shards = partition(ytr, 6, "iid", seed=0)
    base = dict(n_peers=6, steps=200, hidden=16, eval_every=100, topology="complete", merge_every=5,
                attack="sign-flip", n_attackers=1, attack_scale=10.0)
    mean = simulate(SimConfig(**base, rule="mean"), xtr, ytr, shards, xte, yte)
    robust = simulate(SimConfig(**base, rule="median"), xtr, ytr, shards, xte, yte)
    assert robust.final_mean_acc > 0.9
    assert mean.final_mean_acc < robust.final_mean_acc - 0.2


def test_config_errors():
    with pytest.raises(ValueError, match="topology"):
        SimConfig(topology="star").check()
    with pytest.raises(ValueError, match="n_attackers"):
        SimConfig(attack="a-little-is-enough", n_attackers=0).check()
    with pytest.raises(ValueError, match="attack"):
        SimConfig(attack="alie", n_attackers=1).check()  # the old name: one vocabulary only
    with pytest.raises(ValueError, match="ledger"):
        SimConfig(attack="equivocate", n_attackers=1).check()


def test_attacks_are_the_peers_vocabulary():
    # A simulated attack must mean what the same name means in a scenario's attack event.
    assert set(ATTACKS) - {"none"} == set(ATTACK_MODES) - {"equivocate"}


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a != "none"])
def test_every_attack_runs(blobs, attack):
    xtr, ytr, xte, yte = blobs
    shards = partition(ytr, 4, "iid", seed=0)
    cfg = SimConfig(n_peers=4, steps=20, hidden=8, eval_every=10, merge_every=5, rule="median",
                    attack=attack, n_attackers=1)
    assert 0.0 <= simulate(cfg, xtr, ytr, shards, xte, yte).final_mean_acc <= 1.0

"""merge(): validation, exact small cases, the weight cap and parameter errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from learnae.averaging import RULES, AveragingError, Contribution, merge

# PeerConfig offers exactly these names; they must stay in step with the implementation.
EXPECTED_RULES = ("mean", "weighted", "staleness", "consensus", "push-sum",
                  "median", "trimmed-mean", "krum", "multi-krum", "centered-clip")


def model(*values: float) -> list[np.ndarray]:
    return [np.array(values, np.float32), np.full((2, 2), values[0], np.float32)]


def contrib(w, author, samples=10, **kw) -> Contribution:
    return Contribution(w, samples=samples, author=author, **kw)


def test_rule_names_match_the_config():
    assert RULES == EXPECTED_RULES


def test_mean_weighted_staleness_small_exact_cases():
    local = model(0.0, 0.0)
    a, b = contrib(model(3.0, 3.0), "A", samples=10), contrib(model(6.0, 6.0), "B", samples=30)
    assert merge(local, [a, b], "mean").weights[0].tolist() == [3.0, 3.0]
    r = merge(local, [a, b], "weighted", local_samples=0)
    assert r.weights[0].tolist() == pytest.approx([0.25 * 3 + 0.75 * 6] * 2)
    assert r.influence == pytest.approx({"A": 0.25, "B": 0.75}) and r.local_weight == 0.0
    # staleness: the same model 3 steps old counts (1+3)^-1 = 1/4 as much with exponent 1
    old = contrib(model(4.0, 4.0), "OLD", staleness_steps=3)
    r = merge(local, [old], "staleness", exponent=1.0)
    assert r.influence["OLD"] == pytest.approx(0.25 / 1.25)
    r = merge(local, [contrib(model(4.0, 4.0), "S", staleness_s=10.0)], "staleness", exponent=0, half_life_s=10.0)
    assert r.influence["S"] == pytest.approx(0.5 / 1.5)


def test_consensus_step_and_its_stability_bound():
    local = model(0.0)
    r = merge(local, [contrib(model(1.0), "A"), contrib(model(2.0), "B")], "consensus", eps=0.25)
    assert r.weights[0].tolist() == [0.25 * 1 + 0.25 * 2]
    for eps in (0.5, 0.9, 0.0, -0.1):  # 1/max_degree = 0.5 is already unstable
        with pytest.raises(AveragingError, match="eps"):
            merge(local, [contrib(model(1.0), "A"), contrib(model(2.0), "B")], "consensus", eps=eps)
    with pytest.raises(AveragingError, match="max_degree"):
        merge(local, [contrib(model(1.0), "A"), contrib(model(2.0), "B")], "consensus", max_degree=1)


def test_push_sum_weights_by_mass_and_returns_the_new_mass():
    r = merge(model(0.0), [contrib(model(3.0), "A", mass=0.5)], "push-sum", local_mass=1.0)
    assert r.weights[0].tolist() == pytest.approx([1.0])
    assert r.mass == pytest.approx(1.5)


def test_krum_picks_the_honest_cluster():
    local = model(0.0)
    honest = [contrib(model(v), f"H{i}") for i, v in enumerate([0.1, -0.1, 0.05, 0.0])]
    evil = [contrib(model(100.0), "E1"), contrib(model(-50.0), "E2")]
    for rule in ("krum", "multi-krum"):
        r = merge(local, honest + evil, rule, f=2)
        assert abs(float(r.weights[0][0])) <= 0.1
        assert r.influence["E1"] == 0.0 and r.influence["E2"] == 0.0


def test_median_and_trimmed_mean_small_case():
    local = model(0.0)
    cs = [contrib(model(v), f"P{v}") for v in (1.0, 2.0, 1000.0)]
    assert merge(local, cs, "median").weights[0].tolist() == [1.5]
    assert merge(local, cs, "trimmed-mean", f=1).weights[0].tolist() == [1.5]


def test_too_few_for_krum_keeps_the_local_model(caplog):
    local = model(0.0)
    with caplog.at_level(logging.WARNING):
        r = merge(local, [contrib(model(9.0), "A")], "krum", f=1)
    assert r.skipped and "at least 5" in r.skipped
    assert r.weights[0].tolist() == [0.0] and r.influence == {"A": 0.0}


@pytest.mark.parametrize("rule, need", [("median", 3), ("trimmed-mean", 3), ("centered-clip", 3),
                                        ("krum", 5), ("multi-krum", 5)])
def test_every_robust_rule_keeps_the_local_model_below_its_minimum_panel(rule, need):
    # A lone hostile neighbour: with two participants "median" would be a plain mean of both.
    local = model(1.0)
    for n in range(2, need):
        contribs = [contrib(model(-1000.0), f"A{i}") for i in range(n - 1)]
        r = merge(local, contribs, rule)
        assert r.skipped and r.weights[0].tolist() == [1.0], (rule, n)
    honest = [contrib(model(1.0 + 0.1 * i), f"H{i}") for i in range(need - 2)]
    r = merge(local, [*honest, contrib(model(-1000.0), "evil")], rule)  # the minimum panel, one hostile
    assert not r.skipped and abs(r.weights[0][0]) < 2.0, (rule, r.weights[0])


@pytest.mark.parametrize("rule", EXPECTED_RULES)
@pytest.mark.parametrize(
    "bad, reason",
    [
        (lambda: [np.array([np.nan], np.float32), np.zeros((2, 2), np.float32)], "non-finite"),
        (lambda: [np.array([np.inf], np.float32), np.zeros((2, 2), np.float32)], "non-finite"),
        (lambda: [np.zeros(2, np.float32), np.zeros((2, 2), np.float32)], "shape"),
        (lambda: [np.zeros(1, np.float64), np.zeros((2, 2), np.float64)], "dtype"),
        (lambda: [np.zeros(1, np.float32)], "tensor-count"),
        (lambda: "not tensors", "not-a-list"),
    ],
)
def test_bad_contributions_are_excluded_and_never_reach_the_result(rule, bad, reason):
    local = model(0.0)
    good = [contrib(model(v), f"G{v}") for v in (1.0, 2.0, 3.0, 4.0)]
    evil = Contribution(bad(), samples=10**9, author="EVIL", mass=1e9)
    clean = merge(local, good, rule)
    dirty = merge(local, good[:2] + [evil] + good[2:], rule)
    assert dirty.excluded == {"EVIL": reason}
    assert "EVIL" not in dirty.influence
    for a, b in zip(clean.weights, dirty.weights):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "kw", [dict(samples=-1), dict(samples=1.5), dict(staleness_steps=-2),
           dict(staleness_s=float("nan")), dict(mass=0.0), dict(mass=float("inf"))],
)
def test_bad_metadata_is_excluded(kw):
    fields = dict(samples=1) | kw
    r = merge(model(0.0), [Contribution(model(1.0), author="X", **fields)], "mean")
    assert r.excluded == {"X": "bad-metadata"} and r.weights[0].tolist() == [0.0]


def test_duplicate_author_counts_once():
    r = merge(model(0.0), [contrib(model(3.0), "A"), contrib(model(100.0), "A")], "mean")
    assert r.excluded == {"A": "duplicate-author"}
    assert r.weights[0].tolist() == [1.5]


def test_anonymous_contributions_are_keyed_by_position():
    r = merge(model(0.0), [contrib(model(1.0), ""), contrib(model(2.0), "")], "mean")
    assert set(r.influence) == {"#0", "#1"}


def test_cap_stops_a_liar_claiming_a_billion_samples():
    local = model(0.0)
    honest = contrib(model(1.0), "H", samples=100)
    liar = contrib(model(1000.0), "LIAR", samples=10**9)
    uncapped = merge(local, [honest, liar], "weighted", local_samples=100)
    assert uncapped.weights[0][0] > 999
    r = merge(local, [honest, liar], "weighted", local_samples=100, weight_cap=0.25)
    assert r.influence["LIAR"] == pytest.approx(0.25)
    assert r.local_weight + sum(r.influence.values()) == pytest.approx(1.0)
    assert r.weights[0][0] == pytest.approx(0.25 * 1000 + r.influence["H"] * 1.0)


def test_cap_applies_per_coordinate_under_median():
    local = model(0.0, 0.0)
    cs = [contrib(model(5.0, 5.0), "A"), contrib(model(6.0, 6.0), "B")]
    r = merge(local, cs, "median", weight_cap=0.5)  # median of 3 picks A everywhere: capped to 0.5
    assert r.weights[0].tolist() == [2.5, 2.5]
    assert r.influence == pytest.approx({"A": 0.5, "B": 0.0}) and r.local_weight == pytest.approx(0.5)


def test_parameter_errors_name_the_problem():
    local = model(0.0)
    with pytest.raises(AveragingError, match="unknown averaging rule 'avg'"):
        merge(local, [], "avg")
    with pytest.raises(AveragingError, match="does not take eps"):
        merge(local, [], "krum", eps=0.1)
    with pytest.raises(AveragingError, match="weight_cap"):
        merge(local, [], "mean", weight_cap=0.0)
    with pytest.raises(AveragingError, match="local tensor 0"):
        merge([np.array([np.nan], np.float32)], [], "mean")
    assert issubclass(AveragingError, ValueError)


def test_no_contributions_returns_the_local_model():
    local = model(1.0, 2.0)
    for rule in EXPECTED_RULES:
        r = merge(local, [], rule)
        assert all(np.array_equal(a, b) for a, b in zip(r.weights, local))
        assert r.local_weight == pytest.approx(1.0) and r.influence == {}

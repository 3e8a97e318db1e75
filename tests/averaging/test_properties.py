"""Hypothesis properties of the averaging rules (the issue's list)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from learnae.averaging import RULES, Contribution, merge
from learnae.averaging.robust import MIN_PANEL

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPES = [(3,), (2, 2)]


@st.composite
def models(draw, n_min=1, n_max=6, scale=10.0):
    """n models with the same structure (a vector and a matrix), float64 for clean bounds."""
    n = draw(st.integers(n_min, n_max))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return [[rng.normal(0, scale, s) for s in SHAPES] for _ in range(n)]


def flat(w) -> np.ndarray:
    return np.concatenate([np.ravel(t) for t in w])


def contribs(ws, prefix="P"):
    return [Contribution(w, samples=1 + i, author=f"{prefix}{i}", staleness_steps=i, mass=0.5 + i)
            for i, w in enumerate(ws)]


@FAST
@given(st.sampled_from(RULES), st.integers(0, 6), st.integers(0, 2**32 - 1), st.sampled_from([1.0, 0.5, 0.2]))
def test_merging_identical_models_is_the_identity(rule, k, seed, cap):
    w = [np.random.default_rng(seed).normal(0, 3, s).astype(np.float32) for s in SHAPES]
    r = merge(w, contribs([[t.copy() for t in w] for _ in range(k)]), rule, weight_cap=cap)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(r.weights, w))


@FAST
@given(st.sampled_from(["mean", "weighted", "staleness", "consensus", "push-sum"]), models(2, 7),
       st.sampled_from([1.0, 0.3]))
def test_linear_rules_stay_in_the_convex_hull(rule, ws, cap):
    local, others = ws[0], ws[1:]
    r = merge(local, contribs(others), rule, weight_cap=cap)
    coeffs = np.array([r.local_weight] + [r.influence[f"P{i}"] for i in range(len(others))])
    assert np.all(coeffs >= 0) and abs(coeffs.sum() - 1) < 1e-12
    assert np.all(coeffs[1:] <= cap + 1e-12)
    pts = np.stack([flat(w) for w in ws])
    assert np.allclose(flat(r.weights), coeffs @ pts, atol=1e-9)
    assert np.all(flat(r.weights) <= pts.max(axis=0) + 1e-9) and np.all(flat(r.weights) >= pts.min(axis=0) - 1e-9)


@FAST
@given(st.sampled_from(RULES), models(2, 7), st.sampled_from([0.6, 0.3, 0.1]))
def test_weight_cap_bounds_every_neighbour_under_every_rule(rule, ws, cap):
    r = merge(ws[0], contribs(ws[1:]), rule, weight_cap=cap)
    assert max(r.influence.values()) <= cap + 1e-12
    assert abs(r.local_weight + sum(r.influence.values()) - 1) < 1e-9


@st.composite
def connected_graphs(draw):
    n = draw(st.integers(2, 6))
    edges = {(draw(st.integers(0, i - 1)), i) for i in range(1, n)}  # a random spanning tree
    for _ in range(draw(st.integers(0, n))):
        a, b = sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True)))
        edges.add((a, b))
    nbrs = {i: sorted({b for a, b in edges if a == i} | {a for a, b in edges if b == i}) for i in range(n)}
    return n, nbrs


@settings(max_examples=15, deadline=None)
@given(connected_graphs(), st.integers(0, 2**32 - 1))
def test_consensus_on_a_connected_graph_converges_to_the_average(graph, seed):
    n, nbrs = graph
    x = [[v] for v in np.random.default_rng(seed).normal(0, 5, (n, 4))]
    target = np.mean([w[0] for w in x], axis=0)
    max_degree = max(len(v) for v in nbrs.values())
    for _ in range(600):  # synchronous rounds: everyone merges the previous round's models
        x = [merge(x[i], [Contribution(x[j], 1, author=str(j)) for j in nbrs[i]], "consensus",
                   max_degree=max_degree).weights for i in range(n)]
    for w in x:
        assert np.allclose(w[0], target, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_push_sum_stays_unbiased_under_random_asynchronous_schedules(n, seed):
    rng = np.random.default_rng(seed)
    x = [[v] for v in rng.normal(0, 5, (n, 3))]
    m = list(rng.uniform(0.2, 2.0, n))  # unequal starting masses: the target is the mass-weighted mean
    target = sum(mi * xi[0] for mi, xi in zip(m, x)) / sum(m)
    total_mass = sum(m)
    for _ in range(400):
        s, r = rng.choice(n, size=2, replace=False)  # s pushes to r, nobody else acts this tick
        m[s] /= 2
        res = merge(x[r], [Contribution(x[s], 1, author=str(s), mass=m[s])], "push-sum", local_mass=m[r])
        x[r], m[r] = res.weights, res.mass
        invariant = sum(mi * xi[0] for mi, xi in zip(m, x)) / sum(m)
        assert np.allclose(invariant, target, atol=1e-9)  # unbiased at every instant
        assert abs(sum(m) - total_mass) < 1e-9  # the merge hands back exactly the mass it received
    for w in x:
        assert np.allclose(w[0], target, atol=1e-3)


# -- robust rules: f arbitrary contributions among n participants (local is honest) --------

@st.composite
def attacked(draw, need):
    """(local, contributions, honest points, f): honest models plus f arbitrary ones."""
    f = draw(st.integers(0, 3))
    n = draw(st.integers(need(f), need(f) + 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    honest = [[rng.normal(0, 1, s) for s in SHAPES] for _ in range(n - f)]
    style = draw(st.sampled_from(["huge", "flip", "near", "inf-ish"]))
    mean_h = [np.mean([h[t] for h in honest], axis=0) for t in range(len(SHAPES))]
    byz = []
    for _ in range(f):
        if style == "huge":
            byz.append([rng.normal(0, 1e6, s) for s in SHAPES])
        elif style == "flip":
            byz.append([-20 * t for t in mean_h])
        elif style == "near":  # just outside the honest cloud, to sneak past distance tests
            byz.append([t + 3.0 for t in mean_h])
        else:
            byz.append([np.full(s, 1e150) for s in SHAPES])
    others = honest[1:] + byz
    order = rng.permutation(len(others))
    cs = [Contribution(others[i], 1, author=f"P{i}") for i in order]
    return honest[0], cs, honest, f


def _honest_stats(honest):
    pts = np.stack([flat(h) for h in honest])
    mu = pts.mean(axis=0)
    diam = max(np.linalg.norm(a - b) for a in pts for b in pts)
    return pts, mu, diam


@FAST
@given(attacked(lambda f: 2 * f + 1))
def test_median_and_trimmed_mean_stay_in_the_honest_range(case):
    local, cs, honest, f = case
    pts, _, _ = _honest_stats(honest)
    for rule, kw in (("median", {}), ("trimmed-mean", {"f": f})):
        r = flat(merge(local, cs, rule, **kw).weights)
        assert np.all(r >= pts.min(axis=0) - 1e-9) and np.all(r <= pts.max(axis=0) + 1e-9), rule


@FAST
@given(attacked(lambda f: 2 * f + 3))
def test_krum_and_multi_krum_stay_near_the_honest_mean(case):
    local, cs, honest, f = case
    n = len(cs) + 1
    _, mu, diam = _honest_stats(honest)
    bound = (np.sqrt(n - f - 2) + 1) * diam + 1e-9
    for rule in ("krum", "multi-krum"):
        r = merge(local, cs, rule, f=f)
        if n < MIN_PANEL[rule]:  # below the minimum panel (f=0 asked): the local model is kept
            assert r.skipped and np.array_equal(flat(r.weights), flat(local))
            continue
        assert not r.skipped
        assert np.linalg.norm(flat(r.weights) - mu) <= bound, rule


@FAST
@given(attacked(lambda f: 2 * f + 1), st.floats(1.0, 3.0))
def test_centered_clip_moves_at_most_f_over_n_of_tau_per_attacker(case, slack):
    local, cs, honest, f = case
    n = len(cs) + 1
    _, mu, diam = _honest_stats(honest)
    tau = diam * slack + 1e-12  # tau >= honest spread: honest models pass unclipped
    r = merge(local, cs, "centered-clip", tau=tau)
    if n < MIN_PANEL["centered-clip"]:  # below the minimum panel: the local model is kept
        assert (r.skipped or n == 1) and np.array_equal(flat(r.weights), flat(local))
        return
    x0 = flat(local)
    assert np.linalg.norm(flat(r.weights) - mu) <= f / n * (np.linalg.norm(x0 - mu) + tau) + 1e-9
    # several iterations: every step moves at most tau, whatever the attackers send
    r3 = merge(local, cs, "centered-clip", tau=tau, iterations=3)
    assert np.linalg.norm(flat(r3.weights) - x0) <= 3 * tau + 1e-9


@FAST
@given(st.sampled_from(RULES), models(3, 6), st.sampled_from(["nan", "inf", "shape", "count", "dtype"]),
       st.integers(0, 10))
def test_a_nan_or_wrong_shape_contribution_never_reaches_the_result(rule, ws, kind, pos):
    local, others = ws[0], ws[1:]
    bad = [t.copy() for t in others[0]]
    if kind == "nan":
        bad[1].flat[0] = np.nan
    elif kind == "inf":
        bad[0][-1] = -np.inf
    elif kind == "shape":
        bad[1] = np.zeros((2, 3))
    elif kind == "count":
        bad = bad[:1]
    else:
        bad = [t.astype(np.float32) for t in bad]
    good = contribs(others)
    cs = list(good)
    cs.insert(pos % (len(cs) + 1), Contribution(bad, samples=10**6, author="BAD", mass=100.0))
    r = merge(local, cs, rule)
    assert "BAD" in r.excluded and "BAD" not in r.influence
    clean = merge(local, good, rule)
    assert all(np.array_equal(a, b) for a, b in zip(r.weights, clean.weights))
    assert all(np.all(np.isfinite(t)) for t in r.weights)

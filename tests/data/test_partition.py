"""learnae.data.partition: disjoint, deterministic shards with the promised label skew."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnae.data.partition import class_histogram, parse_scheme, partition
from learnae.errors import UserError

FAST = settings(max_examples=40, deadline=None)
SCHEMES = ["iid", "dirichlet:0.3", "dirichlet:100", "classes:1", "classes:2", "classes:3"]


def digits_like_labels(n_per_class: int = 40, n_classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(n_classes), n_per_class))


@FAST
@given(
    scheme=st.sampled_from(SCHEMES),
    n_shards=st.integers(1, 12),
    seed=st.integers(0, 2**31),
    n_classes=st.integers(3, 10),
)
def test_shards_are_sorted_disjoint_and_deterministic(scheme, n_shards, seed, n_classes):
    labels = digits_like_labels(30, n_classes, seed=seed % 7)
    shards = partition(labels, n_shards, scheme, seed)
    assert len(shards) == n_shards
    for s in shards:
        assert s.dtype == np.int64
        assert np.all(np.diff(s) > 0)  # sorted, no repeats
        assert s.size == 0 or (s[0] >= 0 and s[-1] < len(labels))
    allidx = np.concatenate(shards)
    assert len(np.unique(allidx)) == len(allidx)  # pairwise disjoint
    again = partition(labels, n_shards, scheme, seed)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again))
    if not scheme.startswith("classes"):
        assert len(allidx) == len(labels)  # iid and dirichlet cover every sample
        assert min(len(s) for s in shards) > 0


def test_different_seeds_give_different_shards():
    labels = digits_like_labels()
    a = partition(labels, 4, "iid", seed=1)
    b = partition(labels, 4, "iid", seed=2)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_iid_shards_are_balanced_in_size_and_classes():
    labels = digits_like_labels(100)
    shards = partition(labels, 8, "iid", seed=3)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    for s in shards:
        assert len(class_histogram(labels, s)) == 10


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_classes_k_gives_exactly_k_classes_per_shard(k):
    labels = digits_like_labels()
    shards = partition(labels, 8, f"classes:{k}", seed=5)
    for s in shards:
        assert len(np.unique(labels[s])) == k
    # 8 shards x 2 classes cover all 10 digits, and every sample of a covered class is used
    if k * 8 >= 10:
        assert len(np.concatenate(shards)) == len(labels)


def test_classes_more_than_available_is_a_user_error():
    with pytest.raises(UserError, match="classes:11"):
        partition(digits_like_labels(), 4, "classes:11", seed=0)


def test_dirichlet_small_alpha_is_skewed_large_alpha_is_not():
    labels = digits_like_labels(200)

    def dominant_share(scheme: str) -> float:
        shards = partition(labels, 8, scheme, seed=11)
        shares = [max(class_histogram(labels, s).values()) / len(s) for s in shards]
        return float(np.mean(shares))

    skewed, near_iid = dominant_share("dirichlet:0.1"), dominant_share("dirichlet:1000")
    assert skewed > 0.5  # most of a shard is one class
    assert near_iid < 0.2  # about 1/10 per class
    assert dominant_share("dirichlet:0.5") > near_iid


@pytest.mark.parametrize(
    "bad", ["", "IID", "iid:2", "dirichlet", "dirichlet:", "dirichlet:-1", "dirichlet:0",
            "dirichlet:abc", "classes:0", "classes:-2", "classes:two", "label-skew"],
)
def test_bad_scheme_strings_raise_a_user_error_naming_it_and_the_forms(bad):
    with pytest.raises(UserError) as info:
        partition(digits_like_labels(), 4, bad, seed=0)
    msg = str(info.value)
    assert repr(bad) in msg and "dirichlet:ALPHA" in msg and "classes:K" in msg and "\n" not in msg


def test_bad_arguments_are_user_errors():
    labels = digits_like_labels(2)
    with pytest.raises(UserError, match="n_shards"):
        partition(labels, 0, "iid", seed=0)
    with pytest.raises(UserError, match="fewer shards"):
        partition(labels, 1000, "iid", seed=0)
    with pytest.raises(UserError, match="1-D integer"):
        partition(labels.astype(float), 2, "iid", seed=0)


def test_parse_scheme():
    assert parse_scheme("iid") == ("iid", None)
    assert parse_scheme("dirichlet:0.5") == ("dirichlet", 0.5)
    assert parse_scheme("classes:2") == ("classes", 2)

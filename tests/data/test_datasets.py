"""Loading datasets (digits, .npz) and splitting them deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from learnae.data import DatasetError, load_dataset, parse_dataset_spec, split_dataset
from learnae.errors import UserError


def test_digits_is_shaped_for_the_presets_and_scaled():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 8, 8, 1) and ds.x.dtype == np.float32
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert ds.num_classes == 10 and sorted(set(ds.y.tolist())) == list(range(10))
    from sklearn.datasets import load_digits

    reference = load_digits()  # the same data as scikit-learn's own loader, in the same order
    np.testing.assert_array_equal(ds.x[..., 0] * 16, reference.images)
    np.testing.assert_array_equal(ds.y, reference.target)


def test_npz_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 4, 4)).astype(np.float64)
    y = np.arange(50) % 3
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    ds = load_dataset(str(tmp_path / "mine.npz"))
    assert ds.x.dtype == np.float32 and ds.x.shape == (50, 4, 4)
    np.testing.assert_allclose(ds.x, x.astype(np.float32))
    assert ds.y.tolist() == y.tolist() and ds.num_classes == 3 and ds.name == "mine"


def _error(spec) -> str:
    with pytest.raises(UserError) as info:
        load_dataset(spec)
    assert isinstance(info.value, DatasetError)
    return str(info.value)


def test_missing_file_names_the_file(tmp_path):
    msg = _error(str(tmp_path / "nope.npz"))
    assert "nope.npz" in msg and "does not exist" in msg


def test_npz_without_y_names_the_missing_array(tmp_path):
    np.savez(tmp_path / "noy.npz", x=np.zeros((3, 2)))
    msg = _error(str(tmp_path / "noy.npz"))
    assert "'y'" in msg and "np.savez" in msg


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path):
    x = np.empty(3, dtype=object)
    x[:] = [{"a": 1}, None, "boom"]
    np.savez(tmp_path / "obj.npz", x=x, y=np.arange(3))
    msg = _error(str(tmp_path / "obj.npz"))
    assert "obj.npz" in msg


@pytest.mark.parametrize("x, y, fragment", [
    (np.zeros((4, 2)), np.array([0, 1, 2]), "one label per sample"),
    (np.zeros((3, 2)), np.array([0.5, 1, 2]), "integer class labels"),
    (np.zeros((3, 2)), np.array([0, -1, 2]), "integer class labels"),
    (np.full((3, 2), np.nan), np.array([0, 1, 2]), "NaN"),
])
def test_npz_with_bad_arrays_says_what_is_wrong(tmp_path, x, y, fragment):
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    assert fragment in _error(str(tmp_path / "bad.npz"))


def test_not_an_npz_file(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert "junk.npz" in _error(str(tmp_path / "junk.npz"))


def test_unknown_spec_lists_the_accepted_forms():
    msg = _error("mnist")
    assert "'mnist'" in msg and "digits" in msg and ".npz" in msg


def test_a_cid_spec_is_recognised():
    spec = parse_dataset_spec("bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq")
    assert spec.kind == "cid"
    with pytest.raises(DatasetError, match="fetched"):
        load_dataset(spec.value)


def test_split_is_deterministic_disjoint_and_stratified():
    ds = load_dataset("digits")
    a, b = split_dataset(ds, seed=3), split_dataset(ds, seed=3)
    for pa, pb in ((a.train, b.train), (a.validation, b.validation), (a.test, b.test)):
        np.testing.assert_array_equal(pa.x, pb.x)
        np.testing.assert_array_equal(pa.y, pb.y)
    assert len(a.train) + len(a.validation) + len(a.test) == len(ds)
    assert 0.18 < len(a.test) / len(ds) < 0.22 and 0.08 < len(a.validation) / len(ds) < 0.12
    # every class is in the test set in about its share
    assert min(a.test.class_histogram()) >= 30
    # disjoint: no sample of test appears in train (digits has no exact duplicates across them)
    train_rows = {r.tobytes() for r in a.train.x}
    assert sum(r.tobytes() in train_rows for r in a.test.x) <= 2
    other = split_dataset(ds, seed=4)
    assert not np.array_equal(other.test.y, a.test.y) or not np.array_equal(other.test.x, a.test.x)


def test_split_rejects_bad_fractions():
    with pytest.raises(DatasetError):
        split_dataset(load_dataset("digits"), seed=0, validation=0.6, test=0.5)


def test_save_npz_round_trips(tmp_path):
    from learnae.data.datasets import save_npz

    ds = load_dataset("digits").subset(np.arange(40))
    save_npz(ds, tmp_path / "sub" / "part.npz")
    back = load_dataset(str(tmp_path / "sub" / "part.npz"))
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.y, ds.y)

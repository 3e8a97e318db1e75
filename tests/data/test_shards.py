"""Selecting this peer's shard, and shard bytes without pickle."""

from __future__ import annotations

import numpy as np
import pytest

from learnae.data import DatasetError, InvalidShardError, decode_shard, encode_shard, load_dataset, select_shard
from learnae.errors import RemoteError, UserError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_select_shard_is_deterministic_and_shards_are_disjoint(digits):
    shards = [select_shard(digits, f"{i}/4", partition="classes:3", seed=7) for i in range(4)]
    again = select_shard(digits, "2/4", partition="classes:3", seed=7)
    np.testing.assert_array_equal(again.x, shards[2].x)
    np.testing.assert_array_equal(again.y, shards[2].y)
    for s in shards:
        assert len(set(s.y.tolist())) == 3 and s.num_classes == 10
    rows = [{r.tobytes() for r in s.x} for s in shards]
    assert sum(len(r) for r in rows) == len(set().union(*rows))  # no sample in two shards


def test_iid_shards_cover_the_dataset(digits):
    sizes = [len(select_shard(digits, f"{i}/3", partition="iid", seed=0)) for i in range(3)]
    assert sum(sizes) == len(digits) and max(sizes) - min(sizes) <= 1


def test_empty_shard_means_everything(digits):
    assert select_shard(digits, "", partition="iid", seed=0) is digits


@pytest.mark.parametrize("shard, fragment", [
    ("4/4", "out of range"), ("7/3", "out of range"), ("a/b", "I/N"), ("1/0", "I/N"), ("1-4", "I/N"),
])
def test_bad_shard_strings_are_user_errors(digits, shard, fragment):
    with pytest.raises(DatasetError) as info:
        select_shard(digits, shard, partition="iid", seed=0)
    assert fragment in str(info.value) and repr(shard) in str(info.value)


def test_bad_partition_is_a_user_error(digits):
    with pytest.raises(UserError, match="dirichlet:ALPHA"):
        select_shard(digits, "0/2", partition="skewed", seed=0)


def test_shard_bytes_round_trip_and_are_deterministic(digits):
    shard = select_shard(digits, "1/4", partition="dirichlet:0.5", seed=1)
    data = encode_shard(shard)
    assert data == encode_shard(shard)
    back = decode_shard(data)
    np.testing.assert_array_equal(back.x, shard.x)
    np.testing.assert_array_equal(back.y, shard.y)
    assert back.num_classes == 10 and back.name == shard.name


def _tamper(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


def test_malformed_shard_bytes_are_rejected_as_remote_errors(digits):
    from safetensors.numpy import save

    good = encode_shard(digits.subset(np.arange(20)))
    bad = [
        b"",
        b"\xff" * 16,
        good[:-10],
        _tamper(good, b"learnae-shard/1", b"learnae-shard/9"),
        save({"x": np.zeros((2, 2), np.float32), "y": np.zeros(2, np.int64)}),  # no metadata
        save({"x": np.zeros((2, 2), np.float32), "y": np.zeros(3, np.int64)},
             metadata={"learnae": '{"format":"learnae-shard/1","name":"","num_classes":10}'}),
        save({"x": np.zeros((2, 2), np.float32), "y": np.array([0, 12], np.int64)},
             metadata={"learnae": '{"format":"learnae-shard/1","name":"","num_classes":10}'}),
        save({"x": np.full((2, 2), np.inf, np.float32), "y": np.array([0, 1], np.int64)},
             metadata={"learnae": '{"format":"learnae-shard/1","name":"","num_classes":10}'}),
        save({"x": np.zeros((2, 2), np.float32), "y": np.zeros(2, np.int64), "z": np.zeros(1, np.int8)},
             metadata={"learnae": '{"format":"learnae-shard/1","name":"","num_classes":10}'}),
    ]
    reasons = ["truncated", "truncated", "bad-tensors", "bad-format", "bad-format", "bad-tensors", "bad-labels",
               "not-finite", "bad-tensors"]
    for data, reason in zip(bad, reasons, strict=True):
        with pytest.raises(InvalidShardError) as info:
            decode_shard(data)
        assert isinstance(info.value, RemoteError) and info.value.reason == reason


@pytest.mark.parametrize("header", [
    b"[" * 100_000 + b"]" * 100_000,  # a RecursionError in json before
    b'{"__metadata__":{"learnae":"' + b"[" * 5000 + b'"}}',
    b'{"__metadata__":[1]}',
    b'{"__metadata__":{"learnae":"{\\"format\\":\\"learnae-shard/1\\",\\"num_classes\\":Infinity}"}}',
    b'{"__metadata__":{"learnae":"{\\"format\\":\\"learnae-shard/1\\",\\"num_classes\\":2}"},'
    b'"x":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]},"y":{"dtype":"I64","shape":[1],"data_offsets":[4,12]}}',
])
def test_hostile_shard_headers_are_rejected_not_crashes(header):
    data = len(header).to_bytes(8, "little") + header + b"\0" * 12
    with pytest.raises(InvalidShardError) as info:
        decode_shard(data)
    assert info.value.reason != "malformed"  # a check said no, not the decoder's guard


def test_peer_data_shares_a_held_out_test_set():
    from learnae.data.shards import prepare_peer_data

    a = prepare_peer_data("digits", "0/2", partition="iid", seed=0)
    b = prepare_peer_data("digits", "1/2", partition="iid", seed=0)
    np.testing.assert_array_equal(a.test.x, b.test.x)
    np.testing.assert_array_equal(a.validation.y, b.validation.y)
    test_rows = {r.tobytes() for r in a.test.x}
    assert sum(r.tobytes() in test_rows for r in np.concatenate([a.train.x, b.train.x])) <= 2
    assert len(a.train) + len(b.train) + len(a.validation) + len(a.test) == 1797
    with pytest.raises(DatasetError, match="out of range"):
        prepare_peer_data("digits", "2/2", seed=0)


def test_a_fetched_shard_holds_out_a_validation_part(digits):
    from learnae.data.shards import split_local_shard

    shard = select_shard(digits, "0/4", partition="classes:2", seed=0)
    parts = split_local_shard(shard, seed=0)
    assert len(parts.test) == 0 and len(parts.train) + len(parts.validation) == len(shard)
    assert set(parts.validation.y.tolist()) == set(shard.y.tolist())


def test_write_shard_files_holds_the_peers_test_split_out(digits, tmp_path):
    from learnae.data.datasets import split_dataset
    from learnae.data.shards import hold_out_test, prepare_peer_data, write_shard_files

    files = write_shard_files(digits, 3, tmp_path / "out", partition="classes:4", seed=1)
    assert [p.name for p, _ in files.shards] == [f"shard-{i}-of-3.npz" for i in range(3)]
    rest = hold_out_test(digits, seed=1).train
    for i, (path, shard) in enumerate(files.shards):
        back = load_dataset(str(path))
        np.testing.assert_array_equal(back.y, shard.y)
        np.testing.assert_array_equal(back.y, select_shard(rest, f"{i}/3", partition="classes:4", seed=1).y)
        assert back.num_classes == 10  # four classes in the file, the dataset's ten in the model
    # test.npz is exactly the split every peer started on `digits --seed 1` evaluates on ...
    test_path, test = files.test
    peers_test = split_dataset(digits, seed=1).test
    assert test_path.name == "test.npz"
    np.testing.assert_array_equal(load_dataset(str(test_path)).x, peers_test.x)
    np.testing.assert_array_equal(test.y, peers_test.y)
    # ... no shard holds one of its samples ...
    held = {row.tobytes() for row in test.x}
    assert not any(row.tobytes() in held for _, s in files.shards for row in s.x)
    # ... and a peer started on a shard file trains on all of it and evaluates on test.npz
    parts = prepare_peer_data(str(files.shards[1][0]), seed=1)
    assert len(parts.train) == len(files.shards[1][1]) and len(parts.validation) == 0
    np.testing.assert_array_equal(parts.test.y, peers_test.y)


def test_a_shard_file_copied_without_its_test_file_is_not_split_again(digits, tmp_path):
    from learnae.data.shards import prepare_peer_data, write_shard_files

    files = write_shard_files(digits, 2, tmp_path / "out", seed=0)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "mine.npz").write_bytes(files.shards[0][0].read_bytes())
    parts = prepare_peer_data(str(alone / "mine.npz"), seed=0)
    assert len(parts.train) == len(files.shards[0][1]) and len(parts.test) == 0  # no test, not a slice of its own

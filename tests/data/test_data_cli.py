"""`learnae data split|publish|inspect`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess

from learnae.data.datasets import load_npz


def run(learnae_cli, *args):
    return subprocess.run([*learnae_cli, "data", *args], capture_output=True, text=True, timeout=120)


def test_split_writes_disjoint_loadable_shards(learnae_cli, learnae_home, tmp_path):
    proc = run(learnae_cli, "split", "digits", "--shards", "4", "--partition", "classes:3",
               "-o", str(tmp_path / "shards"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    shards, (test,) = rows[:-1], rows[-1:]
    assert [r["index"] for r in shards] == [0, 1, 2, 3] and {r["role"] for r in shards} == {"shard"}
    for r in shards:
        ds = load_npz(r["path"])
        assert len(ds) == r["samples"]
        assert sum(1 for c in r["classes"] if c) == 3  # classes:3 gives three classes per shard
    assert test["role"] == "test" and test["path"].endswith("test.npz") and test["samples"] == 359
    assert all(test["classes"])  # every class is in the held-out test split


def test_publish_then_inspect_round_trip(learnae_cli, learnae_home):
    proc = run(learnae_cli, "publish", "digits", "--shards", "3", "--partition", "iid")
    assert proc.returncode == 0, proc.stderr
    manifest = proc.stdout.strip()
    assert manifest.startswith("baf") and "\n" not in manifest  # the CID alone on stdout
    info = json.loads(run(learnae_cli, "inspect", manifest, "--format", "json").stdout)
    assert info["manifest"] == manifest
    assert len(info["shards"]) == 3 and info["samples"] == 1797 and info["test"]["samples"] == 359
    assert sum(s["samples"] for s in info["shards"]) == 1797 - 359
    # Publishing the same split again gives the same content IDs.
    again = run(learnae_cli, "publish", "digits", "--shards", "3", "--partition", "iid").stdout.strip()
    assert again == manifest


def test_bad_partition_is_exit_2(learnae_cli, learnae_home, tmp_path):
    proc = run(learnae_cli, "split", "digits", "--shards", "2", "--partition", "classes", "-o", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("learnae: error: ") and "classes" in proc.stderr


def test_inspect_of_a_cid_that_is_no_manifest_is_one_line(learnae_cli, learnae_home, tmp_path):
    (tmp_path / "hello.txt").write_text("hello")
    cid = subprocess.run([*learnae_cli, "ipfs", "add", str(tmp_path / "hello.txt")], capture_output=True,
                         text=True, timeout=120).stdout.strip()
    proc = run(learnae_cli, "inspect", cid)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{cid} is not a shard manifest" in proc.stderr and "learnae data publish" in proc.stderr
    assert "DAG-CBOR" not in proc.stderr and "byte" not in proc.stderr  # no decoder internals


def test_reading_commands_do_not_create_the_data_dir(learnae_cli, learnae_home, tmp_path):
    cid = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    for argv in (["ipfs", "get", cid, "-o", str(tmp_path / "out.bin")], ["ipfs", "cat", cid], ["ipfs", "ls"],
                 ["data", "inspect", cid]):
        proc = subprocess.run([*learnae_cli, *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "not in the store of" in proc.stderr or argv == ["ipfs", "ls"], proc.stderr
        assert "Traceback" not in proc.stderr
        assert not learnae_home.exists(), f"`learnae {' '.join(argv)}` created {learnae_home}"


def test_npz_with_negative_labels_blames_the_labels(learnae_cli, learnae_home, tmp_path):
    import numpy as np

    np.savez(tmp_path / "neg.npz", x=np.zeros((4, 3)), y=np.array([0, 1, -1, 2]))
    proc = run(learnae_cli, "split", str(tmp_path / "neg.npz"), "--shards", "2", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "negative labels" in proc.stderr and "dtype" not in proc.stderr, proc.stderr

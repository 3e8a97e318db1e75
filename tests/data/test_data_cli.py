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
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        ds = load_npz(r["path"])
        assert len(ds) == r["samples"]
        assert sum(1 for c in r["classes"] if c) == 3  # classes:3 gives three classes per shard
    assert sum(r["samples"] for r in rows) == 1797


def test_publish_then_inspect_round_trip(learnae_cli, learnae_home):
    proc = run(learnae_cli, "publish", "digits", "--shards", "3", "--partition", "iid")
    assert proc.returncode == 0, proc.stderr
    manifest = proc.stdout.strip()
    assert manifest.startswith("baf") and "\n" not in manifest  # the CID alone on stdout
    info = json.loads(run(learnae_cli, "inspect", manifest, "--format", "json").stdout)
    assert info["manifest"] == manifest
    assert len(info["shards"]) == 3 and info["samples"] == 1797
    # Publishing the same split again gives the same content IDs.
    again = run(learnae_cli, "publish", "digits", "--shards", "3", "--partition", "iid").stdout.strip()
    assert again == manifest


def test_bad_partition_is_exit_2(learnae_cli, learnae_home, tmp_path):
    proc = run(learnae_cli, "split", "digits", "--shards", "2", "--partition", "classes", "-o", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("learnae: error: ") and "classes" in proc.stderr

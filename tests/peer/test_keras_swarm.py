"""A user's own ``model.fit`` in a real swarm: GossipAveraging over a NetworkPeer.

The swarm is a `learnae peer start` subprocess on loopback; the Keras side is
this test process, training a model it built itself with ``model.fit`` on the
other half of the data. Both sides sign into their ledgers, announce over
GossipSub and fetch each other's snapshots over Bitswap. Budgets are in
training steps, never in time.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from learnae.data import load_dataset
from learnae.errors import UserError
from learnae.identity import Identity
from learnae.keras import GossipAveraging, connect
from learnae.ledger import Ledger
from learnae.peer.config import PeerConfig
from learnae.peer.workload import cut_shard
from learnae.scenario.process import PeerProcess
from learnae.training import load_model, tensor_specs

PARTITION = "classes:7"  # each of the two shards lacks 3 of the 10 digit classes
BATCH = 32
EPOCHS = 20  # 20 batches an epoch: the fit ends on a merge step (every 5)
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def compiled(spec: str = "digits-mlp", seed: int = 1):
    import keras

    model = load_model(spec, seed=seed)  # seed 1: not the CLI peer's initial weights (seed 0)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def verify_ledger(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "verify", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_keras_fit_and_a_cli_peer_train_together_on_skewed_halves(tmp_path):
    mine, test = cut_shard(PeerConfig(shard="1/2", partition=PARTITION), load_dataset("digits"))
    steps = EPOCHS * math.ceil(len(mine) / BATCH)  # the CLI peer runs as many steps as the fit
    cli = PeerProcess.launch(tmp_path / "cli", ["--shard", "0/2", "--partition", PARTITION, "--max-steps",
                                                str(steps), "--min-peers", "1", "--catch-up-s", "0"])
    try:
        model = compiled()  # builds while the CLI peer imports TensorFlow
        cli.wait_ready()
        with connect(data_dir=tmp_path / "keras", listen=LOOPBACK, bootstrap=[cli.addr]) as peer:
            assert peer.addr.startswith("/ip4/127.0.0.1/tcp/")
            cb = GossipAveraging(peer, batch_size=BATCH)
            model.fit(mine.x, mine.y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[cb])
        assert cli.wait(300) == 0, cli.log_tail()
    finally:
        if cli.alive:
            cli.kill()
    keras_id, cli_id = peer.peer_id, Identity.load(cli.data_dir / "identity.key").peer_id

    # The fit merged the CLI peer's snapshots and ends about as good as the swarm, on all ten
    # classes, although its shard has no label of three of them.
    assert cb.step == steps and cb.merges > 0 and peer.published >= steps // peer.publish_every
    accuracy = model.evaluate(test.x, test.y, verbose=0)[1]
    unseen = ~np.isin(test.y, np.unique(mine.y))
    on_unseen = model.evaluate(test.x[unseen], test.y[unseen], verbose=0)[1]
    final = cli.metrics()[-1]
    assert final["step"] == steps and final["merges"] > 0
    # (alone, the fit would score 0 on the three classes its shard lacks)
    assert accuracy >= 0.85 and on_unseen >= 0.6, (accuracy, on_unseen, final["test_accuracy"])

    # The CLI peer merged the Keras peer's snapshots: its snapshots name them as parents.
    with Ledger.open(cli.data_dir, readonly=True) as led:
        parents = [led.entry(p["entry"]) for e in led.entries(author=cli_id, kind="snapshot")
                   for p in e.body["parents"]]
        assert sum(p is not None and p.author == keras_id for p in parents) > 0
    # The Keras peer's chain: join, snapshots (with the CLI peer's as parents), leave.
    with Ledger.open(tmp_path / "keras", readonly=True) as led:
        own = led.entries(author=keras_id)
        assert own[0].kind == "join" and own[-1].kind == "leave" and own[-1].body["reason"] == "done"
        assert {e.kind for e in own[1:-1]} == {"snapshot"}
        assert own[1].body["step"] == 0 and own[1].body["parents"]  # it started from the CLI peer's model
        merged = [led.entry(p["entry"]) for e in own[1:-1] for p in e.body["parents"]]
        assert merged and all(p is not None and p.author == cli_id for p in merged)
    for data_dir in (cli.data_dir, tmp_path / "keras"):
        proc = verify_ledger(data_dir)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_model_of_another_architecture_is_refused_at_the_start_of_fit(tmp_path):
    from learnae.data import split_dataset

    digits = split_dataset(load_dataset("digits"), seed=0)
    with connect(data_dir=tmp_path / "mlp", listen=LOOPBACK) as swarm:
        swarm.join(tensor_specs(compiled("digits-mlp")))
        other = compiled("digits-cnn")
        before = other.get_weights()
        with pytest.raises(UserError, match="fingerprint"):
            with connect(data_dir=tmp_path / "cnn", listen=LOOPBACK, bootstrap=[swarm.addr]) as peer:
                other.fit(digits.train.x[:64], digits.train.y[:64], verbose=0, callbacks=[GossipAveraging(peer)])
        assert not peer.running  # fit raised, and leaving the block stopped the peer's thread
        assert all(np.array_equal(x, y) for x, y in zip(before, other.get_weights()))  # not a step taken
        assert peer.swarm is None and peer.merges == 0
    with Ledger.open(tmp_path / "cnn", readonly=True) as led:
        assert led.entries(author=peer.peer_id) == []  # no join entry in any swarm
    with Ledger.open(tmp_path / "mlp", readonly=True) as led:
        assert [e.kind for e in led.entries(author=swarm.peer_id)] == ["join", "leave"]


# Two networked peers in one process: a publishes, b merges. Run under another Keras backend.
BACKEND_SCRIPT = """
import sys, time
import keras
from learnae.data import load_dataset, split_dataset
from learnae.keras import GossipAveraging, connect
from learnae.training import load_model

assert keras.backend.backend() == sys.argv[2], keras.backend.backend()
d = split_dataset(load_dataset("digits"), seed=0)
x, y = d.train.x[:320], d.train.y[:320]
def model():
    m = load_model("digits-mlp", seed=0)
    m.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m
opts = dict(listen="/ip4/127.0.0.1/tcp/0", catch_up_s=0, merge_wait_s=0)
with connect(data_dir=sys.argv[1] + "/a", **opts) as a, \\
        connect(data_dir=sys.argv[1] + "/b", bootstrap=[a.addr], **opts) as b:
    ma, mb = model(), model()
    ca, cb = GossipAveraging(a), GossipAveraging(b)
    ma.fit(x[:32], y[:32], verbose=0, callbacks=[ca])  # a joins (one step)
    mb.fit(x[:32], y[:32], verbose=0, callbacks=[cb])  # b joins, from a
    time.sleep(1)  # a GossipSub heartbeat: the two are in each other's mesh
    ma.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[ca])
    time.sleep(1)  # a's announcements reach b
    mb.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    assert a.published >= 3 and cb.merges > 0, (a.published, cb.merges)
print("ok", cb.merges)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_gossip_averaging_runs_under_another_keras_backend(tmp_path, backend):
    pytest.importorskip(backend, reason=f"KERAS_BACKEND={backend} needs {backend}, which is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, str(tmp_path), backend], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr[-3000:]

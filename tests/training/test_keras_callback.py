"""GossipAveraging: a user's own model.fit() publishing and merging via a (fake) peer."""

from __future__ import annotations

import numpy as np
import pytest

from learnae.errors import UserError
from learnae.keras import GossipAveraging, SwarmPeer
from learnae.testing.fake_peer import FakeSwarm
from learnae.training import load_model, tensor_specs


def _compiled(keras, spec="digits-mlp", seed=0):
    model = load_model(spec, seed=seed)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _halves(digits):
    low = digits.train.y < 5
    return (digits.train.x[low], digits.train.y[low]), (digits.train.x[~low], digits.train.y[~low])


def test_publishes_and_merges_at_batch_ends(keras, digits):
    swarm = FakeSwarm()
    a, b = swarm.peer("a", publish_every=5, merge_every=10), swarm.peer("b", publish_every=5, merge_every=10)
    assert isinstance(a, SwarmPeer)
    b.join(tensor_specs(load_model("digits-mlp")))
    b.publish([np.zeros_like(w) for w in load_model("digits-mlp").get_weights()], step=1, samples=32, metrics={})
    model = _compiled(keras)
    cb = GossipAveraging(a, batch_size=32)
    model.fit(digits.train.x[:320], digits.train.y[:320], batch_size=32, epochs=2, shuffle=False,
              verbose=0, callbacks=[cb])
    assert [p.step for p in a.published] == [5, 10, 15, 20]
    assert [p.samples for p in a.published] == [160, 320, 480, 640]
    assert {"loss", "accuracy"} <= set(a.published[-1].metrics)
    assert a.merge_steps == [10, 20] and cb.merges == 2
    # the last batch ended with a merge: the model holds exactly the merged weights
    for w, m in zip(model.get_weights(), a.last_merged):
        np.testing.assert_array_equal(w, m)
    # a second fit continues the step count and publishes its final weights at the end
    model.fit(digits.train.x[:96], digits.train.y[:96], batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    assert cb.step == 23 and a.published[-1].step == 23



def test_a_paced_callback_publishes_at_most_once_per_interval_and_always_its_last_weights(keras, digits):
    peer = FakeSwarm().peer("a", publish_every=5, merge_every=5)
    cb = GossipAveraging(peer, batch_size=32, publish_interval_s=3600)
    model = _compiled(keras)
    model.fit(digits.train.x[:640], digits.train.y[:640], batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    assert [p.step for p in peer.published] == [5, 20]  # the first, then nothing for an hour but the last

def test_gossip_lets_two_skewed_peers_learn_all_classes(keras, digits):
    (xa, ya), (xb, yb) = _halves(digits)
    swarm = FakeSwarm()
    peers = [swarm.peer(n, publish_every=4, merge_every=4) for n in ("a", "b")]
    models = [_compiled(keras, seed=0), _compiled(keras, seed=0)]
    callbacks = [GossipAveraging(p, batch_size=32) for p in peers]
    for _ in range(3):  # the peers take turns, a few epochs each
        for model, cb, (x, y) in zip(models, callbacks, ((xa, ya), (xb, yb))):
            model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[cb])
    together = models[0].evaluate(digits.test.x, digits.test.y, verbose=0)[1]
    # Alone, peer a never sees a label of 5-9, so its accuracy is capped near the
    # share of classes 0-4 (~0.5); merged with b it recognises 5-9 too.
    ceiling_alone = float(np.mean(digits.test.y < 5))
    unseen = digits.test.y >= 5
    on_unseen = models[0].evaluate(digits.test.x[unseen], digits.test.y[unseen], verbose=0)[1]
    assert together > max(0.8, ceiling_alone + 0.25), together
    assert on_unseen > 0.7, on_unseen


def test_a_different_model_is_refused_before_training(keras, digits):
    swarm = FakeSwarm()
    _compiled(keras).fit(digits.train.x[:32], digits.train.y[:32], verbose=0,
                         callbacks=[GossipAveraging(swarm.peer("a"))])
    other = _compiled(keras, "digits-cnn")
    before = other.get_weights()
    with pytest.raises(UserError, match="does not match"):
        other.fit(digits.train.x[:64], digits.train.y[:64], verbose=0, callbacks=[GossipAveraging(swarm.peer("b"))])
    assert all(np.array_equal(x, y) for x, y in zip(before, other.get_weights()))


def test_reset_policy_zeroes_momentum_after_a_merge(keras, digits):
    swarm = FakeSwarm()
    a, b = swarm.peer("a", merge_every=4, publish_every=4), swarm.peer("b", merge_every=4, publish_every=4)
    _compiled(keras).fit(digits.train.x[:128], digits.train.y[:128], verbose=0, callbacks=[GossipAveraging(b)])
    model = _compiled(keras)
    model.fit(digits.train.x[:128], digits.train.y[:128], batch_size=32, verbose=0,
              callbacks=[GossipAveraging(a, momentum_policy="reset")])
    slots = [v for v in model.optimizer.variables if "momentum" in v.name]
    assert slots and all(not v.numpy().any() for v in slots)


def test_a_bad_merge_result_is_ignored(keras, digits):
    swarm = FakeSwarm()
    peer = swarm.peer("a", publish_every=2, merge_every=2)
    peer.merge = lambda weights, *, step: [np.zeros(3, np.float32)]  # a broken peer
    model = _compiled(keras)
    cb = GossipAveraging(peer)
    model.fit(digits.train.x[:128], digits.train.y[:128], batch_size=32, verbose=0, callbacks=[cb])
    assert cb.step == 4 and cb.merges == 0
    assert all(np.isfinite(w).all() and w.any() for w in model.get_weights()[::2])

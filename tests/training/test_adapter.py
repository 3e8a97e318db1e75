"""KerasTrainer: training, evaluation, weights, optimizer state, worker threads."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from learnae.errors import StoreError, UserError
from learnae.training import KerasTrainer


@pytest.fixture(scope="module")
def mlp(keras, digits):
    """digits-mlp trained for 300 steps (shared: training is the expensive part)."""
    trainer = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=0)
    results = [trainer.train_steps(100) for _ in range(3)]
    return trainer, results


def test_digits_mlp_learns_digits(mlp, digits):
    trainer, results = mlp
    assert results[-1].loss < results[0].loss
    assert trainer.step == 300 and trainer.samples == 300 * 32
    loss, accuracy = trainer.evaluate(digits.test.x, digits.test.y)
    assert accuracy > 0.85 and loss < 0.6


def test_digits_cnn_learns_digits(keras, digits):
    trainer = KerasTrainer.from_spec("digits-cnn", digits.train.x, digits.train.y, seed=0)
    trainer.train_steps(200)
    assert trainer.evaluate(digits.test.x, digits.test.y)[1] > 0.8


def test_large_preset_takes_steps(keras, digits):
    trainer = KerasTrainer.from_spec("digits-cnn-large", digits.train.x, digits.train.y, seed=0,
                                     batch_size=16)
    before = trainer.get_weights()
    loss, accuracy, samples = trainer.train_steps(3)
    assert np.isfinite(loss) and 0 <= accuracy <= 1 and samples == 48
    assert any(not np.array_equal(a, b) for a, b in zip(before, trainer.get_weights()))


def test_evaluate_agrees_with_keras(mlp, digits):
    trainer, _ = mlp
    loss, accuracy = trainer.evaluate(digits.validation.x, digits.validation.y, batch_size=50)
    k_loss, k_acc = trainer.model.evaluate(digits.validation.x, digits.validation.y, verbose=0)
    assert accuracy == pytest.approx(k_acc, abs=1e-6) and loss == pytest.approx(k_loss, rel=1e-3)


def test_logits_models_are_recognised(keras, digits):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    trainer = KerasTrainer(model, digits.train.x, digits.train.y, seed=0)
    assert trainer.from_logits
    trainer.train_steps(100)
    loss, accuracy = trainer.evaluate(digits.validation.x, digits.validation.y)
    k_loss, k_acc = model.evaluate(digits.validation.x, digits.validation.y, verbose=0)
    assert accuracy == pytest.approx(k_acc, abs=1e-6) and loss == pytest.approx(k_loss, rel=1e-3)
    assert accuracy > 0.7


def test_flat_samples_are_reshaped_and_wrong_shapes_are_user_errors(keras, digits):
    flat = digits.train.x.reshape(len(digits.train), 64)
    trainer = KerasTrainer.from_spec("digits-mlp", flat[:64], digits.train.y[:64], seed=0)
    assert trainer.x.shape == (64, 8, 8, 1)
    with pytest.raises(UserError, match="model expects"):
        KerasTrainer.from_spec("digits-mlp", np.zeros((10, 5, 5), np.float32), np.zeros(10, int))
    with pytest.raises(UserError, match="10 output classes"):
        KerasTrainer.from_spec("digits-mlp", flat[:20], np.arange(20))


def test_set_weights_validates_and_changes_nothing_on_error(mlp):
    trainer, _ = mlp
    weights = trainer.get_weights()
    bad_shape = [w.copy() for w in weights]
    bad_shape[-1] = np.zeros(3, np.float32)
    bad_value = [w.copy() for w in weights]
    bad_value[0][0, 0] = np.nan
    for bad in (bad_shape, bad_value, weights[:-1]):
        with pytest.raises(ValueError):
            trainer.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(weights, trainer.get_weights()))
    zeros = [np.zeros_like(w) for w in weights]
    trainer.set_weights(zeros)
    assert all(not w.any() for w in trainer.get_weights())
    trainer.set_weights(weights)


def _state(trainer):
    return trainer.get_weights(), trainer.get_optimizer_state(), trainer.get_progress()


def test_optimizer_state_round_trip_gives_identical_next_steps(keras, digits):
    a = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=0, momentum=0.9)
    a.train_steps(25)
    weights, opt, progress = _state(a)
    assert any(np.abs(s).sum() > 0 for s in opt[1:])  # momentum is non-zero after training
    b = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=1, momentum=0.9)
    b.set_weights(weights)
    b.set_optimizer_state(opt)
    b.set_progress(progress)
    c = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=2, momentum=0.9)
    c.set_weights(weights)  # same weights and data position, but no momentum
    c.set_progress(progress)
    for t in (a, b, c):
        t.train_steps(5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    assert max(np.abs(wa - wc).max() for wa, wc in zip(a.get_weights(), c.get_weights())) > 1e-4
    assert b.step == a.step == 30
    with pytest.raises(ValueError):
        b.set_optimizer_state(opt[:-1])


def test_momentum_policies(keras, digits):
    keep = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=0)
    reset = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=0, momentum_policy="reset")
    for t in (keep, reset):
        t.train_steps(5)
        t.set_weights(t.get_weights())
        t.on_weights_replaced()
    assert all(np.abs(s).sum() > 0 for s in keep.get_optimizer_state()[1:])
    it, *slots = reset.get_optimizer_state()
    assert int(it) == 5 and all(not s.any() for s in slots)
    with pytest.raises(UserError):
        KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, momentum_policy="sometimes")


def test_checkpoint_file_restores_training_exactly(keras, digits, tmp_path):
    """Weights, optimizer state and data position survive a checkpoint file (the peer's resume path)."""
    from learnae.peer.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    a = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=0, optimizer="adam",
                               learning_rate=0.01)
    a.train_steps(30)
    save_checkpoint(tmp_path, Checkpoint(step=a.step, samples=a.samples, weights=a.get_weights(),
                                         optimizer=a.get_optimizer_state(), extra={"progress": a.get_progress()}))
    b = KerasTrainer.from_spec("digits-mlp", digits.train.x, digits.train.y, seed=9, optimizer="adam",
                               learning_rate=0.01)
    ckpt = load_checkpoint(tmp_path)
    b.set_weights(ckpt.weights)
    b.set_optimizer_state(ckpt.optimizer)
    b.set_progress(ckpt.extra["progress"])
    assert b.step == 30 and b.samples == a.samples
    a.train_steps(7)
    b.train_steps(7)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


async def test_training_in_a_worker_thread_keeps_trio_responsive(mlp, digits):
    trainer, _ = mlp
    running = False
    ticks_while_training = 0
    results = []

    def burst(n):
        nonlocal running
        running = True
        try:
            return trainer.train_steps(n)
        finally:
            running = False

    async def tick():
        nonlocal ticks_while_training
        while True:
            await trio.sleep(0.002)
            ticks_while_training += running

    async def train():
        for _ in range(4):
            results.append(await trio.to_thread.run_sync(burst, 25))
            # between bursts, the loop reads and writes weights in another thread (as the peer will)
            weights = await trio.to_thread.run_sync(trainer.get_weights)
            await trio.to_thread.run_sync(trainer.set_weights, weights)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await train()
        nursery.cancel_scope.cancel()
    assert len(results) == 4 and all(r.samples == 25 * 32 and np.isfinite(r.loss) for r in results)
    assert ticks_while_training > 0  # the event loop ran while steps were being taken
    assert (await trio.to_thread.run_sync(trainer.evaluate, digits.test.x, digits.test.y))[1] > 0.85


def test_a_snapshot_evaluates_the_same_in_a_fresh_model(mlp, digits):
    """What `learnae peer eval` does: spec + snapshot tensors -> accuracy."""
    from learnae.training import evaluate_model, load_model, write_weights

    trainer, _ = mlp
    fresh = load_model("digits-mlp", seed=123)
    before = evaluate_model(fresh, digits.test.x, digits.test.y)
    write_weights(fresh, trainer.get_weights())
    after = evaluate_model(fresh, digits.test.x.reshape(-1, 64), digits.test.y)
    assert after == pytest.approx(trainer.evaluate(digits.test.x, digits.test.y), rel=1e-6)
    assert before[1] < 0.5 < after[1]

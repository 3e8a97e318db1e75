"""``KerasTrainer``: one Keras model, its optimizer and its local data, for the peer runtime.

The peer runtime drives training in short bursts from a worker thread
(``trio.to_thread.run_sync(trainer.train_steps, n)``) and, between bursts, reads
weights to publish, writes merged weights back and saves checkpoints. Everything
here is thread-safe: a lock serialises bursts, weight reads/writes and checkpoints.

Steps use ``train_on_batch`` on fixed-size shuffled batches (each ``model.fit``
call has ~70 ms of fixed cost; a step here is a few ms). The data order is a pure
function of ``(seed, epoch)``, so a restored checkpoint continues with exactly the
batches the interrupted run would have seen.

**Momentum after a merge.** When averaged weights replace the local ones, the
optimizer's slots (SGD momentum, Adam's moments) still describe the old
trajectory. Call :meth:`KerasTrainer.on_weights_replaced` after every merge;
``momentum_policy`` decides what it does:

* ``"keep"`` (default): leave the slots alone. The momentum then pushes the merged
  model along the local descent direction, as in local SGD with momentum; works
  well when merges are frequent and models stay close.
* ``"reset"``: zero every slot (the step counter is kept). Safer when merges move
  the weights far (late joiners, rare merges, very skewed shards), at the cost of a
  few slower steps while momentum builds up again.

Example:
    >>> trainer = KerasTrainer.from_spec("digits-mlp", x_train, y_train, seed=0)  # doctest: +SKIP
    >>> loss, accuracy, samples = trainer.train_steps(100)                         # doctest: +SKIP
    >>> trainer.evaluate(x_val, y_val)                                             # doctest: +SKIP
    (0.21, 0.94)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from learnae.errors import UserError
from learnae.training import weights as W
from learnae.training.evaluation import evaluate_model, fit_input
from learnae.training.optim import build_optimizer, is_probability_output, optimizer_slots

__all__ = ["KerasTrainer", "StepResult", "MOMENTUM_POLICIES"]

log = logging.getLogger(__name__)

MOMENTUM_POLICIES = ("keep", "reset")


class StepResult(NamedTuple):
    """What a burst of training steps did (unpacks as ``loss, accuracy, samples``)."""

    loss: float  # mean training loss over the burst
    accuracy: float  # mean training accuracy over the burst, 0..1
    samples: int  # samples processed in the burst


class KerasTrainer:
    """A compiled Keras model plus optimizer and local training data.

    Args:
        model: an (uncompiled) Keras model, e.g. from :func:`learnae.training.load_model`.
        x, y: local training data; ``y`` holds integer class labels. ``x`` is reshaped
            to the model's input shape when only the layout differs (``(n, 64)`` for
            ``(8, 8, 1)``).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        learning_rate, momentum: optimizer settings.
        batch_size: samples per step.
        seed: seeds the data order (and, via :func:`load_model`, the initial weights).
        momentum_policy: what :meth:`on_weights_replaced` does, see the module docstring.

    Raises:
        UserError: the data do not fit the model or a setting is invalid.
    """

    def __init__(self, model, x: np.ndarray, y: np.ndarray, *, optimizer: str = "sgd",
                 learning_rate: float = 0.05, momentum: float = 0.9, batch_size: int = 32,
                 seed: int = 0, momentum_policy: str = "keep"):
        import keras

        if momentum_policy not in MOMENTUM_POLICIES:
            raise UserError(f"momentum_policy {momentum_policy!r} is not one of {', '.join(MOMENTUM_POLICIES)}")
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size} must be >= 1")
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        if len(x) == 0 or len(x) != len(y):
            raise UserError(f"training data must be non-empty with one label per sample; got {len(x)} samples, {len(y)} labels")
        if not model.built:
            model.build((None, *x.shape[1:]))
        outputs = getattr(model, "output_shape", (None, None))[-1]
        if y.dtype.kind not in "iu" or (len(y) and (int(y.min()) < 0 or (outputs and int(y.max()) >= outputs))):
            raise UserError(
                f"the dataset's labels ({y.dtype}, {int(y.min())}..{int(y.max())}) do not fit the model's "
                f"{outputs} output classes: pick a model with one output per class"
            )
        self.model = model
        self.x = fit_input(x, model)
        self.y = y.astype(np.int64)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.momentum_policy = momentum_policy
        self.step = 0  # local optimizer steps taken so far
        self.samples = 0  # local samples trained on so far (cumulative)
        self._epoch = 0
        self._cursor = 0
        self._order = self._permutation(0)
        self._lock = threading.RLock()
        self.from_logits = not is_probability_output(model)
        self.optimizer = build_optimizer(optimizer, learning_rate, momentum)
        model.compile(
            optimizer=self.optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits),
            metrics=["accuracy"],
        )
        # Create the optimizer's slot variables now, so state export works before step 1.
        self.optimizer.build(model.trainable_variables)
        self._specs = W.tensor_specs(model)

    @classmethod
    def from_spec(cls, spec: str, x: np.ndarray, y: np.ndarray, *, seed: int = 0, **kwargs) -> KerasTrainer:
        """Build the model a spec names (see :func:`learnae.training.load_model`) and wrap it.

        Example:
            >>> trainer = KerasTrainer.from_spec("digits-cnn", x, y, seed=0, batch_size=32)  # doctest: +SKIP
        """
        from learnae.training.models import load_model

        return cls(load_model(spec, seed=seed), x, y, seed=seed, **kwargs)

    # -- weights ---------------------------------------------------------------

    def tensor_specs(self) -> list[W.TensorSpec]:
        """``(name, shape, dtype)`` per snapshot tensor, in layer order, stable across processes."""
        return list(self._specs)

    def get_weights(self) -> list[np.ndarray]:
        """A copy of the snapshot tensors (float32)."""
        with self._lock:
            return W.read_weights(self.model)

    def set_weights(self, arrays: Sequence[np.ndarray]) -> None:
        """Replace the weights; raises ``ValueError`` (and changes nothing) on a bad list.

        Call :meth:`on_weights_replaced` afterwards when this is a merge result.
        """
        with self._lock:
            W.write_weights(self.model, arrays)

    def on_weights_replaced(self) -> None:
        """Apply ``momentum_policy`` after merged weights replaced the local ones."""
        if self.momentum_policy == "reset":
            import keras

            with self._lock:
                for v in optimizer_slots(self.optimizer):
                    v.assign(keras.ops.zeros_like(v))

    # -- training and evaluation ----------------------------------------------------

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def _next_batch(self) -> np.ndarray:
        parts, need = [], self.batch_size
        while need:
            take = self._order[self._cursor:self._cursor + need]
            parts.append(take)
            need -= len(take)
            self._cursor += len(take)
            if self._cursor >= len(self._order):
                self._epoch += 1
                self._cursor = 0
                self._order = self._permutation(self._epoch)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def train_steps(self, n: int) -> StepResult:
        """Take ``n`` optimizer steps on shuffled batches of the local data.

        Every batch has exactly ``batch_size`` samples (the order wraps around the
        data), so the compiled step is traced once.

        Returns:
            ``(loss, accuracy, samples)`` averaged over the ``n`` steps.
        """
        if n < 1:
            return StepResult(float("nan"), float("nan"), 0)
        loss_sum = acc_sum = 0.0
        with self._lock:
            for _ in range(n):
                idx = self._next_batch()
                out = self.model.train_on_batch(self.x[idx], self.y[idx], return_dict=True)
                loss_sum += float(out["loss"])
                acc_sum += float(out["accuracy"])
            self.step += n
            samples = n * self.batch_size
            self.samples += samples
        return StepResult(loss_sum / n, acc_sum / n, samples)

    def evaluate(self, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024) -> tuple[float, float]:
        """Cross-entropy loss and accuracy of the current weights on ``(x, y)``."""
        with self._lock:
            return evaluate_model(self.model, x, y, from_logits=self.from_logits, batch_size=batch_size)

    # -- state for checkpoints --------------------------------------------------------

    def get_optimizer_state(self) -> list[np.ndarray]:
        """The optimizer's variables (step counter and slots; not the learning rate)."""
        with self._lock:
            return [np.array(W.variable_to_numpy(v), copy=True) for v in _state_variables(self.optimizer)]

    def set_optimizer_state(self, arrays: Sequence[np.ndarray]) -> None:
        """Restore what :meth:`get_optimizer_state` returned (same model and optimizer).

        Raises:
            ValueError: the list does not match this optimizer (count or shapes).
        """
        with self._lock:
            variables = _state_variables(self.optimizer)
            if len(arrays) != len(variables):
                raise ValueError(f"optimizer state has {len(arrays)} arrays, this optimizer has {len(variables)}")
            for i, (v, a) in enumerate(zip(variables, arrays)):
                if tuple(np.shape(a)) != tuple(v.shape):
                    raise ValueError(f"optimizer state array {i} has shape {np.shape(a)}, expected {tuple(v.shape)}")
            for v, a in zip(variables, arrays):
                v.assign(np.asarray(a).astype(W._dtype_name(v)))

    def get_progress(self) -> dict[str, int]:
        """Counters a checkpoint needs besides the arrays: step, samples, data position."""
        with self._lock:
            return {"step": self.step, "samples": self.samples, "seed": self.seed,
                    "epoch": self._epoch, "cursor": self._cursor}

    def set_progress(self, progress: dict[str, int]) -> None:
        """Restore :meth:`get_progress` output, so training continues with the same batches.

        Only ``step`` is required; missing keys keep sensible defaults (samples =
        step x batch size, this trainer's seed, start of epoch 0).
        """
        with self._lock:
            self.step = int(progress["step"])
            self.samples = int(progress.get("samples", self.step * self.batch_size))
            self.seed = int(progress.get("seed", self.seed))
            self._epoch = int(progress.get("epoch", 0))
            self._order = self._permutation(self._epoch)
            self._cursor = min(int(progress.get("cursor", 0)), len(self._order) - 1)


def _state_variables(optimizer) -> list:
    return [v for v in optimizer.variables if v.name != "learning_rate"]

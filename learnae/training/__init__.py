"""learnae.training: model specs, the Keras adapter, evaluation.

The only package that imports Keras/TensorFlow (plus :mod:`learnae.keras`). The
imports are lazy, so ``import learnae.training`` is cheap and TensorFlow loads on
first use (it costs ~4 s).

Layering: imports keras, numpy, ``learnae.errors`` and ``learnae.fsutil``; nothing
else of learnae.

Example:
    >>> from learnae.training import KerasTrainer, load_model       # doctest: +SKIP
    >>> trainer = KerasTrainer(load_model("digits-cnn", seed=0), x, y)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__all__ = [
    "PRESETS",
    "ModelSpecError",
    "check_model_spec",
    "load_model",
    "KerasTrainer",
    "StepResult",
    "TensorSpec",
    "tensor_specs",
    "evaluate_model",
    "read_weights",
    "write_weights",
]

_WHERE = {
    "PRESETS": "models",
    "ModelSpecError": "models",
    "check_model_spec": "models",
    "load_model": "models",
    "KerasTrainer": "adapter",
    "StepResult": "adapter",
    "TensorSpec": "weights",
    "tensor_specs": "weights",
    "evaluate_model": "evaluation",
    "read_weights": "weights",
    "write_weights": "weights",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"learnae.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'learnae.training' has no attribute {name!r}")

"""The tensors of a Keras model, as learnae names and moves them.

A snapshot holds every floating-point weight of the model (trainable ones and
statistics such as BatchNorm's moving mean), in ``model.weights`` order. Random
generator states are not weights and are left out.

Tensor names must be the same in every process that builds the same model, since
they feed the model fingerprint and hence the swarm topic. Keras numbers layers by
creation order within a process (``dense``, ``dense_1``, ...), so a name is built
from the weight's position and its path with those counters removed::

    000/conv1/kernel, 001/conv1/bias, ..., 007/output/bias

Weights cross this boundary as float32 numpy arrays, converted with
``keras.ops.convert_to_numpy`` so any Keras backend works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["TensorSpec", "float_variables", "tensor_specs", "read_weights", "write_weights", "variable_to_numpy"]

_COUNTER = re.compile(r"_\d+$")


def float_variables(model) -> list:
    """The model's floating-point weight variables, in ``model.weights`` order."""
    out = []
    for v in model.weights:
        if np.dtype(_dtype_name(v)).kind == "f":
            out.append(v)
    return out


def _dtype_name(variable) -> str:
    dtype = variable.dtype
    return getattr(dtype, "name", None) or str(dtype)


def _stable_name(index: int, variable, model_name: str) -> str:
    parts = str(getattr(variable, "path", variable.name)).split("/")
    scopes = [_COUNTER.sub("", p) for p in parts[:-1]]
    # A Sequential model built in code prefixes its own name; the same model loaded
    # from a .keras file (and a functional model) does not. Drop the prefix.
    if scopes and scopes[0] == _COUNTER.sub("", model_name):
        scopes = scopes[1:]
    return "/".join([f"{index:03d}", *scopes, parts[-1]])


class TensorSpec(NamedTuple):
    """``(name, shape, dtype)`` of one snapshot tensor (a tuple, so it unpacks and JSON-encodes)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def tensor_specs(model) -> list[TensorSpec]:
    """``(name, shape, dtype)`` of every snapshot tensor, in order.

    The dtype is always ``"float32"``: that is what crosses the snapshot boundary,
    whatever the model computes in (mixed precision stays a local matter).

    Example:
        >>> [s.name for s in tensor_specs(load_model("digits-mlp"))][:2]  # doctest: +SKIP
        ['000/hidden1/kernel', '001/hidden1/bias']
    """
    if not model.built:
        raise ValueError("the model is not built yet: give it an Input layer or call model.build(shape)")
    return [
        TensorSpec(_stable_name(i, v, model.name), tuple(int(d) for d in v.shape), "float32")
        for i, v in enumerate(float_variables(model))
    ]


def variable_to_numpy(variable) -> np.ndarray:
    """A Keras variable's value as numpy, on any backend.

    ``KerasVariable.numpy()`` exists on every Keras 3 backend; ``convert_to_numpy``
    is the fallback for other tensor types (it warns under numpy 2 on TensorFlow).
    """
    if hasattr(variable, "numpy"):
        return np.asarray(variable.numpy())
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable))


def read_weights(model) -> list[np.ndarray]:
    """The model's snapshot tensors as fresh float32 numpy arrays."""
    return [np.array(variable_to_numpy(v), dtype=np.float32, copy=True) for v in float_variables(model)]


def write_weights(model, arrays: Sequence[np.ndarray]) -> None:
    """Assign snapshot tensors to the model.

    Raises:
        ValueError: wrong number of tensors, a shape mismatch or a non-finite value;
            the model is left unchanged in that case.
    """
    variables = float_variables(model)
    if len(arrays) != len(variables):
        raise ValueError(f"expected {len(variables)} weight tensors, got {len(arrays)}")
    checked = []
    for i, (v, a) in enumerate(zip(variables, arrays)):
        a = np.asarray(a)
        if tuple(a.shape) != tuple(v.shape):
            raise ValueError(f"weight tensor {i} has shape {tuple(a.shape)}, expected {tuple(v.shape)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"weight tensor {i} has non-finite values")
        checked.append(a.astype(_dtype_name(v), copy=False))
    for v, a in zip(variables, checked):
        v.assign(a)

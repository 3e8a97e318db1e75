"""Lossy encodings of weight tensors, used by the snapshot codec (:mod:`learnae.storage.snapshot`).

Three independent tools, each with a documented worst-case error:

* **float16** halves the bytes. ``from_float16(to_float16(a))`` differs from ``a`` by at
  most ``2**-11 * |a|`` (round to nearest, 11 significant bits) for ``|a| >= 2**-14``,
  and by at most ``2**-25`` below that (float16 subnormals). Values beyond the float16
  range (``|a| > 65504``) are refused rather than silently turned into ``inf``.
* **int8 with a per-tensor scale** quarters the bytes. ``scale = max|a| / 127``
  (rounded to a float32 so it survives any float32 metadata field) and
  ``q = round(a / scale)`` clipped to ``[-127, 127]``, so
  ``|dequantize_int8(q, scale) - a| <= scale / 2`` element-wise (plus the float32
  rounding of the result, ``2**-24 * |a|``). An all-zero (or empty) tensor has scale ``0.0``.
* **deltas** against a base snapshot: ``delta(w, base)`` is ``w - base`` in float32, and
  ``apply_delta(delta(w, base), base)`` gives back ``w`` up to float32 rounding
  (``<= 2**-23 * (|w| + |base|)``). A delta is small when the base is recent, so it
  quantizes (int8) with a much smaller scale than the weights themselves.

Non-finite inputs are refused with :class:`ValueError`: a snapshot with NaN or inf is
invalid anyway, and quantizing it would hide that.

Example:
    >>> import numpy as np
    >>> a = np.array([0.5, -1.0, 0.25], dtype=np.float32)
    >>> q, scale = quantize_int8(a)
    >>> bool(np.all(np.abs(dequantize_int8(q, scale) - a) <= scale / 2))
    True
    >>> from_float16(to_float16(a)).dtype
    dtype('float32')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FLOAT16_MAX",
    "FLOAT16_REL_ERR",
    "to_float16",
    "from_float16",
    "quantize_int8",
    "dequantize_int8",
    "delta",
    "apply_delta",
]

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504.0
FLOAT16_REL_ERR = 2.0**-11  # half a unit in the last place of an 11-bit significand
INT8_LEVELS = 127  # symmetric: -127..127, so -x quantizes to -q(x)


def _finite_float(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: array holds NaN or inf; refusing to encode it")
    return arr


def to_float16(a: np.ndarray) -> np.ndarray:
    """Encode ``a`` as float16 (round to nearest).

    Args:
        a: a finite numeric array with ``|a| <= 65504``.

    Returns:
        A float16 array of the same shape.

    Raises:
        ValueError: ``a`` holds NaN/inf or a value outside the float16 range.
    """
    arr = _finite_float(a, "to_float16")
    if arr.size and float(np.max(np.abs(arr))) > FLOAT16_MAX:
        raise ValueError(
            f"to_float16: max |value| {float(np.max(np.abs(arr))):.6g} exceeds the float16 range "
            f"({FLOAT16_MAX:g}); use float32 or int8 encoding for this model"
        )
    return arr.astype(np.float16)


def from_float16(a: np.ndarray) -> np.ndarray:
    """Decode a float16 array to float32 (exact: every float16 is a float32)."""
    return np.asarray(a, dtype=np.float16).astype(np.float32)


def quantize_int8(a: np.ndarray) -> tuple[np.ndarray, float]:
    """Quantize ``a`` to int8 with one symmetric scale for the whole tensor.

    Args:
        a: a finite numeric array.

    Returns:
        ``(q, scale)``: ``q`` int8 in ``[-127, 127]`` with the shape of ``a``, and a
        non-negative float ``scale`` such that ``a ~= q.astype(float32) * scale`` with
        ``|error| <= scale / 2``. ``scale`` is ``0.0`` for an all-zero or empty tensor.

    Raises:
        ValueError: ``a`` holds NaN or inf.
    """
    arr = _finite_float(a, "quantize_int8").astype(np.float64)
    max_abs = float(np.max(np.abs(arr))) if arr.size else 0.0
    if max_abs == 0.0:
        return np.zeros(arr.shape, dtype=np.int8), 0.0
    scale = float(np.float32(max_abs / INT8_LEVELS))
    if scale == 0.0:  # max_abs below the smallest float32 step: nothing to keep
        return np.zeros(arr.shape, dtype=np.int8), 0.0
    q = np.clip(np.rint(arr / scale), -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`quantize_int8`: ``q * scale`` as float32.

    Raises:
        ValueError: ``q`` is not int8, or ``scale`` is negative or not finite.
    """
    arr = np.asarray(q)
    if arr.dtype != np.int8:
        raise ValueError(f"dequantize_int8: expected an int8 array, got dtype {arr.dtype}")
    s = float(scale)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"dequantize_int8: scale must be finite and >= 0, got {scale!r}")
    return (arr.astype(np.float64) * s).astype(np.float32)


def _check_pairs(a: Sequence[np.ndarray], b: Sequence[np.ndarray], what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} tensors against a base of {len(b)}")
    for i, (x, y) in enumerate(zip(a, b)):
        if np.shape(x) != np.shape(y):
            raise ValueError(f"{what}: tensor {i} has shape {np.shape(x)}, base has {np.shape(y)}")


def delta(weights: Sequence[np.ndarray], base: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``weights - base``, tensor by tensor, as float32.

    Raises:
        ValueError: the lists differ in length or a tensor's shape differs from the base.

    Example:
        >>> import numpy as np
        >>> d = delta([np.ones(3, np.float32)], [np.zeros(3, np.float32)])
        >>> apply_delta(d, [np.zeros(3, np.float32)])[0].tolist()
        [1.0, 1.0, 1.0]
    """
    _check_pairs(weights, base, "delta")
    return [
        (np.asarray(w, np.float64) - np.asarray(b, np.float64)).astype(np.float32)
        for w, b in zip(weights, base)
    ]


def apply_delta(delta: Sequence[np.ndarray], base: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``base + delta``, tensor by tensor, as float32 (inverse of :func:`delta`).

    Raises:
        ValueError: the lists differ in length or a tensor's shape differs from the base.
    """
    _check_pairs(delta, base, "apply_delta")
    return [
        (np.asarray(b, np.float64) + np.asarray(d, np.float64)).astype(np.float32)
        for d, b in zip(delta, base)
    ]

"""Error bounds of the snapshot compression helpers (float16, int8, deltas)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays, array_shapes

from learnae.storage.compress import (
    FLOAT16_MAX,
    apply_delta,
    delta,
    dequantize_int8,
    from_float16,
    quantize_int8,
    to_float16,
)

FAST = settings(max_examples=60, deadline=None)

finite32 = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
tensors = arrays(np.float32, array_shapes(max_dims=3, max_side=8), elements=finite32)


@FAST
@given(tensors)
def test_float16_roundtrip_within_documented_bound(a):
    back = from_float16(to_float16(a))
    assert back.dtype == np.float32 and back.shape == a.shape
    bound = np.maximum(2.0**-11 * np.abs(a.astype(np.float64)), 2.0**-25)
    assert np.all(np.abs(back.astype(np.float64) - a) <= bound)


def test_float16_refuses_out_of_range_and_nonfinite():
    with pytest.raises(ValueError, match="float16 range"):
        to_float16(np.array([FLOAT16_MAX * 2], np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        to_float16(np.array([1.0, np.nan], np.float32))


@FAST
@given(tensors)
def test_int8_error_at_most_half_a_step(a):
    q, scale = quantize_int8(a)
    assert q.dtype == np.int8 and q.shape == a.shape
    assert np.all(q >= -127) and np.all(q <= 127)
    assert isinstance(scale, float) and scale >= 0
    back = dequantize_int8(q, scale)
    assert back.dtype == np.float32
    err = np.abs(back.astype(np.float64) - a.astype(np.float64))
    assert np.all(err <= scale / 2 + 2.0**-23 * np.abs(a.astype(np.float64)) + 1e-30)


def test_int8_all_zero_and_empty_have_scale_zero():
    q, scale = quantize_int8(np.zeros((3, 4), np.float32))
    assert scale == 0.0 and not q.any()
    q, scale = quantize_int8(np.zeros((0,), np.float32))
    assert scale == 0.0 and q.shape == (0,)
    assert np.array_equal(dequantize_int8(q, scale), np.zeros((0,), np.float32))


def test_int8_is_symmetric_and_hits_the_extremes():
    a = np.array([-2.0, -1.0, 0.0, 1.0, 2.0], np.float32)
    q, scale = quantize_int8(a)
    assert q.tolist() == [-127, -64, 0, 64, 127] or q.tolist() == [-127, -63, 0, 63, 127]
    assert scale == pytest.approx(2.0 / 127, rel=1e-6)
    assert np.array_equal(quantize_int8(-a)[0], -q)


def test_int8_refuses_bad_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize_int8(np.array([np.inf], np.float32))
    with pytest.raises(ValueError, match="int8"):
        dequantize_int8(np.zeros(3, np.int16), 1.0)
    with pytest.raises(ValueError, match="scale"):
        dequantize_int8(np.zeros(3, np.int8), float("nan"))


@FAST
@given(st.data())
def test_delta_roundtrip_and_shrinks_with_close_base(data):
    shape = data.draw(array_shapes(max_dims=2, max_side=6))
    w = data.draw(arrays(np.float32, shape, elements=finite32))
    noise = data.draw(arrays(np.float32, shape, elements=st.floats(-2.0**-7, 2.0**-7, width=32)))
    base = (w + noise).astype(np.float32)
    d = delta([w], [base])
    assert d[0].dtype == np.float32
    back = apply_delta(d, [base])[0]
    bound = 2.0**-23 * (np.abs(w.astype(np.float64)) + np.abs(base.astype(np.float64))) + 1e-30
    assert np.all(np.abs(back.astype(np.float64) - w) <= bound)
    # a delta against a close base quantizes with a far smaller step than the weights
    _, s_delta = quantize_int8(d[0])
    _, s_weights = quantize_int8(w)
    max_d = float(np.max(np.abs(noise), initial=0.0)) + 2.0**-23 * float(np.max(np.abs(w), initial=0.0))
    assert s_delta <= max_d / 127 * (1 + 1e-6) + 1e-30
    assert s_delta <= s_weights or float(np.max(np.abs(w), initial=0.0)) < 2.0**-6


def test_delta_rejects_mismatched_structure():
    with pytest.raises(ValueError, match="shape"):
        delta([np.zeros(3)], [np.zeros(4)])
    with pytest.raises(ValueError, match="tensors"):
        apply_delta([np.zeros(3)], [])

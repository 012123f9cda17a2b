"""pt.ops.softmax against the float64 reference, for every ISA."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pytransformer as pt
import reference as ref
from helpers import each_isa, LAYOUTS, assert_close, randn

RTOL = 1e-5
# Probabilities below FLT_MIN are flushed to zero (the kernel's exp does not produce
# denormals; such terms vanish next to the row maximum's 1).
FLUSH = float(np.finfo(np.float32).tiny)

NS = [1, 2, 3, 7, 8, 15, 16, 17, 33, 64, 257, 1000, 4099]


def check_softmax(x, err_msg=""):
    out = pt.ops.softmax(x)
    assert_close(out, ref.softmax(x), RTOL, atol=FLUSH, err_msg=err_msg or f"x{x.shape}")
    return out


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("rows", [1, 3, 17])
def test_shapes(isa, rng, rows, n):
    check_softmax(randn(rng, rows, n, scale=3.0))


@pytest.mark.parametrize("shape", [(5,), (2, 3, 7), (2, 1, 3, 65), (1, 1, 1)])
def test_ranks(isa, rng, shape):
    check_softmax(randn(rng, *shape))


@pytest.mark.parametrize("n", [7, 64, 1000])
@pytest.mark.parametrize("scale,offset", [(1e-3, 0.0), (10.0, 0.0), (30.0, 0.0), (1.0, 1e4), (1.0, -1e4),
                                          (3.0, 3e4)])
def test_magnitudes(isa, rng, n, scale, offset):
    # Wide spreads put many probabilities far below 1 (and some below FLT_MIN);
    # large offsets test the max subtraction.
    check_softmax(randn(rng, 4, n, scale=scale, offset=offset))


@pytest.mark.parametrize("n", [1, 5, 16, 17, 300])
def test_shift_invariance(isa, rng, n):
    # Softmax(x + c) = softmax(x). Shifts by a multiple of a power of two large
    # enough to keep x + c exact in float32 give the same differences x - max.
    x = (rng.integers(-1000, 1000, size=(3, n)) / 64.0).astype(np.float32)
    a = pt.ops.softmax(x)
    b = pt.ops.softmax(x + np.float32(4096.0))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 4, 16, 17, 1000])
def test_uniform_rows(isa, n):
    x = np.full((3, n), 2.5, dtype=np.float32)
    assert_close(pt.ops.softmax(x), np.full((3, n), 1.0 / n), RTOL)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_non_contiguous_and_big_endian(isa, rng, layout):
    x = randn(rng, 13, 37, scale=2.0)
    out = pt.ops.softmax(LAYOUTS[layout](x))
    assert out.flags.c_contiguous and out.dtype.isnative
    assert_close(out, ref.softmax(x), RTOL, atol=FLUSH)


def test_column_slice(isa, rng):
    x = randn(rng, 20, 50)
    view = x[3:17:2, 5:40:3]
    check_softmax(view)


def test_input_not_modified(isa, rng):
    x = randn(rng, 6, 19)
    c = x.copy()
    pt.ops.softmax(x)
    np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("n", [1, 5, 16, 17, 40])
def test_special_values(isa, rng, n):
    # -inf entries get probability 0; a row of -inf, a row with +inf or NaN gives
    # NaN as numpy's formula does.
    x = randn(rng, 6, n)
    x[1, ::2] = -np.inf
    x[2, :] = -np.inf
    x[3, n // 2] = np.inf
    x[4, n - 1] = np.nan
    x[5, :] = np.float32(3e38)
    x[5, 0] = -3e38
    with np.errstate(invalid="ignore", over="ignore"):
        expected = ref.softmax(x)
    assert_close(pt.ops.softmax(x), expected, RTOL, atol=FLUSH)
    if n > 1:
        assert np.all(pt.ops.softmax(x)[1, ::2] == 0)


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0,), (2, 0, 4), (0, 0)])
def test_empty(isa, shape):
    out = pt.ops.softmax(np.zeros(shape, dtype=np.float32))
    assert out.shape == shape and out.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 5), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       spread=st.floats(1e-3, 20.0), shift=st.floats(-100.0, 100.0))
def test_property_rows_sum_to_one_and_shift(rows, n, seed, spread, shift):
    for _ in each_isa():
        rng = np.random.default_rng(seed)
        x = randn(rng, rows, n, scale=spread)
        p = pt.ops.softmax(x)
        assert np.all(p >= 0) and np.all(p <= 1)
        np.testing.assert_allclose(p.astype(np.float64).sum(axis=-1), 1.0, rtol=0, atol=RTOL)
        # Adding a constant: the same distribution up to the rounding of x + c.
        xs = x + np.float32(shift)
        ps = pt.ops.softmax(xs)
        assert_close(ps, ref.softmax(xs), RTOL, atol=FLUSH)
        rounding = np.abs((xs.astype(np.float64) - shift) - x)  # what x + c lost
        np.testing.assert_allclose(ps, p, rtol=2 * RTOL + 4 * rounding.max(), atol=FLUSH)

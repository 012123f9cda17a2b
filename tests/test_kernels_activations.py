"""pt.ops.relu, pt.ops.gelu and pt.ops.silu against the float64 reference, for every ISA."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pytransformer as pt
import reference as ref
from helpers import each_isa, DENORM_ULP, LAYOUTS, assert_close, randn

RTOL = 1e-5
F32 = np.finfo(np.float32)

SIZES = [1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 257, 1000, 1023, 1024, 1025, 4099]


def check_gelu(x, err_msg=""):
    out = pt.ops.gelu(x)
    # Full relative accuracy everywhere, down to the denormals where the spacing of
    # float32 itself (one denormal ulp) is the floor.
    assert_close(out, ref.gelu(x), RTOL, atol=DENORM_ULP, err_msg=err_msg or f"x{x.shape}")
    return out


# ---------------------------------------------------------------------------
# relu
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_relu_sizes(isa, rng, n):
    x = randn(rng, n)
    out = pt.ops.relu(x)
    assert out.dtype == np.float32 and out.shape == (n,)
    np.testing.assert_array_equal(out, np.maximum(x, 0))


@pytest.mark.parametrize("shape", [(), (3, 5), (2, 3, 17), (4, 1, 1, 9)])
def test_relu_ranks(isa, rng, shape):
    x = randn(rng, *shape)
    out = pt.ops.relu(x)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.maximum(x, 0))


def test_relu_special_values(isa):
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, F32.max, -F32.max, F32.tiny, -F32.tiny,
                  DENORM_ULP, -DENORM_ULP, 1.0, -1.0, np.nan, 2.0, -3.0], dtype=np.float32)
    for n in range(1, x.size + 1):  # every position in a vector and in the tail
        out = pt.ops.relu(x[:n])
        np.testing.assert_array_equal(np.isnan(out), np.isnan(x[:n]))
        ok = ~np.isnan(x[:n])
        np.testing.assert_array_equal(out[ok], np.maximum(x[:n], 0)[ok])
        assert not np.any(out[ok] < 0)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_relu_non_contiguous_and_big_endian(isa, rng, layout):
    x = randn(rng, 9, 21)
    np.testing.assert_array_equal(pt.ops.relu(LAYOUTS[layout](x)), np.maximum(x, 0))


# ---------------------------------------------------------------------------
# gelu
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_gelu_sizes(isa, rng, n):
    check_gelu(randn(rng, n, scale=3.0))


@pytest.mark.parametrize("shape", [(), (3, 5), (2, 3, 17), (4, 1, 1, 9)])
def test_gelu_ranks(isa, rng, shape):
    out = check_gelu(randn(rng, *shape, scale=2.0))
    assert out.shape == shape


@pytest.mark.parametrize("lo,hi", [(-20.0, 20.0), (-1e-3, 1e-3), (-6.0, 6.0), (0.0, 100.0)])
def test_gelu_dense_grid(isa, lo, hi):
    # Every float32 region of the approximation, sampled densely.
    check_gelu(np.linspace(lo, hi, 40_001, dtype=np.float32))


def test_gelu_far_negative_tail(isa):
    # Where gelu is tiny (x << 0) it must keep full relative accuracy, down to the
    # denormal range (gelu(x) < FLT_MIN from x ~ -13.2 on) and to the underflow to 0.
    x = np.linspace(-15.0, -4.0, 50_001, dtype=np.float32)
    out = check_gelu(x)
    assert np.all(out <= 0)
    normal = np.abs(ref.gelu(x)) >= F32.tiny
    assert normal.sum() > 40_000  # most of the grid is in the normal range


def test_gelu_all_float32_exponents(isa):
    # Both signs of every power of two and its neighbours, denormals included.
    e = np.arange(-149, 128, dtype=np.float64)
    mags = np.concatenate([2.0**e, 1.5 * 2.0**e[:-1], (2.0 - 2.0**-23) * 2.0**e[1:]])
    x = np.concatenate([mags, -mags]).astype(np.float32)
    check_gelu(x)


def test_gelu_special_values(isa):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, F32.max, -F32.max, F32.tiny, -F32.tiny,
                  DENORM_ULP, -DENORM_ULP, -100.0, 100.0, -30.0, 30.0, 1.0, -1.0], dtype=np.float32)
    for n in range(1, x.size + 1):
        check_gelu(x[:n])
    out = pt.ops.gelu(x)
    assert np.isnan(out[0])
    assert out[1] == np.inf and out[2] == 0.0 and out[5] == F32.max and out[6] == 0.0


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_gelu_non_contiguous_and_big_endian(isa, rng, layout):
    x = randn(rng, 9, 21, scale=3.0)
    assert_close(pt.ops.gelu(LAYOUTS[layout](x)), ref.gelu(x), RTOL, atol=DENORM_ULP)


def test_inputs_not_modified(isa, rng):
    x = randn(rng, 100)
    c = x.copy()
    pt.ops.gelu(x)
    pt.ops.relu(x)
    np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("op", [pt.ops.relu, pt.ops.gelu])
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 5)])
def test_empty(isa, op, shape):
    out = op(np.zeros(shape, dtype=np.float32))
    assert out.shape == shape and out.dtype == np.float32


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
                  elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_property_gelu_any_float(x):
    for _ in each_isa():
        check_gelu(x)
        out = pt.ops.relu(x)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(x))


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-30, 30, width=32)))
def test_property_gelu_bounds(x):
    # x Phi(x): between min(x, 0) and max(x, 0) and >= the global minimum ~ -0.17.
    for _ in each_isa():
        y = pt.ops.gelu(x)
        assert np.all(y >= np.minimum(x, 0)) and np.all(y <= np.maximum(x, 0))
        assert np.all(y >= -0.1700426)


# ---------------------------------------------------------------------------
# silu
# ---------------------------------------------------------------------------


def check_silu(x):
    out = pt.ops.silu(x)
    # Full relative accuracy everywhere, down to the denormals.
    assert_close(out, ref.silu(x), RTOL, atol=DENORM_ULP)
    return out


@pytest.mark.parametrize("n", SIZES)
def test_silu_sizes(isa, rng, n):
    check_silu(randn(rng, n, scale=4.0))


@pytest.mark.parametrize("shape", [(), (3, 5), (2, 3, 17)])
def test_silu_ranks(isa, rng, shape):
    out = check_silu(randn(rng, *shape, scale=3.0))
    assert out.shape == shape


@pytest.mark.parametrize("lo,hi", [(-110.0, 100.0), (-1.0, 1.0), (-104.0, -80.0)])
def test_silu_dense_grid(isa, lo, hi):
    check_silu(np.linspace(lo, hi, 40_001, dtype=np.float32))


def test_silu_special_values(isa):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, F32.max, -F32.max, 1.0, -1.0, 2.0, -3.0, 50.0, -50.0],
                 dtype=np.float32)
    for n in range(1, x.size + 1):
        check_silu(x[:n])


def test_silu_matches_torch(isa, rng):
    torch = pytest.importorskip("torch")
    x = randn(rng, 4099, scale=5.0)
    expected = torch.nn.functional.silu(torch.from_numpy(x)).numpy()
    assert_close(pt.ops.silu(x), expected.astype(np.float64), RTOL, atol=F32.tiny)  # torch flushes its tail

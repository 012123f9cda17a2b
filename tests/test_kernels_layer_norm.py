"""pt.ops.layer_norm against the float64 reference, for every ISA."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pytransformer as pt
import reference as ref
from helpers import each_isa, LAYOUTS, assert_close, randn

RTOL = 1e-5

NS = [1, 2, 3, 7, 8, 16, 17, 33, 64, 257, 1000, 4099]


def check_layer_norm(x, weight=None, bias=None, eps=1e-5, residual=None, err_msg=""):
    out = pt.ops.layer_norm(x, weight, bias, eps=eps, residual=residual)
    assert_close(out, ref.layer_norm(x, weight, bias, eps, residual), RTOL,
                 ref.layer_norm_scale(x, weight, bias, eps, residual),
                 err_msg=err_msg or f"x{x.shape} weight={weight is not None} bias={bias is not None} "
                                    f"residual={residual is not None} eps={eps}")
    return out


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("rows", [1, 3, 17])
def test_shapes(isa, rng, rows, n):
    x = randn(rng, rows, n, scale=2.0, offset=0.5)
    check_layer_norm(x, randn(rng, n), randn(rng, n))


@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("use_residual", [False, True])
@pytest.mark.parametrize("n", [1, 5, 16, 31, 512, 1000])
def test_weight_bias_residual(isa, rng, n, use_weight, use_bias, use_residual):
    x = randn(rng, 9, n)
    w = randn(rng, n) if use_weight else None
    b = randn(rng, n) if use_bias else None
    r = randn(rng, 9, n, scale=3.0) if use_residual else None
    check_layer_norm(x, w, b, residual=r)


@pytest.mark.parametrize("n", [3, 64, 257])
def test_residual_is_added_before_normalising(isa, rng, n):
    x, r = randn(rng, 4, n), randn(rng, 4, n)
    w, b = randn(rng, n), randn(rng, n)
    fused = pt.ops.layer_norm(x, w, b, residual=r)
    # x + r is exact in float64; the fused op must match LN of the float64 sum.
    assert_close(fused, ref.layer_norm(x.astype(np.float64) + r, w, b), RTOL,
                 ref.layer_norm_scale(x, w, b, residual=r))


@pytest.mark.parametrize("shape", [(5,), (2, 3, 7), (2, 2, 2, 65)])
def test_ranks(isa, rng, shape):
    n = shape[-1]
    x, r = randn(rng, *shape), randn(rng, *shape)
    check_layer_norm(x, randn(rng, n), randn(rng, n), residual=r)


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-5, 1e-3, 0.5, 10.0])
def test_eps(isa, rng, eps):
    x = randn(rng, 5, 50, scale=0.1)
    check_layer_norm(x, randn(rng, 50), randn(rng, 50), eps=eps)


@pytest.mark.parametrize("n", [7, 64, 1000])
@pytest.mark.parametrize("scale,offset", [(1e-3, 0.0), (1e3, 0.0), (1.0, 100.0), (1e-2, -5.0), (1e15, 1e16)])
def test_magnitudes(isa, rng, n, scale, offset):
    x = randn(rng, 4, n, scale=scale, offset=offset)
    check_layer_norm(x, randn(rng, n), randn(rng, n), eps=1e-5 * scale**2)


@pytest.mark.parametrize("n", [1, 7, 64])
def test_constant_rows_give_bias(isa, rng, n):
    x = np.full((3, n), 0.1, dtype=np.float32)
    w, b = randn(rng, n), randn(rng, n)
    check_layer_norm(x, w, b)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_non_contiguous_and_big_endian(isa, rng, layout):
    make = LAYOUTS[layout]
    x, r = randn(rng, 11, 41), randn(rng, 11, 41)
    w, b = randn(rng, 41), randn(rng, 41)
    expected = ref.layer_norm(x, w, b, residual=r)
    scale = ref.layer_norm_scale(x, w, b, residual=r)
    for args in [(make(x), w, b, r), (x, make(w), make(b), r), (x, w, b, make(r)),
                 (make(x), make(w), make(b), make(r))]:
        out = pt.ops.layer_norm(args[0], args[1], args[2], residual=args[3])
        assert out.flags.c_contiguous and out.dtype.isnative
        assert_close(out, expected, RTOL, scale, err_msg=layout)


def test_inputs_not_modified(isa, rng):
    x, r, w, b = randn(rng, 6, 19), randn(rng, 6, 19), randn(rng, 19), randn(rng, 19)
    copies = [a.copy() for a in (x, r, w, b)]
    pt.ops.layer_norm(x, w, b, residual=r)
    for a, c in zip((x, r, w, b), copies):
        np.testing.assert_array_equal(a, c)


def test_defaults(isa, rng):
    x = randn(rng, 4, 30)
    np.testing.assert_array_equal(pt.ops.layer_norm(x, None, None), pt.ops.layer_norm(x, None, None, 1e-5, None))
    np.testing.assert_array_equal(pt.ops.layer_norm(x, None, None),
                                  pt.ops.layer_norm(x, np.ones(30, np.float32), np.zeros(30, np.float32)))


@pytest.mark.parametrize("n", [1, 5, 17, 40])
def test_special_values(isa, rng, n):
    # A NaN or inf anywhere in a row (of x + residual) makes the whole row NaN.
    x = randn(rng, 5, n)
    r = randn(rng, 5, n)
    x[1, n // 2] = np.nan
    x[2, 0] = np.inf
    r[3, n - 1] = -np.inf
    w, b = randn(rng, n), randn(rng, n)
    out = pt.ops.layer_norm(x, w, b, residual=r)
    with np.errstate(invalid="ignore"):
        expected = ref.layer_norm(x, w, b, residual=r)
    assert np.isnan(expected[1:4]).all() and not np.isnan(expected[[0, 4]]).any()
    assert_close(out, expected, RTOL, ref.layer_norm_scale(x[[0]], w, b, residual=r[[0]]).max())


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0,), (2, 0, 4)])
def test_empty(isa, shape):
    n = shape[-1]
    x = np.zeros(shape, dtype=np.float32)
    out = pt.ops.layer_norm(x, np.ones(n, np.float32), np.zeros(n, np.float32), residual=x.copy())
    assert out.shape == shape and out.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), n=st.integers(2, 300), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(1e-2, 1e2), offset=st.floats(-10.0, 10.0))
def test_property_normalised(rows, n, seed, scale, offset):
    # weight 1 / bias 0: every row has mean ~0 and (biased) variance ~1.
    rng = np.random.default_rng(seed)
    x = randn(rng, rows, n, scale=scale, offset=offset)
    if np.any(np.ptp(x, axis=-1) == 0):
        return
    eps = 1e-5 * scale**2 * 1e-6  # negligible next to the variance
    s = ref.layer_norm_scale(x, eps=eps).max()
    var = ref.layer_norm(x, eps=0.0).var(axis=-1)  # 1 up to rounding, exact reference
    for _ in each_isa():
        y = check_layer_norm(x, eps=eps).astype(np.float64)
        np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=4 * RTOL * s)
        np.testing.assert_allclose(y.var(axis=-1), var, rtol=0, atol=4 * RTOL * s)

"""pt.ops.linear against the float64 reference, on both kernel paths for every ISA.

M = prod(x.shape[:-1]) <= 16 rows runs the skinny dot-product kernel on the raw
weight; more rows run the packed GEMM. Sizes straddle the vector widths (4, 8, 16),
the register tiles and the KC blocking (256).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pytransformer as pt
import reference as ref
from helpers import each_isa, DENORM_ULP, LAYOUTS, assert_close, randn

RTOL = 1e-4  # float32 GEMM rounding, relative to |x| @ |W|.T + |b|

SKINNY_M = [1, 2, 5, 16]
GEMM_M = [17, 31, 130, 257, 400]
KS = [1, 3, 7, 17, 64, 257, 1000]
NS = [1, 3, 7, 17, 33, 64, 257, 1000]


def check_linear(x, w, b=None, activation=None, **kw):
    out = pt.ops.linear(x, w, b, activation, **kw)
    assert_close(out, ref.linear(x, w, b, activation), RTOL, ref.linear_scale(x, w, b),
                 err_msg=f"x{x.shape} w{w.shape} bias={b is not None} act={activation}")
    return out


@pytest.mark.parametrize("N", NS)
@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("M", SKINNY_M + GEMM_M)
def test_shapes(isa, rng, M, K, N):
    x = randn(rng, M, K)
    w = randn(rng, N, K)
    check_linear(x, w)


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "silu"])
@pytest.mark.parametrize("M", [1, 3, 16, 17, 40, 257, 400])
@pytest.mark.parametrize("K,N", [(7, 33), (64, 64), (257, 100), (300, 17)])
def test_bias_activation_fusion(isa, rng, M, K, N, activation):
    x = randn(rng, M, K)
    w = randn(rng, N, K, scale=0.2)
    b = randn(rng, N)
    check_linear(x, w, b, activation)
    check_linear(x, w, None, activation)


@pytest.mark.parametrize("lead", [(), (3,), (2, 3), (2, 1, 9), (4, 5)])
def test_leading_dims(isa, rng, lead):
    # M = prod(lead): 1, 3, 6, 18, 20 -- both sides of the skinny/GEMM threshold.
    x = randn(rng, *lead, 37)
    w = randn(rng, 19, 37)
    b = randn(rng, 19)
    out = check_linear(x, w, b, "gelu")
    assert out.shape == lead + (19,)


def test_keyword_arguments(isa, rng):
    x, w, b = randn(rng, 5, 8), randn(rng, 3, 8), randn(rng, 3)
    out = pt.ops.linear(x=x, weight=w, bias=b, activation="relu")
    assert_close(out, ref.linear(x, w, b, "relu"), RTOL, ref.linear_scale(x, w, b))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("M", [3, 40])
def test_non_contiguous_and_big_endian(isa, rng, layout, M):
    make = LAYOUTS[layout]
    x, w, b = randn(rng, M, 23), randn(rng, 29, 23), randn(rng, 29)
    expected = ref.linear(x, w, b, "relu")
    scale = ref.linear_scale(x, w, b)
    for args in [(make(x), w, b), (x, make(w), b), (x, w, make(b)), (make(x), make(w), make(b))]:
        out = pt.ops.linear(*args, activation="relu")
        assert out.flags.c_contiguous and out.dtype == np.float32 and out.dtype.isnative
        assert_close(out, expected, RTOL, scale, err_msg=layout)


def test_inputs_not_modified(isa, rng):
    x, w, b = randn(rng, 20, 9), randn(rng, 4, 9), randn(rng, 4)
    copies = [a.copy() for a in (x, w, b)]
    pt.ops.linear(x, w, b, "gelu")
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("M", [1, 16, 17, 100])
def test_rows_of_a_batch_match_single_rows(isa, rng, M):
    # Each output row is x_m @ W.T on its own: compare to the reference row by row,
    # with very different magnitudes per row so a mixed-up row would show.
    x = randn(rng, M, 50) * np.logspace(-3, 3, M, dtype=np.float32)[:, None]
    w = randn(rng, 21, 50)
    check_linear(x, w)


@pytest.mark.parametrize("K,N", [(50, 21), (300, 70), (600, 100)])
def test_a_row_gives_the_same_bits_in_any_batch(isa, rng, restore_threads, K, N):
    # Batches of different sizes take different GEMM loop orders (a few rows: each W
    # panel swept over the rows; hundreds of rows per thread: W streamed past each row
    # tile) and, with threads, different splits (over N, or over M for large batches
    # and narrow W); every output must still be the same fma chain.
    x = randn(rng, 1000, K)
    w = randn(rng, N, K)
    b = randn(rng, N)
    pt.set_num_threads(1)
    full = pt.ops.linear(x, w, b, "gelu")
    for rows in (17, 40, 100, 390, 1000):
        for threads in (1, 2, 3):
            pt.set_num_threads(threads)
            part = pt.ops.linear(x[:rows], w, b, "gelu")
            np.testing.assert_array_equal(part.view(np.uint32), full[:rows].view(np.uint32),
                                          err_msg=f"{rows} rows, {threads} threads vs 1000 rows, 1 thread ({isa})")


@pytest.mark.parametrize("M", [1, 5, 17, 64])
def test_exact_small_integers(isa, rng, M):
    # Integer-valued inputs small enough that every partial sum is exact in float32:
    # any ISA, any summation order must give the exact answer.
    x = rng.integers(-8, 9, size=(M, 70)).astype(np.float32)
    w = rng.integers(-8, 9, size=(45, 70)).astype(np.float32)
    b = rng.integers(-100, 101, size=45).astype(np.float32)
    out = pt.ops.linear(x, w, b)
    np.testing.assert_array_equal(out, (x.astype(np.int64) @ w.T.astype(np.int64) + b).astype(np.float32))
    np.testing.assert_array_equal(pt.ops.linear(x, w, b, "relu"),
                                  np.maximum(out, 0))


@pytest.mark.parametrize("M", [2, 20])
def test_large_and_tiny_magnitudes(isa, rng, M):
    for s in [1e-20, 1e-3, 1e3, 1e15]:
        x = randn(rng, M, 33, scale=s)
        w = randn(rng, 11, 33)
        check_linear(x, w, None, None)


@pytest.mark.parametrize("M", [1, 5, 17, 40])
def test_gelu_epilogue_exact_preactivations(isa, rng, M):
    # Half-integer products with few terms: every pre-activation z is exact in float32
    # whatever the summation order, so the fused gelu must meet gelu's own accuracy
    # (1e-5 relative) on z in [-36, 36], far negative tail included.
    x = rng.integers(0, 4, size=(M, 6)).astype(np.float32)
    w = (rng.integers(-6, 7, size=(37, 6)) * 0.5).astype(np.float32)
    w[0] = -3.0  # z = -3 * sum(x): deep in the tail
    b = (rng.integers(-4, 5, size=37) * 0.25).astype(np.float32)
    z = ref.linear(x, w, b)
    np.testing.assert_array_equal(pt.ops.linear(x, w, b), z.astype(np.float32))
    assert_close(pt.ops.linear(x, w, b, "gelu"), ref.gelu(z), 1e-5, atol=DENORM_ULP)
    np.testing.assert_array_equal(pt.ops.linear(x, w, b, "relu"), ref.relu(z).astype(np.float32))


# ---------------------------------------------------------------------------
# Empty dimensions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "silu"])
@pytest.mark.parametrize("M", [1, 3, 16, 17, 40])
def test_k_zero_gives_activation_of_bias(isa, rng, M, activation):
    x = np.zeros((M, 0), dtype=np.float32)
    w = np.zeros((7, 0), dtype=np.float32)
    b = randn(rng, 7)
    out = pt.ops.linear(x, w, b, activation)
    assert out.shape == (M, 7)
    assert_close(out, np.broadcast_to(ref.linear(x, w, b, activation), (M, 7)), 1e-5)
    out = pt.ops.linear(x, w, None, activation)
    np.testing.assert_array_equal(out, np.zeros((M, 7), dtype=np.float32))


@pytest.mark.parametrize(
    "x_shape,w_shape,out_shape",
    [((0, 5), (3, 5), (0, 3)), ((2, 0, 5), (3, 5), (2, 0, 3)), ((4, 5), (0, 5), (4, 0)),
     ((40, 5), (0, 5), (40, 0)), ((0, 0), (0, 0), (0, 0)), ((0, 5), (0, 5), (0, 0))],
)
def test_empty(isa, x_shape, w_shape, out_shape):
    x = np.ones(x_shape, dtype=np.float32)
    w = np.ones(w_shape, dtype=np.float32)
    b = np.ones(w_shape[0], dtype=np.float32)
    for bias in (None, b):
        out = pt.ops.linear(x, w, bias, "relu")
        assert out.shape == out_shape and out.dtype == np.float32


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(1, 80), N=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       use_bias=st.booleans(), activation=st.sampled_from([None, "relu", "gelu"]))
def test_property_matches_reference(M, K, N, seed, use_bias, activation):
    for _ in each_isa():
        rng = np.random.default_rng(seed)
        x, w = randn(rng, M, K), randn(rng, N, K)
        b = randn(rng, N) if use_bias else None
        check_linear(x, w, b, activation)


@settings(max_examples=20, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(1, 64), N=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_property_linear_in_x(M, K, N, seed):
    # f(a x1 + x2) = a f(x1) + f(x2) within GEMM rounding; scaling by a power of two
    # is exact.
    for _ in each_isa():
        rng = np.random.default_rng(seed)
        x1, x2, w = randn(rng, M, K), randn(rng, M, K), randn(rng, N, K)
        f = lambda x: pt.ops.linear(x, w).astype(np.float64)  # noqa: E731
        np.testing.assert_array_equal(f(4.0 * x1), 4.0 * f(x1))
        lhs = f(x1 + x2)
        rhs = f(x1) + f(x2)
        scale = ref.linear_scale(np.abs(x1) + np.abs(x2), w)
        assert np.all(np.abs(lhs - rhs) <= 3 * RTOL * scale)

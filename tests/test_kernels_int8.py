"""The int8 GEMM (pt.ops.int8_matmul / linear_int8) and quantization, on every int8
kernel this CPU runs (generic, avx2, avx2_vnni, avx512, avx512_vnni as available).

The reference is numpy integer arithmetic: int64 sums of the int8 products are exact,
so the kernels' int32 sums must equal them bit for bit, whatever the ISA, the shape
(odd sizes straddling the 4-byte k groups, the register tiles and the vector widths),
the thread count or the extremes (all +-127: no int16 saturation in the AVX2 / AVX-512BW
sign trick, no overflow in the u8 + 128 offset of VNNI). The float32 result of
linear_int8 is checked against numpy applying the same quantization rule and the same
epilogue (float32 products in the same order), so it must match to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
import reference as ref

INT8_KERNELS = list(pt.runtime_info()["int8_available"])

SHAPES = [(1, 1, 1), (1, 3, 5), (2, 4, 16), (3, 5, 7), (1, 512, 2048), (4, 63, 33), (12, 128, 32),
          (13, 67, 45), (16, 512, 512), (17, 1, 9), (100, 130, 97), (257, 33, 129), (64, 384, 1536)]


def rand_int8(rng, *shape):
    return rng.integers(-127, 128, shape, dtype=np.int8)


def exact(x, w):
    return x.astype(np.int64) @ w.astype(np.int64).T


def np_quantize(x):
    """The documented rule, in numpy: scale = max|x| / 127 per row,
    q = round-half-even(x * (127 / max|x|)) (float32 arithmetic), clamped to [-127, 127]."""
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=-1)
    tiny = amax < np.float32(1e-30)
    with np.errstate(divide="ignore"):
        inv = np.where(tiny, np.float32(0), np.float32(127) / np.where(tiny, np.float32(1), amax)).astype(np.float32)
    q = np.clip(x * inv[..., None], np.float32(-127), np.float32(127))
    q = np.rint(q).astype(np.int8)
    scale = np.where(tiny, np.float32(0), amax / np.float32(127)).astype(np.float32)
    return q, scale


@pytest.mark.parametrize("kernel", INT8_KERNELS)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_int32_sums_exact(rng, kernel, M, K, N):
    x, w = rand_int8(rng, M, K), rand_int8(rng, N, K)
    out = pt.ops.int8_matmul(x, w, kernel=kernel)
    assert out.dtype == np.int32 and out.shape == (M, N)
    np.testing.assert_array_equal(out, exact(x, w))


@pytest.mark.parametrize("kernel", INT8_KERNELS)
@pytest.mark.parametrize("sx,sw", [(127, 127), (127, -127), (-127, -127), (-127, 127)])
def test_extremes_do_not_saturate(kernel, sx, sw):
    # Every pair product 127 * 127: int16 pair sums of 2 * 16129 = 32258 (< 32767); with
    # a u8 offset the (q + 128) * w products reach 255 * 127 per byte (vpdpbusd sums in int32).
    for M, K, N in [(1, 4096, 32), (13, 1000, 45), (3, 7, 5)]:
        x = np.full((M, K), sx, np.int8)
        w = np.full((N, K), sw, np.int8)
        out = pt.ops.int8_matmul(x, w, kernel=kernel)
        np.testing.assert_array_equal(out, np.full((M, N), sx * sw * K, np.int64))
    # Alternating signs along k (the sign trick must negate per byte).
    rng = np.random.default_rng(5)
    x = (rng.integers(0, 2, (9, 517)) * 254 - 127).astype(np.int8)
    w = (rng.integers(0, 2, (70, 517)) * 254 - 127).astype(np.int8)
    np.testing.assert_array_equal(pt.ops.int8_matmul(x, w, kernel=kernel), exact(x, w))


def test_kernels_and_threads_agree(rng, restore_threads):
    x, w = rand_int8(rng, 300, 777), rand_int8(rng, 515, 777)
    want = exact(x, w)
    for threads in (1, 2, 3):
        pt.set_num_threads(threads)
        for kernel in INT8_KERNELS:
            np.testing.assert_array_equal(pt.ops.int8_matmul(x, w, kernel=kernel), want,
                                          err_msg=f"{kernel}, {threads} threads")


@pytest.mark.parametrize("kernel", INT8_KERNELS)
def test_quantize_rows_is_the_documented_rule(rng, kernel):
    x = rng.standard_normal((37, 301)).astype(np.float32) * rng.uniform(0.01, 100, (37, 1)).astype(np.float32)
    x[3] = 0.0
    x[4, :5] = [0.5, -0.5, 1.5, 2.5, -127.0]  # ties round half to even
    q, scale = pt.ops.quantize_rows(x, kernel=kernel)
    q_ref, s_ref = np_quantize(x)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(scale, s_ref)
    assert q.min() >= -127 and scale[3] == 0 and not q[3].any()


@pytest.mark.parametrize("kernel", INT8_KERNELS)
def test_quantize_rows_non_finite_rows_give_nan_scale(kernel):
    x = np.ones((3, 20), np.float32)
    x[1, 7] = np.nan
    x[2, 19] = -np.inf
    _, scale = pt.ops.quantize_rows(x, kernel=kernel)
    assert scale[0] == np.float32(1 / 127) and np.isnan(scale[1]) and np.isnan(scale[2])
    w = np.ones((4, 20), np.int8)
    y = pt.ops.linear_int8(x, w, np.ones(4, np.float32), kernel=kernel)
    assert np.isfinite(y[0]).all() and np.isnan(y[1]).all() and np.isnan(y[2]).all()


def test_quantize_weight(rng):
    w = rng.standard_normal((50, 77)).astype(np.float32)
    w[7] = 0
    q, scale = pt.ops.quantize_weight(w)
    q_ref, s_ref = np_quantize(w)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(scale, s_ref)
    # Reconstruction within half a step per element.
    assert (np.abs(q * scale[:, None] - w) <= scale[:, None] * 0.5 * (1 + 1e-5)).all()
    with pytest.raises(ValueError, match="NaN or infinity"):
        pt.ops.quantize_weight(np.array([[1.0, np.nan]], np.float32))


@pytest.mark.parametrize("kernel", INT8_KERNELS)
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "silu"])
@pytest.mark.parametrize("M,K,N", [(1, 64, 48), (5, 100, 33), (40, 257, 130)])
def test_linear_int8_matches_numpy(rng, kernel, activation, M, K, N):
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    r = rng.standard_normal((M, N)).astype(np.float32)
    wq, ws = pt.ops.quantize_weight(w)
    y = pt.ops.linear_int8(x, wq, ws, b, activation, r, kernel=kernel)
    xq, xs = np_quantize(x)
    acc = exact(xq, wq).astype(np.float32)  # exact: |sums| < 2^24
    pre = (acc * xs[:, None]).astype(np.float32) * ws[None, :] + b
    want = {None: lambda v: v, "relu": ref.relu, "gelu": ref.gelu, "silu": ref.silu}[activation](
        pre.astype(np.float64)) + r
    # Float32 rounding of the epilogue (and the activation's own approximation).
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=2e-6 * np.abs(want).max())
    # And close to the float32 layer: per-row int8 of both operands.
    f32 = pt.ops.linear(x, w, b, activation) + r
    bound = (np.abs(x).max(1, keepdims=True) * ws[None, :] / 2 + xs[:, None] * np.abs(w).max(1)[None, :] / 2) * K
    assert (np.abs(y - f32) <= bound + 1e-5).all()


def test_linear_int8_batch_rows_are_independent(rng):
    # A row gives the same bits alone or in a batch (per-row quantization, exact sums).
    x = rng.standard_normal((33, 200)).astype(np.float32)
    wq, ws = pt.ops.quantize_weight(rng.standard_normal((90, 200)).astype(np.float32))
    full = pt.ops.linear_int8(x, wq, ws)
    for i in (0, 7, 32):
        np.testing.assert_array_equal(pt.ops.linear_int8(x[i:i + 1], wq, ws), full[i:i + 1])
    np.testing.assert_array_equal(pt.ops.linear_int8(x.reshape(3, 11, 200), wq, ws).reshape(33, 90), full)


def test_errors():
    x = np.zeros((2, 4), np.int8)
    with pytest.raises(TypeError, match="int8"):
        pt.ops.int8_matmul(x.astype(np.int16), x)
    with pytest.raises(ValueError, match="-128"):
        pt.ops.int8_matmul(np.full((2, 4), -128, np.int8), x)
    with pytest.raises(ValueError, match="in_features"):
        pt.ops.int8_matmul(x, np.zeros((3, 5), np.int8))
    with pytest.raises(ValueError, match="not available"):
        pt.ops.int8_matmul(x, x, kernel="avx1024")
    with pytest.raises(ValueError, match="weight_scale"):
        pt.ops.linear_int8(np.zeros((2, 4), np.float32), x, np.ones(3, np.float32))
    with pytest.raises(TypeError):
        pt.ops.linear_int8(np.zeros((2, 4), np.float32), x.astype(np.float32), np.ones(2, np.float32))
    assert pt.ops.int8_matmul(np.zeros((0, 4), np.int8), x).shape == (0, 2)
    np.testing.assert_array_equal(pt.ops.int8_matmul(np.zeros((3, 0), np.int8), np.zeros((2, 0), np.int8)),
                                  np.zeros((3, 2)))


def test_runtime_info_names_the_int8_kernel():
    info = pt.runtime_info()
    assert info["int8_kernel"] in info["int8_available"]
    assert info["int8_available"][0] == "generic"
    assert info["int8_kernel"].split("_vnni")[0] == info["isa"] or info["isa"] == "generic"
    c = info["caches"]
    assert c["l1d"] >= 4096 and c["l2"] >= c["l1d"] and c["source"] in ("sysfs", "cpuid", "env", "default")

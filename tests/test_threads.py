"""Results are bitwise identical for any thread count (DESIGN.md: partition output
tiles, never split a reduction across threads), for every ISA.

Shapes are large enough that the kernels really use several threads (each kernel
only forks when every thread gets a minimum amount of work).
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import pytransformer as pt
from helpers import randn

THREADS = [2, 3]


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def assert_same_bits_for_any_thread_count(fn, restore_threads):
    pt.set_num_threads(1)
    assert pt.get_num_threads() == 1
    expected = fn()
    for n in THREADS:
        pt.set_num_threads(n)
        assert pt.get_num_threads() == n
        out = fn()
        assert out.shape == expected.shape
        diff = bits(out) != bits(expected)
        assert not diff.any(), (f"{n} threads differ from 1 thread at {int(diff.sum())} of {diff.size} elements, "
                                f"first at {np.argwhere(diff)[0].tolist()}")


@pytest.mark.parametrize("activation", [None, "gelu"])
@pytest.mark.parametrize("M,K,N", [(257, 300, 1000), (1000, 512, 512), (3, 512, 2000), (16, 1000, 257),
                                   (17, 1000, 130), (130, 2000, 33)])
def test_linear(isa, rng, restore_threads, M, K, N, activation):
    x, w, b = randn(rng, M, K), randn(rng, N, K), randn(rng, N)
    assert_same_bits_for_any_thread_count(lambda: pt.ops.linear(x, w, b, activation), restore_threads)


def test_softmax(isa, rng, restore_threads):
    x = randn(rng, 1000, 257, scale=3.0)
    assert_same_bits_for_any_thread_count(lambda: pt.ops.softmax(x), restore_threads)


def test_layer_norm(isa, rng, restore_threads):
    x, r, w, b = randn(rng, 1000, 257), randn(rng, 1000, 257), randn(rng, 257), randn(rng, 257)
    assert_same_bits_for_any_thread_count(lambda: pt.ops.layer_norm(x, w, b, residual=r), restore_threads)


def test_gelu(isa, rng, restore_threads):
    x = randn(rng, 100_003, scale=4.0)
    assert_same_bits_for_any_thread_count(lambda: pt.ops.gelu(x), restore_threads)


def test_relu(isa, rng, restore_threads):
    x = randn(rng, 300_001)
    assert_same_bits_for_any_thread_count(lambda: pt.ops.relu(x), restore_threads)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_attention(isa, rng, restore_threads, causal, use_mask):
    q, k, v = randn(rng, 2, 4, 200, 64), randn(rng, 2, 4, 200, 64), randn(rng, 2, 4, 200, 64)
    mask = None
    if use_mask:
        mask = rng.random((2, 200)) < 0.3
        mask[1, :] = True
    assert_same_bits_for_any_thread_count(
        lambda: pt.ops.attention(q, k, v, key_padding_mask=mask, causal=causal), restore_threads)


@pytest.mark.parametrize("mode", ["self", "cross"])
def test_multi_head_attention(isa, rng, restore_threads, mode):
    E = 256
    x, mem = randn(rng, 2, 100, E), randn(rng, 2, 70, E)
    w = [randn(rng, 3 * E, E, scale=0.06), randn(rng, 3 * E), randn(rng, E, E, scale=0.06), randn(rng, E)]
    mask = rng.random((2, 100 if mode == "self" else 70)) < 0.2
    kv = x if mode == "self" else mem
    assert_same_bits_for_any_thread_count(
        lambda: pt.ops.multi_head_attention(x, kv, kv, *w, 8, key_padding_mask=mask, causal=mode == "self"),
        restore_threads)


# ---------------------------------------------------------------------------
# Related determinism contracts of the kernels
# ---------------------------------------------------------------------------


def test_packed_gemm_rows_do_not_depend_on_batch(isa, rng):
    # gemm_impl.h: every output is one fma chain over k in order, so a row gives the
    # same bits whatever the other rows of the (packed-path, M > 16) batch are.
    x, w, b = randn(rng, 300, 700), randn(rng, 90, 700), randn(rng, 90)
    full = pt.ops.linear(x, w, b, "gelu")
    for lo, hi in [(0, 17), (5, 40), (100, 300), (283, 300)]:
        np.testing.assert_array_equal(bits(pt.ops.linear(x[lo:hi], w, b, "gelu")), bits(full[lo:hi]))


def test_attention_rows_do_not_depend_on_query_block(isa, rng):
    # attention_impl.h: each output row is computed in a fixed order, independent of
    # Lq and of the query block it falls in.
    q, k, v = randn(rng, 1, 2, 100, 32), randn(rng, 1, 2, 150, 32), randn(rng, 1, 2, 150, 40)
    mask = rng.random((1, 150)) < 0.2
    full = pt.ops.attention(q, k, v, key_padding_mask=mask)
    for lo, hi in [(0, 1), (5, 6), (31, 33), (40, 100)]:
        part = pt.ops.attention(q[:, :, lo:hi], k, v, key_padding_mask=mask)
        np.testing.assert_array_equal(bits(part), bits(full[:, :, lo:hi]))


def test_concurrent_python_threads(isa, rng):
    # The GIL is released while kernels run: ops called from several Python threads
    # at once must give the same results as serial calls.
    x, w, b = randn(rng, 200, 256), randn(rng, 300, 256), randn(rng, 300)
    q, k, v = randn(rng, 2, 4, 64, 32), randn(rng, 2, 4, 90, 32), randn(rng, 2, 4, 90, 32)
    y = randn(rng, 300, 513)
    jobs = [lambda: pt.ops.linear(x, w, b, "gelu"), lambda: pt.ops.linear(x[:5], w, b),
            lambda: pt.ops.attention(q, k, v, causal=True), lambda: pt.ops.softmax(y),
            lambda: pt.ops.layer_norm(y, None, None), lambda: pt.ops.gelu(y)]
    expected = [job() for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(i, pool.submit(jobs[i])) for _ in range(8) for i in range(len(jobs))]
        for i, f in futures:
            np.testing.assert_array_equal(bits(f.result()), bits(expected[i]))

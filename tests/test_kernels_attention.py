"""pt.ops.attention against the float64 reference, for every ISA.

The kernel tiles queries in blocks of 32 and keys in blocks of 4 vectors (16, 32 or
64 keys by ISA), with an online softmax; sizes straddle those blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pytransformer as pt
import reference as ref
from helpers import LAYOUTS, assert_close, each_isa, randn

RTOL = 1e-5

LQS = [1, 3, 7, 17, 32, 33, 100]
LKS = [1, 3, 7, 16, 17, 63, 64, 65, 129, 257, 1000]


def value_scale(v, key_padding_mask=None):
    """max |v| over the keys a query may see, per (batch, head): the output is a convex
    combination of those rows of v."""
    a = np.abs(v.astype(np.float64))
    if key_padding_mask is not None:
        a = np.where(key_padding_mask[:, None, :, None], 0.0, a)
    return a.max(axis=(2, 3), keepdims=True, initial=0.0)


def check_attention(q, k, v, key_padding_mask=None, causal=False, scale=None, err_msg=""):
    out = pt.ops.attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal, scale=scale)
    expected = ref.attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal, scale=scale)
    assert_close(out, expected, RTOL, value_scale(v, key_padding_mask),
                 err_msg=err_msg or f"q{q.shape} k{k.shape} v{v.shape} mask={key_padding_mask is not None} "
                                    f"causal={causal} scale={scale}")
    return out


def qkv(rng, B, H, Lq, Lk, D, Dv=None):
    Dv = D if Dv is None else Dv
    return randn(rng, B, H, Lq, D), randn(rng, B, H, Lk, D), randn(rng, B, H, Lk, Dv)


@pytest.mark.parametrize("Lk", LKS)
@pytest.mark.parametrize("Lq", LQS)
def test_lengths(isa, rng, Lq, Lk):
    check_attention(*qkv(rng, 2, 2, Lq, Lk, 17, 33))


@pytest.mark.parametrize("Dv", [1, 3, 8, 16, 17, 64, 65, 100])
@pytest.mark.parametrize("D", [1, 3, 7, 8, 16, 17, 64, 80, 128])
def test_head_sizes(isa, rng, D, Dv):
    check_attention(*qkv(rng, 1, 2, 37, 70, D, Dv))


@pytest.mark.parametrize("B,H", [(1, 1), (3, 1), (1, 5), (2, 3)])
def test_batch_and_heads(isa, rng, B, H):
    # Each (b, h) must see its own q, k, v: different magnitudes per slice.
    q, k, v = qkv(rng, B, H, 19, 45, 16, 24)
    v *= np.logspace(-2, 2, B * H, dtype=np.float32).reshape(B, H, 1, 1)
    check_attention(q, k, v)


@pytest.mark.parametrize("Lk", [1, 7, 17, 64, 65, 300])
@pytest.mark.parametrize("Lq", [1, 5, 33, 80])
def test_causal(isa, rng, Lq, Lk):
    # Top-left aligned: query i sees keys j <= i, also when Lq != Lk.
    check_attention(*qkv(rng, 2, 2, Lq, Lk, 16, 20), causal=True)
    # Query 0 sees key 0 alone: its output is exactly that value row.
    q, k, v = qkv(rng, 1, 1, Lq, Lk, 16, 20)
    first = pt.ops.attention(q, k, v, causal=True)[0, 0, 0]
    assert_close(first, v[0, 0, 0].astype(np.float64), RTOL, np.abs(v[0, 0, 0]).max())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Lq,Lk", [(1, 1), (5, 9), (33, 17), (40, 100), (17, 257)])
def test_key_padding_mask(isa, rng, Lq, Lk, causal):
    B = 4
    q, k, v = qkv(rng, B, 3, Lq, Lk, 16)
    mask = rng.random((B, Lk)) < 0.4
    mask[1, :] = True  # a fully padded batch: zeros
    mask[2, :] = False
    mask[3, :] = False
    mask[3, : (Lk + 1) // 2] = True  # with causal, the first queries see nothing
    # Padded positions hold huge values: they must not leak into the result.
    k = np.where(mask[:, None, :, None], np.float32(1e30), k)
    v = np.where(mask[:, None, :, None], np.float32(-1e30), v)
    out = check_attention(q, k, v, key_padding_mask=mask, causal=causal)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("Lk", [1, 16, 17, 64, 65, 200])
def test_padding_at_the_ends(isa, rng, Lk):
    q, k, v = qkv(rng, 3, 2, 9, Lk, 8)
    mask = np.zeros((3, Lk), dtype=bool)
    mask[0, Lk // 2:] = True  # right padding
    mask[1, : Lk // 2] = True  # left padding
    mask[2, -1] = True
    check_attention(q, k, v, key_padding_mask=mask)
    check_attention(q, k, v, key_padding_mask=mask, causal=True)


def test_query_that_sees_no_key_returns_zeros(isa, rng):
    q, k, v = qkv(rng, 1, 2, 6, 6, 4)
    mask = np.array([[True, True, False, False, False, False]])
    out = pt.ops.attention(q, k, v, key_padding_mask=mask, causal=True)
    np.testing.assert_array_equal(out[:, :, :2], 0.0)
    assert np.all(np.abs(out[:, :, 2:]) > 0)
    check_attention(q, k, v, key_padding_mask=mask, causal=True)


@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.05, 0.5, 1.0, 3.0, -1.0])
def test_custom_scale(isa, rng, scale):
    check_attention(*qkv(rng, 2, 2, 20, 50, 16), scale=scale)
    check_attention(*qkv(rng, 1, 1, 3, 70, 8), scale=scale, causal=True)


def test_default_scale_is_inverse_sqrt_d(isa, rng):
    q, k, v = qkv(rng, 1, 2, 10, 30, 25)
    np.testing.assert_array_equal(pt.ops.attention(q, k, v), pt.ops.attention(q, k, v, scale=0.2))


def test_zero_scale_averages_visible_values(isa, rng):
    q, k, v = qkv(rng, 2, 1, 4, 50, 8)
    mask = np.zeros((2, 50), dtype=bool)
    mask[1, 10:] = True
    out = pt.ops.attention(q, k, v, key_padding_mask=mask, scale=0.0)
    expected = np.stack([v[0, 0].astype(np.float64).mean(axis=0), v[1, 0, :10].astype(np.float64).mean(axis=0)])
    assert_close(out[:, 0], np.broadcast_to(expected[:, None], (2, 4, 8)), RTOL, value_scale(v)[:, 0])


@pytest.mark.parametrize("Lk", [5, 64, 300])
def test_peaked_scores(isa, rng, Lk):
    # Large scores: the softmax is nearly one-hot and most weights underflow.
    q, k, v = qkv(rng, 1, 2, 20, Lk, 16)
    check_attention(q, k, v, scale=4.0)


def test_one_key_returns_its_value(isa, rng):
    q, k, v = qkv(rng, 2, 3, 40, 1, 8, 12)
    out = pt.ops.attention(q, k, v)
    assert_close(out, np.broadcast_to(v.astype(np.float64), out.shape), RTOL, value_scale(v))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_non_contiguous_and_big_endian(isa, rng, layout):
    make = LAYOUTS[layout]
    q, k, v = qkv(rng, 2, 3, 21, 40, 12, 20)
    mask = rng.random((2, 40)) < 0.3
    expected = ref.attention(q, k, v, key_padding_mask=mask, causal=True)
    s = value_scale(v)
    for args in [(make(q), k, v), (q, make(k), v), (q, k, make(v)), (make(q), make(k), make(v))]:
        out = pt.ops.attention(*args, key_padding_mask=mask, causal=True)
        assert out.flags.c_contiguous and out.dtype.isnative
        assert_close(out, expected, RTOL, s, err_msg=layout)


def test_head_and_batch_views(isa, rng):
    # Views the way a model makes them: [B, L, H, D] storage transposed to [B, H, L, D],
    # a slice of heads, and a non-contiguous mask.
    x = randn(rng, 2, 30, 3, 16)
    q = x.transpose(0, 2, 1, 3)
    k = randn(rng, 2, 6, 50, 16)[:, 1::2]
    v = randn(rng, 2, 50, 3, 24).transpose(0, 2, 1, 3)
    mask = (rng.random((2, 100)) < 0.3)[:, ::2]
    assert not mask.flags.c_contiguous
    check_attention(q, k, v, key_padding_mask=mask)


def test_inputs_not_modified(isa, rng):
    q, k, v = qkv(rng, 1, 2, 10, 20, 8)
    mask = rng.random((1, 20)) < 0.5
    copies = [a.copy() for a in (q, k, v, mask)]
    pt.ops.attention(q, k, v, key_padding_mask=mask, causal=True)
    for a, c in zip((q, k, v, mask), copies):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------------------
# Empty dimensions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_no_keys_gives_zeros(isa, rng, causal):
    q = randn(rng, 2, 3, 5, 8)
    k = np.zeros((2, 3, 0, 8), dtype=np.float32)
    v = np.zeros((2, 3, 0, 6), dtype=np.float32)
    out = pt.ops.attention(q, k, v, causal=causal, key_padding_mask=np.zeros((2, 0), dtype=bool))
    assert out.shape == (2, 3, 5, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize(
    "B,H,Lq,Lk,D,Dv",
    [(0, 2, 3, 4, 8, 8), (2, 0, 3, 4, 8, 8), (2, 2, 0, 4, 8, 8), (2, 2, 3, 4, 8, 0), (0, 0, 0, 0, 0, 0)],
)
def test_empty(isa, B, H, Lq, Lk, D, Dv):
    q = np.ones((B, H, Lq, D), np.float32)
    k = np.ones((B, H, Lk, D), np.float32)
    v = np.ones((B, H, Lk, Dv), np.float32)
    for causal in (False, True):
        out = pt.ops.attention(q, k, v, causal=causal, key_padding_mask=np.zeros((B, Lk), dtype=bool))
        assert out.shape == (B, H, Lq, Dv) and out.dtype == np.float32


def test_zero_head_size_averages_values(isa, rng):
    # D = 0: every score is 0, so each query averages the values it sees.
    q = np.zeros((1, 2, 4, 0), np.float32)
    k = np.zeros((1, 2, 9, 0), np.float32)
    v = randn(rng, 1, 2, 9, 5)
    check_attention(q, k, v)
    check_attention(q, k, v, causal=True)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 2), H=st.integers(1, 3), Lq=st.integers(1, 70), Lk=st.integers(1, 140),
       D=st.integers(1, 40), Dv=st.integers(1, 40), causal=st.booleans(), use_mask=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_property_matches_reference(B, H, Lq, Lk, D, Dv, causal, use_mask, seed):
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, B, H, Lq, Lk, D, Dv)
    mask = rng.random((B, Lk)) < 0.5 if use_mask else None
    for _ in each_isa():
        check_attention(q, k, v, key_padding_mask=mask, causal=causal)


@settings(max_examples=20, deadline=None)
@given(Lq=st.integers(1, 40), Lk=st.integers(1, 100), seed=st.integers(0, 2**32 - 1))
def test_property_key_permutation(Lq, Lk, seed):
    # Without causal masking, attention is invariant to permuting the keys (with
    # their values and mask) up to rounding.
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, 1, 2, Lq, Lk, 8)
    mask = rng.random((1, Lk)) < 0.3
    perm = rng.permutation(Lk)
    for _ in each_isa():
        a = pt.ops.attention(q, k, v, key_padding_mask=mask)
        b = pt.ops.attention(q, k[:, :, perm], v[:, :, perm], key_padding_mask=mask[:, perm])
        np.testing.assert_allclose(a, b, rtol=0, atol=2 * RTOL * value_scale(v, mask).max())

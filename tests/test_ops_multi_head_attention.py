"""pt.ops.multi_head_attention against the float64 reference, for every ISA.

The op fuses projections by argument identity: the same array for query, key and
value is one [3E] GEMM (self-attention); the same array for key and value is one
[2E] GEMM (cross-attention); else three GEMMs. All three paths are checked, on
both sides of the skinny (B*L <= 16) / packed GEMM threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pytransformer as pt
import reference as ref
from helpers import LAYOUTS, assert_close, each_isa, randn

# Relative to the magnitude of the terms carried through the layer
# (reference.multi_head_attention_scale). The projections here have E <= 96 terms, so
# even worst-case float32 dot-product rounding (E * 2^-24 < 6e-6) stays within the
# attention ops' 1e-5.
RTOL = 1e-5


def weights(rng, E, in_bias=True, out_bias=True):
    s = 1.0 / np.sqrt(E)
    return dict(
        in_proj_weight=randn(rng, 3 * E, E, scale=s),
        in_proj_bias=randn(rng, 3 * E, scale=0.1) if in_bias else None,
        out_proj_weight=randn(rng, E, E, scale=s),
        out_proj_bias=randn(rng, E, scale=0.1) if out_bias else None,
    )


def check_mha(query, key, value, w, num_heads, key_padding_mask=None, causal=False, err_msg=""):
    out = pt.ops.multi_head_attention(query, key, value, w["in_proj_weight"], w["in_proj_bias"],
                                      w["out_proj_weight"], w["out_proj_bias"], num_heads,
                                      key_padding_mask=key_padding_mask, causal=causal)
    args = (query, key, value, w["in_proj_weight"], w["in_proj_bias"], w["out_proj_weight"],
            w["out_proj_bias"], num_heads)
    expected = ref.multi_head_attention(*args, key_padding_mask=key_padding_mask, causal=causal)
    scale = ref.multi_head_attention_scale(*args, key_padding_mask=key_padding_mask, causal=causal)
    assert_close(out, expected, RTOL, scale,
                 err_msg=err_msg or f"query{query.shape} key{key.shape} heads={num_heads} "
                                    f"mask={key_padding_mask is not None} causal={causal}")
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,L", [(1, 1), (1, 7), (2, 8), (1, 17), (3, 33), (2, 100)])
@pytest.mark.parametrize("E,heads", [(8, 1), (12, 3), (20, 4), (64, 8), (96, 6)])
def test_self_attention_fused(isa, rng, B, L, E, heads, causal):
    x = randn(rng, B, L, E)
    check_mha(x, x, x, weights(rng, E), heads, causal=causal)


@pytest.mark.parametrize("B,Lq,Lk", [(1, 1, 5), (2, 3, 17), (1, 20, 7), (2, 40, 65)])
@pytest.mark.parametrize("E,heads", [(12, 3), (64, 8)])
def test_cross_attention_shared_key_value(isa, rng, B, Lq, Lk, E, heads):
    query, memory = randn(rng, B, Lq, E), randn(rng, B, Lk, E)
    mask = rng.random((B, Lk)) < 0.3
    mask[:, 0] = False
    w = weights(rng, E)
    check_mha(query, memory, memory, w, heads)
    check_mha(query, memory, memory, w, heads, key_padding_mask=mask)
    check_mha(query, memory, memory, w, heads, causal=True)


@pytest.mark.parametrize("B,Lq,Lk", [(1, 1, 1), (2, 3, 17), (1, 20, 7), (2, 24, 24)])
@pytest.mark.parametrize("E,heads", [(12, 2), (40, 5)])
def test_distinct_query_key_value(isa, rng, B, Lq, Lk, E, heads):
    w = weights(rng, E)
    check_mha(randn(rng, B, Lq, E), randn(rng, B, Lk, E), randn(rng, B, Lk, E), w, heads)
    check_mha(randn(rng, B, Lq, E), randn(rng, B, Lk, E), randn(rng, B, Lk, E), w, heads, causal=True)


@pytest.mark.parametrize("B,L", [(2, 5), (2, 30)])
def test_equal_but_distinct_arrays_match_fused(isa, rng, B, L):
    # Copies (no identity, so no fusion) must compute the same attention.
    x = randn(rng, B, L, 24)
    w = weights(rng, 24)
    check_mha(x, x.copy(), x.copy(), w, 4)
    check_mha(x, x.copy(), x, w, 4)
    check_mha(x, x, x.copy(), w, 4)


@pytest.mark.parametrize("in_bias,out_bias", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("L", [4, 30])
def test_without_biases(isa, rng, in_bias, out_bias, L):
    x = randn(rng, 2, L, 16)
    w = weights(rng, 16, in_bias, out_bias)
    check_mha(x, x, x, w, 2)
    check_mha(x, randn(rng, 2, 9, 16), randn(rng, 2, 9, 16), w, 2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L", [6, 40])
def test_key_padding_mask(isa, rng, L, causal):
    B, E = 3, 32
    x = randn(rng, B, L, E)
    mask = rng.random((B, L)) < 0.3
    mask[0] = True  # a fully padded batch: the context is zero, the output is out_proj_bias
    mask[1] = False
    w = weights(rng, E)
    out = check_mha(x, x, x, w, 4, key_padding_mask=mask, causal=causal)
    np.testing.assert_array_equal(out[0], np.broadcast_to(w["out_proj_bias"], (L, E)))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_non_contiguous_and_big_endian(isa, rng, layout):
    make = LAYOUTS[layout]
    E = 16
    w = weights(rng, E)
    x, mem = randn(rng, 2, 19, E), randn(rng, 2, 11, E)
    mask = rng.random((2, 11)) < 0.3
    xv, memv = make(x), make(mem)
    check_mha(xv, xv, xv, w, 4, err_msg=layout)
    check_mha(xv, memv, memv, w, 4, key_padding_mask=mask, err_msg=layout)
    wv = {name: (None if a is None else make(a)) for name, a in w.items()}
    out = pt.ops.multi_head_attention(x, mem, mem, wv["in_proj_weight"], wv["in_proj_bias"],
                                      wv["out_proj_weight"], wv["out_proj_bias"], 4)
    assert out.flags.c_contiguous and out.dtype.isnative
    np.testing.assert_array_equal(out, pt.ops.multi_head_attention(
        x, mem, mem, w["in_proj_weight"], w["in_proj_bias"], w["out_proj_weight"], w["out_proj_bias"], 4))


def test_numpy_integer_num_heads(isa, rng):
    x = randn(rng, 1, 5, 8)
    w = weights(rng, 8)
    check_mha(x, x, x, w, np.int64(2))


def test_inputs_not_modified(isa, rng):
    x, mem = randn(rng, 2, 9, 8), randn(rng, 2, 4, 8)
    w = weights(rng, 8)
    copies = [x.copy(), mem.copy()] + [a.copy() for a in w.values()]
    pt.ops.multi_head_attention(x, mem, mem, *w.values(), 2)
    for a, c in zip([x, mem] + list(w.values()), copies):
        np.testing.assert_array_equal(a, c)


def test_no_keys_gives_out_proj_bias(isa, rng):
    E = 8
    w = weights(rng, E)
    query = randn(rng, 2, 3, E)
    empty = np.zeros((2, 0, E), np.float32)
    out = pt.ops.multi_head_attention(query, empty, empty, *w.values(), 2)
    np.testing.assert_array_equal(out, np.broadcast_to(w["out_proj_bias"], (2, 3, E)))


@pytest.mark.parametrize("B,Lq,Lk", [(0, 3, 3), (2, 0, 3), (0, 0, 0), (2, 0, 0)])
def test_empty(isa, rng, B, Lq, Lk):
    E = 8
    w = weights(rng, E)
    q = np.ones((B, Lq, E), np.float32)
    kv = np.ones((B, Lk, E), np.float32)
    out = pt.ops.multi_head_attention(q, kv, kv, *w.values(), 2)
    assert out.shape == (B, Lq, E) and out.dtype == np.float32
    if Lq == Lk:
        out = pt.ops.multi_head_attention(q, q, q, *w.values(), 2)
        assert out.shape == (B, Lq, E)


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), Lq=st.integers(1, 30), Lk=st.integers(1, 30), heads=st.integers(1, 4),
       D=st.integers(1, 12), mode=st.sampled_from(["self", "cross", "distinct"]), causal=st.booleans(),
       use_mask=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_property_matches_reference(B, Lq, Lk, heads, D, mode, causal, use_mask, seed):
    rng = np.random.default_rng(seed)
    E = heads * D
    w = weights(rng, E)
    query = randn(rng, B, Lq, E)
    if mode == "self":
        key = value = query
        Lk = Lq
    elif mode == "cross":
        key = value = randn(rng, B, Lk, E)
    else:
        key, value = randn(rng, B, Lk, E), randn(rng, B, Lk, E)
    mask = rng.random((B, Lk)) < 0.4 if use_mask else None
    for _ in each_isa():
        check_mha(query, key, value, w, heads, key_padding_mask=mask, causal=causal)

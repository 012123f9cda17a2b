"""Parity with PyTorch (CPU, float32) for every op that has a torch counterpart.

Skipped when torch is not installed. Both sides round in float32, so each comparison
uses the same scaled tolerance as the reference tests (the error of either side is
relative to the magnitude of the terms behind an output).
"""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
import reference as ref
from helpers import DENORM_ULP, assert_close, randn

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-5
RTOL_LINEAR = 1e-4
FLUSH = float(np.finfo(np.float32).tiny)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.inference_mode():
        yield


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def n(tensor):
    return tensor.detach().numpy().astype(np.float64)


# ---------------------------------------------------------------------------
# Linear, softmax, layer_norm, gelu
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
@pytest.mark.parametrize("lead,K,N", [((1,), 64, 33), ((5,), 17, 257), ((16,), 1000, 7), ((17,), 257, 64),
                                      ((2, 65), 130, 100), ((3, 4, 11), 33, 17)])
def test_linear(isa, rng, lead, K, N, activation):
    x, w, b = randn(rng, *lead, K), randn(rng, N, K), randn(rng, N)
    expected = F.linear(t(x), t(w), t(b))
    if activation == "relu":
        expected = F.relu(expected)
    elif activation == "gelu":
        expected = F.gelu(expected, approximate="none")
    out = pt.ops.linear(x, w, b, activation)
    assert_close(out, n(expected), RTOL_LINEAR, ref.linear_scale(x, w, b))


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (17, 64), (5, 257), (2, 3, 1000)])
def test_softmax(isa, rng, shape):
    x = randn(rng, *shape, scale=3.0)
    assert_close(pt.ops.softmax(x), n(torch.softmax(t(x), dim=-1)), RTOL, atol=FLUSH)


@pytest.mark.parametrize("use_residual", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (17, 64), (5, 257), (2, 3, 1000)])
def test_layer_norm(isa, rng, shape, use_residual):
    d = shape[-1]
    x, w, b = randn(rng, *shape, offset=0.3), randn(rng, d), randn(rng, d)
    r = randn(rng, *shape) if use_residual else None
    inp = t(x) + t(r) if use_residual else t(x)
    expected = F.layer_norm(inp, (d,), t(w), t(b), eps=1e-5)
    assert_close(pt.ops.layer_norm(x, w, b, eps=1e-5, residual=r), n(expected), RTOL,
                 ref.layer_norm_scale(x, w, b, 1e-5, r))


def test_layer_norm_module_without_affine(isa, rng):
    x = randn(rng, 6, 40)
    module = torch.nn.LayerNorm(40, eps=1e-6, elementwise_affine=False)
    assert_close(pt.ops.layer_norm(x, None, None, eps=1e-6), n(module(t(x))), RTOL,
                 ref.layer_norm_scale(x, eps=1e-6))


def test_gelu(isa, rng):
    x = np.concatenate([randn(rng, 5000, scale=3.0), np.linspace(-10, 10, 4001, dtype=np.float32)])
    # torch evaluates 0.5 x (1 + erf(x / sqrt 2)): its rounding is relative to |x|
    # (the size of its terms), which is coarse in the negative tail; the reference
    # tests hold pt.ops.gelu to full relative accuracy there.
    assert_close(pt.ops.gelu(x), n(F.gelu(t(x), approximate="none")), RTOL, np.abs(x), atol=DENORM_ULP)


def test_relu(isa, rng):
    x = randn(rng, 3, 1001)
    x[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    np.testing.assert_array_equal(pt.ops.relu(x), F.relu(t(x)).numpy())


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------


def sdpa(q, k, v, key_padding_mask=None, causal=False, scale=None):
    attn_mask = None
    if key_padding_mask is not None:
        attn_mask = ~t(key_padding_mask)[:, None, None, :]  # True = may attend
    return n(F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=attn_mask, is_causal=causal, scale=scale))


def value_scale(v):
    return np.abs(v.astype(np.float64)).max(axis=(2, 3), keepdims=True, initial=0.0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,H,Lq,Lk,D,Dv", [(1, 1, 1, 1, 8, 8), (2, 3, 17, 17, 16, 16), (1, 2, 33, 65, 64, 64),
                                            (2, 2, 100, 40, 32, 48), (1, 4, 7, 257, 17, 5)])
def test_scaled_dot_product_attention(isa, rng, B, H, Lq, Lk, D, Dv, causal):
    q, k, v = randn(rng, B, H, Lq, D), randn(rng, B, H, Lk, D), randn(rng, B, H, Lk, Dv)
    out = pt.ops.attention(q, k, v, causal=causal)
    assert_close(out, sdpa(q, k, v, causal=causal), RTOL, value_scale(v))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Lq,Lk", [(1, 5), (20, 20), (40, 100)])
def test_scaled_dot_product_attention_mask(isa, rng, Lq, Lk, causal):
    B, H, D = 3, 2, 16
    q, k, v = randn(rng, B, H, Lq, D), randn(rng, B, H, Lk, D), randn(rng, B, H, Lk, D)
    mask = rng.random((B, Lk)) < 0.4
    mask[:, 0] = False  # every query sees a key (torch returns NaN for one that sees none)
    out = pt.ops.attention(q, k, v, key_padding_mask=mask, causal=causal)
    assert_close(out, sdpa(q, k, v, mask, causal), RTOL, value_scale(v))


@pytest.mark.parametrize("scale", [0.01, 0.3, 2.0])
def test_scaled_dot_product_attention_scale(isa, rng, scale):
    q, k, v = randn(rng, 2, 2, 9, 8), randn(rng, 2, 2, 30, 8), randn(rng, 2, 2, 30, 8)
    assert_close(pt.ops.attention(q, k, v, scale=scale), sdpa(q, k, v, scale=scale), RTOL, value_scale(v))


def test_query_that_sees_no_key(isa, rng):
    # pt returns zeros there; torch returns NaN (older releases) or zeros (newer).
    q, k, v = randn(rng, 1, 1, 4, 8), randn(rng, 1, 1, 4, 8), randn(rng, 1, 1, 4, 8)
    mask = np.array([[True, False, False, False]])
    expected = sdpa(q, k, v, mask, causal=True)
    out = pt.ops.attention(q, k, v, key_padding_mask=mask, causal=True)
    np.testing.assert_array_equal(out[0, 0, 0], 0.0)
    assert np.isnan(expected[0, 0, 0]).all() or np.all(expected[0, 0, 0] == 0.0)
    assert_close(out[:, :, 1:], expected[:, :, 1:], RTOL, value_scale(v))


# ---------------------------------------------------------------------------
# nn.MultiheadAttention
# ---------------------------------------------------------------------------


def make_mha(E, heads, bias=True, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.MultiheadAttention(E, heads, bias=bias, batch_first=True).eval()
    if bias:  # torch initialises the biases to zero: make them count
        torch.nn.init.normal_(m.in_proj_bias, std=0.1)
        torch.nn.init.normal_(m.out_proj.bias, std=0.1)
    return m


def mha_weights(m):
    get = lambda p: None if p is None else p.detach().numpy()  # noqa: E731
    return (get(m.in_proj_weight), get(m.in_proj_bias), get(m.out_proj.weight), get(m.out_proj.bias))


def check_against_module(m, query, key, value, key_padding_mask=None, causal=False):
    heads = m.num_heads
    attn_mask = None
    if causal:
        Lq, Lk = query.shape[1], key.shape[1]
        attn_mask = torch.ones(Lq, Lk, dtype=torch.bool).triu(diagonal=1)  # True = not allowed
    tq = t(query)
    tk = tq if key is query else t(key)
    tv = tk if value is key else t(value)
    expected, _ = m(tq, tk, tv, key_padding_mask=None if key_padding_mask is None else t(key_padding_mask),
                    need_weights=False, attn_mask=attn_mask)
    w = mha_weights(m)
    out = pt.ops.multi_head_attention(query, key, value, *w, heads, key_padding_mask=key_padding_mask,
                                      causal=causal)
    scale = ref.multi_head_attention_scale(query, key, value, *w, heads, key_padding_mask=key_padding_mask,
                                           causal=causal)
    assert_close(out, n(expected), RTOL, scale)


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("B,L,E,heads", [(1, 1, 8, 2), (2, 7, 16, 4), (2, 20, 64, 8), (3, 33, 48, 6)])
def test_multihead_self_attention(isa, rng, B, L, E, heads, use_mask):
    m = make_mha(E, heads)
    x = randn(rng, B, L, E)
    mask = None
    if use_mask:
        mask = rng.random((B, L)) < 0.3
        mask[:, 0] = False
    check_against_module(m, x, x, x, key_padding_mask=mask)  # the fused path: one array


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("B,Lq,Lk,E,heads", [(1, 1, 9, 8, 1), (2, 5, 17, 32, 4), (2, 30, 12, 64, 8)])
def test_multihead_cross_attention(isa, rng, B, Lq, Lk, E, heads, use_mask):
    m = make_mha(E, heads)
    query, memory = randn(rng, B, Lq, E), randn(rng, B, Lk, E)
    mask = None
    if use_mask:
        mask = rng.random((B, Lk)) < 0.3
        mask[:, -1] = False
    check_against_module(m, query, memory, memory, key_padding_mask=mask)  # shared key/value
    check_against_module(m, query, memory, randn(rng, B, Lk, E), key_padding_mask=mask)  # all distinct


@pytest.mark.parametrize("Lq,Lk", [(6, 6), (10, 4), (4, 10), (30, 30)])
def test_multihead_causal(isa, rng, Lq, Lk):
    m = make_mha(24, 3)
    x = randn(rng, 2, Lq, 24)
    if Lq == Lk:
        check_against_module(m, x, x, x, causal=True)
    mem = randn(rng, 2, Lk, 24)
    check_against_module(m, x, mem, mem, causal=True)


def test_multihead_without_bias(isa, rng):
    m = make_mha(16, 2, bias=False)
    x = randn(rng, 2, 9, 16)
    check_against_module(m, x, x, x)
    check_against_module(m, x, x[:, :4].copy(), x[:, :4].copy())

"""Plain numpy references for pytransformer's ops, computed in float64.

Written from "Attention Is All You Need" (Vaswani et al., 2017) and the op docs,
for reading in one sitting rather than for speed. Every function takes float32 (or
float64) arrays and returns float64; NaN and inf follow numpy's rules.

Tolerance helpers (``*_scale``) give, per output element, the magnitude of the
terms that were summed to produce it: float32 rounding is relative to those terms,
not to the (possibly cancelled) result.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


def relu(x):
    """max(x, 0), NaN stays NaN (np.maximum propagates NaN)."""
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def _gelu_scalar(x: float) -> float:
    # x * Phi(x) = 0.5 x erfc(-x / sqrt 2): erfc keeps full relative accuracy in the
    # negative tail where 1 + erf(x / sqrt 2) would cancel.
    if math.isnan(x):
        return math.nan
    if x == -math.inf:
        return 0.0
    return 0.5 * x * math.erfc(-x / math.sqrt(2.0))


_gelu_ufunc = np.frompyfunc(_gelu_scalar, 1, 1)


def gelu(x):
    """Exact (erf) GELU of Hendrycks & Gimpel: x * Phi(x); gelu(-inf) = 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(_gelu_ufunc(x), dtype=np.float64).reshape(x.shape)


def silu(x):
    """SiLU ("swish"): x * sigmoid(x) = x / (1 + exp(-x)); silu(-inf) = 0 (the limit)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x == -np.inf, 0.0, x / (1.0 + np.exp(-x)))


_ACTIVATIONS = {None: lambda z: z, "relu": relu, "gelu": gelu, "silu": silu}

# ---------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------


def linear(x, weight, bias=None, activation=None):
    """activation(x @ weight.T + bias); x [..., K], weight [N, K], bias [N]."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    y = np.matmul(x, w.T)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return _ACTIVATIONS[activation](y)


def linear_scale(x, weight, bias=None):
    """|x| @ |weight|.T + |bias|: the magnitude of the terms of each output."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    w = np.abs(np.asarray(weight, dtype=np.float64))
    s = np.matmul(x, w.T)
    if bias is not None:
        s = s + np.abs(np.asarray(bias, dtype=np.float64))
    return s


# ---------------------------------------------------------------------------
# Row-wise ops
# ---------------------------------------------------------------------------


def softmax(x):
    """exp(x - max) / sum(exp(x - max)) over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] == 0:
        return x.copy()
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        return e / np.sum(e, axis=-1, keepdims=True)


def layer_norm(x, weight=None, bias=None, eps=1e-5, residual=None):
    """LayerNorm of t = x + residual over the last axis, biased variance:
    (t - mean) / sqrt(var + eps) * weight + bias."""
    t = np.asarray(x, dtype=np.float64)
    if residual is not None:
        t = t + np.asarray(residual, dtype=np.float64)
    if t.shape[-1] == 0:
        return t.copy()
    with np.errstate(invalid="ignore"):
        mean = np.mean(t, axis=-1, keepdims=True)
        var = np.mean((t - mean) ** 2, axis=-1, keepdims=True)
        y = (t - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


def layer_norm_scale(x, weight=None, bias=None, eps=1e-5, residual=None):
    """Per element: (max_row |t| + |mean|) / sqrt(var + eps) * |weight| + |bias|.

    The centred value t_j - mean carries float32 rounding of the row's largest
    terms (the mean is a sum over the row), so the row's magnitude, not t_j - mean
    alone, sets the scale of the error. |t| is |x| + |residual|: the terms of t.
    """
    x = np.asarray(x, dtype=np.float64)
    t, mag = x, np.abs(x)
    if residual is not None:
        r = np.asarray(residual, dtype=np.float64)
        t, mag = x + r, mag + np.abs(r)
    mean = np.mean(t, axis=-1, keepdims=True)
    var = np.mean((t - mean) ** 2, axis=-1, keepdims=True)
    s = (np.max(mag, axis=-1, keepdims=True) + np.abs(mean)) / np.sqrt(var + eps)
    if weight is not None:
        s = s * np.abs(np.asarray(weight, dtype=np.float64))
    if bias is not None:
        s = s + np.abs(np.asarray(bias, dtype=np.float64))
    return np.broadcast_to(s, t.shape)


# ---------------------------------------------------------------------------
# Attention (section 3.2 of the paper)
# ---------------------------------------------------------------------------


def attention_weights(q, k, key_padding_mask=None, causal=False, scale=None):
    """The attention probabilities softmax(scale * Q K^T + mask): [B, H, Lq, Lk].

    key_padding_mask: bool [B, Lk], True = padding. causal: query i sees keys
    j <= i. A query that sees no key at all gets all-zero weights.
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    if scale is None:
        scale = 1.0 / math.sqrt(D) if D > 0 else 1.0
    scores = scale * np.einsum("bhid,bhjd->bhij", q, k)
    visible = np.ones((B, H, Lq, Lk), dtype=bool)
    if key_padding_mask is not None:
        visible &= ~np.asarray(key_padding_mask, dtype=bool)[:, None, None, :]
    if causal:
        visible &= np.arange(Lk)[None, :] <= np.arange(Lq)[:, None]
    any_visible = visible.any(axis=-1, keepdims=True)
    scores = np.where(visible, scores, -np.inf)
    row_max = np.where(any_visible, np.max(scores, axis=-1, keepdims=True, initial=-np.inf), 0.0)
    e = np.where(visible, np.exp(scores - row_max), 0.0)
    denom = np.where(any_visible, np.sum(e, axis=-1, keepdims=True), 1.0)
    return e / denom


def attention(q, k, v, key_padding_mask=None, causal=False, scale=None):
    """softmax(scale * Q K^T + mask) V per (batch, head) (section 3.2.1).

    q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> [B,H,Lq,Dv]; a query that sees no
    key gets zeros.
    """
    p = attention_weights(q, k, key_padding_mask, causal, scale)
    return np.einsum("bhij,bhjd->bhid", p, np.asarray(v, dtype=np.float64))


def _split_heads(t, num_heads):  # [B, L, E] -> [B, H, L, D]
    B, L, E = t.shape
    return t.reshape(B, L, num_heads, E // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(t):  # [B, H, L, D] -> [B, L, E]
    B, H, L, D = t.shape
    return t.transpose(0, 2, 1, 3).reshape(B, L, H * D)


def _in_projections(in_proj_weight, in_proj_bias):
    """(Wq, bq), (Wk, bk), (Wv, bv) from torch's stacked [3E, E] / [3E] layout."""
    w_q, w_k, w_v = np.split(np.asarray(in_proj_weight, dtype=np.float64), 3, axis=0)
    if in_proj_bias is None:
        return (w_q, None), (w_k, None), (w_v, None)
    b_q, b_k, b_v = np.split(np.asarray(in_proj_bias, dtype=np.float64), 3)
    return (w_q, b_q), (w_k, b_k), (w_v, b_v)


def multi_head_attention(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                         num_heads, key_padding_mask=None, causal=False):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    (section 3.2.2).

    Batch-first [B, L, E]; weights in torch.nn.MultiheadAttention's layout:
    in_proj_weight [3E, E] stacks Wq, Wk, Wv (rows), each applied as x @ W.T; head i
    is columns [i*D, (i+1)*D) of each projection, D = E / num_heads.
    """
    (w_q, b_q), (w_k, b_k), (w_v, b_v) = _in_projections(in_proj_weight, in_proj_bias)
    q = _split_heads(linear(query, w_q, b_q), num_heads)
    k = _split_heads(linear(key, w_k, b_k), num_heads)
    v = _split_heads(linear(value, w_v, b_v), num_heads)
    ctx = attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal)
    return linear(_merge_heads(ctx), out_proj_weight, out_proj_bias)


def multi_head_attention_scale(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                               num_heads, key_padding_mask=None, causal=False):
    """The magnitude of the terms behind each output, carried through the layer:
    value projection |value| @ |Wv|.T + |bv|, averaged by the attention weights,
    then |.| @ |Wo|.T + |bo|."""
    (w_q, b_q), (w_k, b_k), (w_v, b_v) = _in_projections(in_proj_weight, in_proj_bias)
    q = _split_heads(linear(query, w_q, b_q), num_heads)
    k = _split_heads(linear(key, w_k, b_k), num_heads)
    p = attention_weights(q, k, key_padding_mask=key_padding_mask, causal=causal)
    v_terms = _split_heads(linear_scale(value, w_v, b_v), num_heads)
    ctx_terms = _merge_heads(np.einsum("bhij,bhjd->bhid", p, v_terms))
    return linear_scale(ctx_terms, out_proj_weight, out_proj_bias)


# ---------------------------------------------------------------------------
# Positional encoding (section 3.5)
# ---------------------------------------------------------------------------


def positional_encoding(length, d_model):
    """PE[p, 2i] = sin(p / 10000^(2i/d_model)), PE[p, 2i+1] = cos(p / 10000^(2i/d_model))."""
    p = np.arange(length, dtype=np.float64)[:, None]
    c = np.arange(d_model)
    two_i = c - c % 2
    angle = p / 10000.0 ** (two_i / d_model)
    return np.where(c % 2 == 0, np.sin(angle), np.cos(angle))

"""Helpers for the model tests (numpy only): small configs, random weights, padded
batches, and a float64 numpy reference of the whole encoder-decoder written from
"Attention Is All You Need" with the ops of ``reference.py``.

The reference follows torch.nn.Transformer's conventions (what pytransformer
implements): post-LN ``x = LN(x + sublayer(x))`` or pre-LN ``x = x + sublayer(LN(x))``,
an optional final LayerNorm after each stack, embeddings ``emb[ids] * scale + PE[pos]``
and the output projection ``x @ W.T + b``.
"""

from __future__ import annotations

import numpy as np

import pytransformer as pt
import reference as ref


def small_config(**overrides):
    """A small model with odd sizes: d_model 24 (3 heads of 8), FFN 40, vocabularies
    37 / 41, 2 + 2 layers."""
    kw = dict(d_model=24, nhead=3, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=40,
              src_vocab_size=37, tgt_vocab_size=41, max_length=64)
    kw.update(overrides)
    return pt.TransformerConfig(**kw)


def random_weights(config, rng):
    """Random float32 weights for every name of ``expected_weight_shapes(config)``.

    Scales keep activations O(1): embeddings N(0, 1/d_model) (times sqrt(d_model)
    gives unit size), matrices uniform with variance 1/fan_in, biases N(0, 0.1^2),
    LayerNorm weights uniform in [0.5, 1.5] (not 1, so the affine part is tested).
    """
    E = config.d_model
    out = {}
    for name, shape in pt.weights.expected_weight_shapes(config).items():
        if name.endswith("embed.weight"):
            a = rng.standard_normal(shape) / np.sqrt(E)
        elif ".norm" in name or name.startswith(("encoder.norm", "decoder.norm")):
            a = rng.uniform(0.5, 1.5, shape) if name.endswith("weight") else rng.normal(0.0, 0.1, shape)
        elif len(shape) == 2:
            bound = np.sqrt(3.0 / shape[1])
            a = rng.uniform(-bound, bound, shape)
        else:
            a = rng.normal(0.0, 0.1, shape)
        out[name] = np.asarray(a, dtype=np.float32)
    return out


def padded_ids(rng, lengths, length, vocab, pad_id=0):
    """int64 [len(lengths), length]: random ids in [0, vocab) up to each row's length,
    pad_id after it."""
    lengths = np.asarray(lengths)
    ids = rng.integers(0, vocab, size=(len(lengths), length), dtype=np.int64)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = pad_id
    return ids


def valid_mask(lengths, length):
    """bool [B, length]: True at real (non-padding) positions."""
    return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


def assert_close_valid(out, expected, lengths, atol, what=""):
    """|out - expected| <= atol at the real positions (axis 1 < lengths[b]); reports the
    worst element."""
    assert out.shape == expected.shape, (out.shape, expected.shape)
    mask = valid_mask(lengths, out.shape[1]) if lengths is not None else np.ones(out.shape[:2], bool)
    a = np.asarray(out, dtype=np.float64)[mask]
    b = np.asarray(expected, dtype=np.float64)[mask]
    assert np.isfinite(a).all(), f"{what}: non-finite output at a real position"
    if a.size == 0:
        return
    err = np.abs(a - b)
    worst = float(err.max())
    assert worst <= atol, (f"{what}: max |err| = {worst:.3e} > {atol:.0e} "
                           f"({int((err > atol).sum())} of {err.size} elements; "
                           f"max |expected| = {float(np.abs(b).max()):.3g})")


# ---------------------------------------------------------------------------
# float64 reference model
# ---------------------------------------------------------------------------


def _ln(w, prefix, x, eps, residual=None):
    return ref.layer_norm(x, w[prefix + "weight"], w[prefix + "bias"], eps, residual)


def _mha(w, prefix, q, kv, heads, mask=None, causal=False):
    return ref.multi_head_attention(q, kv, kv, w[prefix + "in_proj_weight"], w[prefix + "in_proj_bias"],
                                    w[prefix + "out_proj.weight"], w[prefix + "out_proj.bias"], heads,
                                    key_padding_mask=mask, causal=causal)


def _ffn(w, prefix, x, activation):
    h = ref.linear(x, w[prefix + "linear1.weight"], w[prefix + "linear1.bias"], activation)
    return ref.linear(h, w[prefix + "linear2.weight"], w[prefix + "linear2.bias"])


def sinusoids(length, d, layout):
    """The paper's PE (interleaved: sin on even columns, cos on odd) or the same
    frequencies with all sines first (ceil(d/2) columns), then all cosines
    (``positional="sinusoidal_concat"``), in float64 from the formula."""
    p = np.arange(length, dtype=np.float64)[:, None]
    c = np.arange(d)
    if layout == "sinusoidal":
        i, use_sin = c // 2, c % 2 == 0
    else:
        half = (d + 1) // 2
        use_sin = c < half
        i = np.where(use_sin, c, c - half)
    angle = p / 10000.0 ** (2 * i / max(d, 1))
    return np.where(use_sin, np.sin(angle), np.cos(angle))


def reference_embed(config, w, ids, side):
    """emb[ids] * scale + positions (+ token type 0 on the source side), then the
    embedding LayerNorm; side "src" or "tgt"."""
    c = config
    ids = np.asarray(ids)
    L = ids.shape[1]
    table = w["src_embed.weight"] if side == "src" or c.share_embeddings else w["tgt_embed.weight"]
    x = np.asarray(table, np.float64)[ids] * np.float64(np.float32(c.resolved_embedding_scale))
    if c.positional == "learned":
        x = x + np.asarray(w[f"{side}_pos_embed.weight"], np.float64)[:L]
    else:
        x = x + sinusoids(L, c.d_model, c.positional).astype(np.float32)
    if side == "src" and c.type_vocab_size > 0:
        x = x + np.asarray(w["src_type_embed.weight"], np.float64)[0]
    if c.embedding_norm:
        x = ref.layer_norm(x, w[f"{side}_embed_norm.weight"], w[f"{side}_embed_norm.bias"], c.layer_norm_eps)
    return x


def reference_encode(config, weights, src_ids, src_lengths=None):
    """float64 memory [B, S, E]; padding positions are computed but meaningless."""
    c, w = config, weights
    B, S = np.shape(src_ids)
    mask = None if src_lengths is None else ~valid_mask(src_lengths, S)
    x = reference_embed(c, w, src_ids, "src")
    eps = c.layer_norm_eps
    for i in range(c.num_encoder_layers):
        p = f"encoder.layers.{i}."
        if c.norm_first:
            h = _ln(w, p + "norm1.", x, eps)
            x = x + _mha(w, p + "self_attn.", h, h, c.nhead, mask)
            x = x + _ffn(w, p, _ln(w, p + "norm2.", x, eps), c.activation)
        else:
            x = _ln(w, p + "norm1.", x, eps, _mha(w, p + "self_attn.", x, x, c.nhead, mask))
            x = _ln(w, p + "norm2.", x, eps, _ffn(w, p, x, c.activation))
    if c.final_norm:
        x = _ln(w, "encoder.norm.", x, eps)
    return x


def reference_decode(config, weights, tgt_ids, memory, src_lengths=None):
    """float64 logits [B, T, tgt_vocab]: causal self-attention, cross-attention on
    the memory's real positions."""
    c, w = config, weights
    S = np.shape(memory)[1]
    mask = None if src_lengths is None else ~valid_mask(src_lengths, S)
    table = w["src_embed.weight"] if c.share_embeddings else w["tgt_embed.weight"]
    x = reference_embed(c, w, tgt_ids, "tgt")
    memory = np.asarray(memory, np.float64)
    eps = c.layer_norm_eps
    for i in range(c.num_decoder_layers):
        p = f"decoder.layers.{i}."
        if c.norm_first:
            h = _ln(w, p + "norm1.", x, eps)
            x = x + _mha(w, p + "self_attn.", h, h, c.nhead, causal=True)
            x = x + _mha(w, p + "multihead_attn.", _ln(w, p + "norm2.", x, eps), memory, c.nhead, mask)
            x = x + _ffn(w, p, _ln(w, p + "norm3.", x, eps), c.activation)
        else:
            x = _ln(w, p + "norm1.", x, eps, _mha(w, p + "self_attn.", x, x, c.nhead, causal=True))
            x = _ln(w, p + "norm2.", x, eps, _mha(w, p + "multihead_attn.", x, memory, c.nhead, mask))
            x = _ln(w, p + "norm3.", x, eps, _ffn(w, p, x, c.activation))
    if c.final_norm:
        x = _ln(w, "decoder.norm.", x, eps)
    gen_w = table if c.tie_output else w["generator.weight"]
    return ref.linear(x, gen_w, w.get("generator.bias") if c.output_bias else None)

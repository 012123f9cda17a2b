"""Hand-written Hugging Face model folders (numpy + safetensors only, no torch) and a
float64 numpy BERT forward, for the from_pretrained tests.

``bert_folder`` / ``marian_folder`` write ``config.json`` and ``model.safetensors``
(via ``safetensors.numpy``) with the names and shapes ``transformers`` uses for
``BertModel`` and ``MarianMTModel``; ``bert_reference`` computes BERT's last hidden
states from those HF-named weights, written from the BERT paper / HF's BertModel:
embeddings = word + token type + position, LayerNorm (eps from the config,
1e-12 by default), then post-LN layers ``x = LN(x + Attn(x))``,
``x = LN(x + W2 act(W1 x))`` with the exact (erf) GELU.
"""

from __future__ import annotations

import json
import os

import numpy as np

import reference as ref

BERT_CONFIG = dict(model_type="bert", architectures=["BertModel"], hidden_size=36, num_attention_heads=3,
                   num_hidden_layers=2, intermediate_size=52, hidden_act="gelu", vocab_size=50,
                   max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-12,
                   position_embedding_type="absolute", pad_token_id=0, hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, initializer_range=0.02)

MARIAN_CONFIG = dict(model_type="marian", architectures=["MarianMTModel"], vocab_size=40, decoder_vocab_size=40,
                     d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, activation_function="swish",
                     max_position_embeddings=64, scale_embedding=True, share_encoder_decoder_embeddings=True,
                     pad_token_id=39, eos_token_id=0, decoder_start_token_id=39, forced_eos_token_id=0,
                     normalize_before=False, add_final_layer_norm=False, tie_word_embeddings=True)


def _matrix(rng, rows, cols):
    bound = np.sqrt(3.0 / cols)
    return rng.uniform(-bound, bound, (rows, cols)).astype(np.float32)


def _vector(rng, n, scale=0.1):
    return (rng.standard_normal(n) * scale).astype(np.float32)


def _ln_weights(rng, prefix, n, tf_names=False):
    w, b = ("gamma", "beta") if tf_names else ("weight", "bias")
    return {prefix + w: rng.uniform(0.5, 1.5, n).astype(np.float32), prefix + b: _vector(rng, n)}


def bert_weights(config, rng, tf_names=False):
    """HF BertModel weights (without the "bert." prefix) for ``config``."""
    E, F, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    w = {
        "embeddings.word_embeddings.weight": rng.standard_normal((V, E)).astype(np.float32),
        "embeddings.position_embeddings.weight": (0.5 * rng.standard_normal(
            (config["max_position_embeddings"], E))).astype(np.float32),
        "embeddings.token_type_embeddings.weight": (0.5 * rng.standard_normal(
            (config["type_vocab_size"], E))).astype(np.float32),
    }
    w.update(_ln_weights(rng, "embeddings.LayerNorm.", E, tf_names))
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            w[f"{p}attention.self.{n}.weight"] = _matrix(rng, E, E)
            w[f"{p}attention.self.{n}.bias"] = _vector(rng, E)
        w[p + "attention.output.dense.weight"] = _matrix(rng, E, E)
        w[p + "attention.output.dense.bias"] = _vector(rng, E)
        w.update(_ln_weights(rng, p + "attention.output.LayerNorm.", E, tf_names))
        w[p + "intermediate.dense.weight"] = _matrix(rng, F, E)
        w[p + "intermediate.dense.bias"] = _vector(rng, F)
        w[p + "output.dense.weight"] = _matrix(rng, E, F)
        w[p + "output.dense.bias"] = _vector(rng, E)
        w.update(_ln_weights(rng, p + "output.LayerNorm.", E, tf_names))
    return w


def write_folder(folder, config, weights, metadata=None):
    from safetensors.numpy import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    if weights is not None:
        save_file(weights, os.path.join(folder, "model.safetensors"), metadata=metadata or {"format": "pt"})
    return folder


def bert_folder(folder, rng, *, tf_names=False, **overrides):
    """Write a small random BERT; returns (folder, config dict, HF-named weights)."""
    config = dict(BERT_CONFIG, **overrides)
    weights = bert_weights(config, rng, tf_names)
    write_folder(folder, config, weights)
    return os.fspath(folder), config, weights


def marian_weights(config, rng):
    """HF MarianMTModel weights (as saved: no embed_positions, tied copies left out)."""
    E, F, V = config["d_model"], config["encoder_ffn_dim"], config["vocab_size"]
    shared = config.get("share_encoder_decoder_embeddings", True)
    Vt = V if shared else config["decoder_vocab_size"]
    w = {}
    if shared:
        w["model.shared.weight"] = (rng.standard_normal((V, E)) / np.sqrt(E)).astype(np.float32)
    else:
        w["model.encoder.embed_tokens.weight"] = (rng.standard_normal((V, E)) / np.sqrt(E)).astype(np.float32)
        w["model.decoder.embed_tokens.weight"] = (rng.standard_normal((Vt, E)) / np.sqrt(E)).astype(np.float32)

    def attention(prefix):
        for n in ("q", "k", "v", "out"):
            w[f"{prefix}{n}_proj.weight"] = _matrix(rng, E, E)
            w[f"{prefix}{n}_proj.bias"] = _vector(rng, E)

    def ffn(prefix):
        w[prefix + "fc1.weight"] = _matrix(rng, F, E)
        w[prefix + "fc1.bias"] = _vector(rng, F)
        w[prefix + "fc2.weight"] = _matrix(rng, E, F)
        w[prefix + "fc2.bias"] = _vector(rng, E)

    for i in range(config["encoder_layers"]):
        p = f"model.encoder.layers.{i}."
        attention(p + "self_attn.")
        w.update(_ln_weights(rng, p + "self_attn_layer_norm.", E))
        ffn(p)
        w.update(_ln_weights(rng, p + "final_layer_norm.", E))
    for i in range(config["decoder_layers"]):
        p = f"model.decoder.layers.{i}."
        attention(p + "self_attn.")
        w.update(_ln_weights(rng, p + "self_attn_layer_norm.", E))
        attention(p + "encoder_attn.")
        w.update(_ln_weights(rng, p + "encoder_attn_layer_norm.", E))
        ffn(p)
        w.update(_ln_weights(rng, p + "final_layer_norm.", E))
    if not config.get("tie_word_embeddings", True):
        w["lm_head.weight"] = (rng.standard_normal((Vt, E)) / np.sqrt(E)).astype(np.float32)
    w["final_logits_bias"] = _vector(rng, Vt, 1.0).reshape(1, Vt)
    return w


def marian_folder(folder, rng, **overrides):
    """Write a small random Marian model; returns (folder, config dict, HF-named weights)."""
    config = dict(MARIAN_CONFIG, **overrides)
    weights = marian_weights(config, rng)
    write_folder(folder, config, weights)
    return os.fspath(folder), config, weights


# ---------------------------------------------------------------------------
# float64 BERT
# ---------------------------------------------------------------------------

_ACT = {"gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}


def _split(t, heads):  # [B, L, E] -> [B, H, L, D]
    B, L, E = t.shape
    return t.reshape(B, L, heads, E // heads).transpose(0, 2, 1, 3)


def bert_reference(config, weights, input_ids, lengths=None, token_type_ids=None):
    """float64 last hidden states [B, S, E] of HF-named BERT weights (no "bert." prefix,
    LayerNorm as weight/bias). Padding positions (>= lengths[b]) are never attended to;
    their own values are meaningless."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    ids = np.asarray(input_ids)
    B, S = ids.shape
    types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
    eps = float(config.get("layer_norm_eps", 1e-12))
    heads = config["num_attention_heads"]
    act = _ACT[config.get("hidden_act", "gelu")]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
         + w["embeddings.position_embeddings.weight"][np.arange(S)][None])

    def ln(t, prefix):
        return ref.layer_norm(t, w[prefix + "weight"], w[prefix + "bias"], eps)

    x = ln(x, "embeddings.LayerNorm.")
    pad = None if lengths is None else np.arange(S)[None, :] >= np.asarray(lengths)[:, None]
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (_split(ref.linear(x, w[f"{p}attention.self.{n}.weight"], w[f"{p}attention.self.{n}.bias"]),
                          heads) for n in ("query", "key", "value"))
        ctx = ref.attention(q, k, v, key_padding_mask=pad)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(B, S, -1)
        a = ref.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
        x = ln(x + a, p + "attention.output.LayerNorm.")
        h = ref.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"], act)
        y = ref.linear(h, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        x = ln(x + y, p + "output.LayerNorm.")
    return x


# sentence-transformers concatenates the pooled vectors in this order
# (sentence_transformers Pooling.forward: cls, max, mean, mean_sqrt_len).
ST_ORDER = ("cls", "max", "mean", "mean_sqrt_len")


def pool_reference(states, lengths, modes):
    """float64 sentence-transformers pooling of [B, S, E] states over the first
    lengths[b] tokens, concatenated in the order of ``modes``."""
    states = np.asarray(states, np.float64)
    out = []
    for m in modes:
        rows = []
        for b, n in enumerate(np.asarray(lengths)):
            real = states[b, :n]
            rows.append({"cls": real[0], "max": real.max(axis=0), "mean": real.mean(axis=0),
                         "mean_sqrt_len": real.sum(axis=0) / np.sqrt(n)}[m])
        out.append(np.stack(rows))
    return np.concatenate(out, axis=1)

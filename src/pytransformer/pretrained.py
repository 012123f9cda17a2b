"""Load Hugging Face model folders: ``pt.from_pretrained(path)``.

A folder with ``config.json`` and ``model.safetensors`` (or sharded safetensors, or
``pytorch_model.bin`` when PyTorch is installed) becomes:

* ``model_type == "bert"`` -> :class:`pytransformer.EncoderModel` (BERT, MiniLM, ...),
  with the folder's ``tokenizer.json`` and sentence-transformers pooling
  (``modules.json``, ``1_Pooling/config.json``) attached when present;
* ``model_type == "marian"`` -> :class:`pytransformer.Transformer` (OPUS-MT), with
  ``generation_defaults`` taken from the checkpoint.

Everything is configured from ``config.json``; an unknown ``model_type`` or an
option pytransformer does not implement raises ``ValueError`` naming it, never a
silently different model.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .config import TransformerConfig
from .encoder import EncoderModel, Pooling
from .model import Transformer
from .weights import WeightsError, _to_numpy

__all__ = ["from_pretrained"]

_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}


def from_pretrained(path: "os.PathLike[str] | str"):
    """Build a pytransformer model from a Hugging Face model folder (see the module doc)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"from_pretrained: {path!r} is not a directory (expected a model folder with "
                                "config.json and model.safetensors)")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"from_pretrained: no config.json in {path!r}")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            hf = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"from_pretrained: {cfg_path!r} is not valid JSON ({e})") from None
    if not isinstance(hf, dict):
        raise ValueError(f"from_pretrained: {cfg_path!r} does not hold a JSON object")
    model_type = hf.get("model_type")
    loaders: Dict[str, Callable] = {"bert": _load_bert, "marian": _load_marian}
    if model_type not in loaders:
        raise ValueError(f"from_pretrained: model_type {model_type!r} is not supported (supported: "
                         f"{sorted(loaders)})")
    return loaders[model_type](path, hf)


# -- shared helpers ----------------------------------------------------------------


def _require(hf: dict, key: str, kind=int):
    if key not in hf:
        raise ValueError(f"from_pretrained: config.json has no {key!r}")
    value = hf[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"from_pretrained: config.json {key!r} must be an int, got {value!r}")
    return value


def _unsupported(what: str, value: Any) -> ValueError:
    return ValueError(f"from_pretrained: unsupported {what} {value!r} (pytransformer would compute a different "
                      "model)")


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
    """The weights of a model folder as numpy arrays (safetensors first)."""
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        return _read_safetensors(single)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f).get("weight_map", {}).values()))
        out: Dict[str, np.ndarray] = {}
        for shard in shards:
            out.update(_read_safetensors(os.path.join(path, shard)))
        return out
    binary = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(binary):
        try:
            import torch
        except ImportError:
            raise ValueError(f"from_pretrained: {path!r} has only pytorch_model.bin, which needs PyTorch to read. "
                             "Install torch, or convert it once to safetensors: python -c \"import torch; "
                             "from safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in "
                             "torch.load('pytorch_model.bin', weights_only=True).items()}, "
                             "'model.safetensors')\"") from None
        state = torch.load(binary, map_location="cpu", weights_only=True)
        return {k: _to_numpy(v) for k, v in state.items()}
    raise FileNotFoundError(f"from_pretrained: no model.safetensors (or pytorch_model.bin) in {path!r}")


def _read_safetensors(file: str) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(file)
    except Exception as e:  # safetensors' own errors: corrupt or truncated files
        raise ValueError(f"from_pretrained: cannot read {file!r} as safetensors: {e}") from None


def _strip_prefix(state: Dict[str, np.ndarray], prefixes: Tuple[str, ...]) -> Dict[str, np.ndarray]:
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            both = sorted(k for k in state if k.startswith(p) and k[len(p):] in state)
            if both:
                raise WeightsError([f"{k!r} and {k[len(p):]!r} are both in the checkpoint" for k in both],
                                   "hint: the checkpoint mixes prefixed and unprefixed copies of a weight")
            return {k[len(p):] if k.startswith(p) else k: v for k, v in state.items()}
    return state


def _take(state: Dict[str, np.ndarray], used: set, name: str) -> np.ndarray:
    if name not in state:
        raise WeightsError([f"missing {name!r} in the checkpoint"])
    used.add(name)
    return np.asarray(state[name])


def _leftovers(state: Dict[str, np.ndarray], used: set, ignorable: Tuple[str, ...]) -> None:
    rest = [k for k in state if k not in used and not k.startswith(ignorable)]
    if rest:
        raise WeightsError([f"unexpected {k!r} in the checkpoint" for k in sorted(rest)],
                           "hint: the checkpoint has parts this model type does not use")


# -- BERT --------------------------------------------------------------------------


def _load_bert(path: str, hf: dict) -> EncoderModel:
    E = _require(hf, "hidden_size")
    H = _require(hf, "num_attention_heads")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise _unsupported("hidden_act", act)
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise _unsupported("position_embedding_type", hf.get("position_embedding_type"))
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise _unsupported("decoder BERT (is_decoder / add_cross_attention)", True)
    if E % H:
        raise ValueError(f"from_pretrained: num_attention_heads ({H}) does not divide hidden_size ({E})")
    vocab = _require(hf, "vocab_size")
    config = TransformerConfig(
        d_model=E, nhead=H, num_encoder_layers=_require(hf, "num_hidden_layers"), num_decoder_layers=0,
        dim_feedforward=_require(hf, "intermediate_size"), activation=_ACTIVATIONS[act], norm_first=False,
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)), final_norm=False, embedding_scale=1.0,
        positional="learned", type_vocab_size=int(hf.get("type_vocab_size", 2)), embedding_norm=True,
        src_vocab_size=vocab, tgt_vocab_size=max(vocab, 3), share_embeddings=False, tie_output=True,
        output_bias=False, max_length=_require(hf, "max_position_embeddings"), pad_id=0, bos_id=1, eos_id=2)
    state = _strip_prefix(load_state_dict(path), ("bert.",))
    origin: Dict[str, str] = {}
    weights = _bert_weights(state, config, origin)
    tokenizer, pooling, normalize, max_seq = _sentence_transformers_parts(path)
    return _build(EncoderModel, config, weights, origin, tokenizer=tokenizer, pooling=pooling, normalize=normalize,
                  max_seq_length=max_seq)


def _ln(state, used, prefix):
    """LayerNorm weight and bias, with the old TensorFlow names (gamma, beta) too."""
    w = prefix + ("gamma" if prefix + "weight" not in state and prefix + "gamma" in state else "weight")
    b = prefix + ("beta" if prefix + "bias" not in state and prefix + "beta" in state else "bias")
    return _take(state, used, w), _take(state, used, b)


def _concat_rows(names: List[str], arrays: List[np.ndarray]) -> np.ndarray:
    """Stack q, k, v projections; mismatched shapes name the offending weight."""
    first = arrays[0]
    bad = [f"{n!r} has shape {tuple(a.shape)}, expected {tuple(first.shape)} (the shape of {names[0]!r})"
           for n, a in zip(names[1:], arrays[1:]) if a.shape != first.shape]
    if bad:
        raise WeightsError(bad)
    return np.concatenate(arrays, axis=0)


def _build(cls, config, weights: Dict[str, np.ndarray], origin: Dict[str, str], **kwargs):
    """cls(config, weights) with weight errors reported under the checkpoint's names."""
    try:
        return cls(config, weights, **kwargs)
    except WeightsError as e:
        def rename(problem: str) -> str:
            for ours, theirs in origin.items():
                if f"'{ours}'" in problem:
                    return problem.replace(f"'{ours}'", f"{theirs!r} (pytransformer's {ours!r})")
            return problem
        raise WeightsError([rename(p) for p in e.problems]) from None


def _bert_weights(state: Dict[str, np.ndarray], c: TransformerConfig, origin: Dict[str, str]) -> Dict[str, np.ndarray]:
    used: set = set()
    w: Dict[str, np.ndarray] = {}

    def put(ours: str, theirs: str):
        w[ours] = _take(state, used, theirs)
        origin[ours] = theirs

    def put_ln(ours: str, theirs: str):
        w[ours + "weight"], w[ours + "bias"] = _ln(state, used, theirs)
        origin[ours + "weight"], origin[ours + "bias"] = theirs + "weight", theirs + "bias"

    put("src_embed.weight", "embeddings.word_embeddings.weight")
    put("src_pos_embed.weight", "embeddings.position_embeddings.weight")
    if c.type_vocab_size > 0:
        put("src_type_embed.weight", "embeddings.token_type_embeddings.weight")
    put_ln("src_embed_norm.", "embeddings.LayerNorm.")
    for i in range(c.num_encoder_layers):
        s, d = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            names = [f"{s}attention.self.{n}.{kind}" for n in ("query", "key", "value")]
            ours = d + ("self_attn.in_proj_weight" if kind == "weight" else "self_attn.in_proj_bias")
            w[ours] = _concat_rows(names, [_take(state, used, n) for n in names])
            origin[ours] = " + ".join(names)
        put(d + "self_attn.out_proj.weight", s + "attention.output.dense.weight")
        put(d + "self_attn.out_proj.bias", s + "attention.output.dense.bias")
        put_ln(d + "norm1.", s + "attention.output.LayerNorm.")
        put(d + "linear1.weight", s + "intermediate.dense.weight")
        put(d + "linear1.bias", s + "intermediate.dense.bias")
        put(d + "linear2.weight", s + "output.dense.weight")
        put(d + "linear2.bias", s + "output.dense.bias")
        put_ln(d + "norm2.", s + "output.LayerNorm.")
    # The pooler and pre-training heads are not part of the encoder.
    _leftovers(state, used, ("pooler.", "cls.", "embeddings.position_ids"))
    return w


def _sentence_transformers_parts(path: str):
    """(tokenizer or None, Pooling, normalize, max_seq_length) of a model folder."""
    tokenizer = None
    tok_file = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tok_file):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            tokenizer = _MissingTokenizer(tok_file)
        else:
            tokenizer = Tokenizer.from_file(tok_file)
    pooling, normalize, max_seq = Pooling(("mean",)), True, None
    modules_file = os.path.join(path, "modules.json")
    if os.path.isfile(modules_file):
        with open(modules_file, encoding="utf-8") as f:
            modules = json.load(f)
        types = [m.get("type", "") for m in modules]
        normalize = any(t.endswith("Normalize") for t in types)
        for m in modules:
            if m.get("type", "").endswith("Pooling"):
                pool_file = os.path.join(path, m.get("path", ""), "config.json")
                if os.path.isfile(pool_file):
                    with open(pool_file, encoding="utf-8") as f:
                        pooling = Pooling.from_sentence_transformers(json.load(f))
        other = [t for t in types if not t.endswith(("Transformer", "Pooling", "Normalize"))]
        if other:
            raise _unsupported("sentence-transformers module(s)", other)
    st_file = os.path.join(path, "sentence_bert_config.json")
    if os.path.isfile(st_file):
        with open(st_file, encoding="utf-8") as f:
            max_seq = json.load(f).get("max_seq_length")
    return tokenizer, pooling, normalize, max_seq


class _MissingTokenizer:
    """Stands in for a tokenizer when the `tokenizers` package is not installed."""

    def __init__(self, file: str):
        self.file = file

    def __call__(self, text):
        raise RuntimeError(f"embed() needs the 'tokenizers' package to read {self.file}: pip install tokenizers")


# -- Marian ------------------------------------------------------------------------


def _load_marian(path: str, hf: dict) -> Transformer:
    E = _require(hf, "d_model")
    heads = _require(hf, "encoder_attention_heads")
    if hf.get("decoder_attention_heads", heads) != heads:
        raise _unsupported("different encoder/decoder head counts", (heads, hf.get("decoder_attention_heads")))
    ffn = _require(hf, "encoder_ffn_dim")
    if hf.get("decoder_ffn_dim", ffn) != ffn:
        raise _unsupported("different encoder/decoder FFN sizes", (ffn, hf.get("decoder_ffn_dim")))
    act = hf.get("activation_function", "gelu")
    if act not in _ACTIVATIONS:
        raise _unsupported("activation_function", act)
    if hf.get("normalize_before", False) or hf.get("add_final_layer_norm", False):
        raise _unsupported("pre-LN Marian (normalize_before / add_final_layer_norm)", True)
    vocab = _require(hf, "vocab_size")
    shared = bool(hf.get("share_encoder_decoder_embeddings", True))
    tgt_vocab = vocab if shared else int(hf.get("decoder_vocab_size") or vocab)
    eos = hf.get("eos_token_id", 0)
    if isinstance(eos, list):
        if len(eos) != 1:
            raise _unsupported("several eos_token_id", eos)
        eos = eos[0]
    pad = hf.get("pad_token_id", 58100)
    start = hf.get("decoder_start_token_id", pad)
    config = TransformerConfig(
        d_model=E, nhead=heads, num_encoder_layers=_require(hf, "encoder_layers"),
        num_decoder_layers=_require(hf, "decoder_layers"), dim_feedforward=ffn, activation=_ACTIVATIONS[act],
        norm_first=False, layer_norm_eps=1e-5, final_norm=False,
        embedding_scale=math.sqrt(E) if hf.get("scale_embedding", False) else 1.0,
        positional="sinusoidal_concat", src_vocab_size=vocab, tgt_vocab_size=tgt_vocab, share_embeddings=shared,
        tie_output=bool(hf.get("tie_word_embeddings", True)), output_bias=True,
        max_length=_require(hf, "max_position_embeddings"), pad_id=pad, bos_id=start, eos_id=eos)
    state = _strip_prefix(load_state_dict(path), ())
    origin: Dict[str, str] = {}
    model = _build(Transformer, config, _marian_weights(state, config, origin), origin)
    model.generation_defaults = _marian_generation_defaults(path, hf, config)
    return model


def _marian_weights(state: Dict[str, np.ndarray], c: TransformerConfig, origin: Dict[str, str]) -> Dict[str, np.ndarray]:
    used: set = set()
    w: Dict[str, np.ndarray] = {}
    p = "model."

    def put(ours: str, theirs: str):
        w[ours] = _take(state, used, theirs)
        origin[ours] = theirs

    if c.share_embeddings:
        put("src_embed.weight", p + "shared.weight")
        for dup in (p + "encoder.embed_tokens.weight", p + "decoder.embed_tokens.weight"):
            used.add(dup)  # tied copies of shared.weight, when saved
    else:
        put("src_embed.weight", p + "encoder.embed_tokens.weight")
        put("tgt_embed.weight", p + "decoder.embed_tokens.weight")

    def attention(src: str, dst: str):
        for kind, ours in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
            names = [f"{src}{n}_proj.{kind}" for n in ("q", "k", "v")]
            w[dst + ours] = _concat_rows(names, [_take(state, used, n) for n in names])
            origin[dst + ours] = " + ".join(names)
        put(dst + "out_proj.weight", src + "out_proj.weight")
        put(dst + "out_proj.bias", src + "out_proj.bias")

    def ffn_norm(src: str, dst: str, norms: List[Tuple[str, str]]):
        put(dst + "linear1.weight", src + "fc1.weight")
        put(dst + "linear1.bias", src + "fc1.bias")
        put(dst + "linear2.weight", src + "fc2.weight")
        put(dst + "linear2.bias", src + "fc2.bias")
        for ours, theirs in norms:
            put(dst + ours + ".weight", src + theirs + ".weight")
            put(dst + ours + ".bias", src + theirs + ".bias")

    for i in range(c.num_encoder_layers):
        s, d = f"{p}encoder.layers.{i}.", f"encoder.layers.{i}."
        attention(s + "self_attn.", d + "self_attn.")
        ffn_norm(s, d, [("norm1", "self_attn_layer_norm"), ("norm2", "final_layer_norm")])
    for i in range(c.num_decoder_layers):
        s, d = f"{p}decoder.layers.{i}.", f"decoder.layers.{i}."
        attention(s + "self_attn.", d + "self_attn.")
        attention(s + "encoder_attn.", d + "multihead_attn.")
        ffn_norm(s, d, [("norm1", "self_attn_layer_norm"), ("norm2", "encoder_attn_layer_norm"),
                        ("norm3", "final_layer_norm")])
    if c.tie_output:
        used.add("lm_head.weight")  # tied to the embeddings, when saved
    else:
        put("generator.weight", "lm_head.weight")
    origin["generator.bias"] = "final_logits_bias"
    bias = state.get("final_logits_bias")
    used.add("final_logits_bias")
    w["generator.bias"] = (np.zeros(c.tgt_vocab_size, np.float32) if bias is None
                           else np.asarray(bias, np.float32).reshape(-1))
    _leftovers(state, used, (p + "encoder.embed_positions", p + "decoder.embed_positions"))
    return w


def _marian_generation_defaults(path: str, hf: dict, c: TransformerConfig) -> dict:
    """Options for Transformer.generate that reproduce Hugging Face's defaults."""
    gen = dict(hf)
    gen_file = os.path.join(path, "generation_config.json")
    if os.path.isfile(gen_file):
        with open(gen_file, encoding="utf-8") as f:
            gen.update(json.load(f))
    out: Dict[str, Any] = {}
    if gen.get("num_beams"):
        out["beam_size"] = int(gen["num_beams"])
    if gen.get("max_length"):  # counts the decoder start token
        out["max_length"] = max(1, min(int(gen["max_length"]) - 1, c.max_length))
    if gen.get("length_penalty") is not None:
        out["length_penalty"] = float(gen["length_penalty"])
    bad = gen.get("bad_words_ids") or []
    single = sorted({b[0] for b in bad if isinstance(b, list) and len(b) == 1})
    if single:
        out["suppress_tokens"] = single
    if gen.get("forced_eos_token_id") is not None:
        out["forced_eos"] = True
    return out

"""BERT-style encoders (``model_type == "bert"``: BERT, MiniLM, sentence-transformers
models such as all-MiniLM-L6-v2) -> :class:`pytransformer.EncoderModel`, with the
folder's ``tokenizer.json`` and the sentence-transformers pooling (``modules.json``,
``1_Pooling/config.json``, ``sentence_bert_config.json``) when present."""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from ..config import EncoderConfig, _check_fits_in_memory, _short
from ..encoder import EncoderModel, Pooling
from . import register
from ._hf import (ACTIVATIONS, HFConfig, build, concat_rows, folder_tokenizer, inside, layer_norm_pair, leftovers,
                  load_state_dict, read_json, strip_prefix, take, unsupported)

# config.json's names for the fields of EncoderConfig, in the messages about sizes
_BERT_NAMES = {"d_model": "hidden_size", "nhead": "num_attention_heads", "num_layers": "num_hidden_layers",
               "dim_feedforward": "intermediate_size", "vocab_size": "vocab_size",
               "max_length": "max_position_embeddings", "type_vocab_size": "type_vocab_size"}


@register("bert")
def load(path: str, hf: HFConfig) -> EncoderModel:
    """An EncoderModel from a BERT folder, with its tokenizer and sentence-transformers pooling."""
    E = hf.integer("hidden_size")
    H = hf.integer("num_attention_heads")
    act = hf.string("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise unsupported("hidden_act", act)
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise unsupported("position_embedding_type", hf.get("position_embedding_type"))
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise unsupported("decoder BERT (is_decoder / add_cross_attention)", True)
    if E % H:
        raise ValueError(f"from_pretrained: {hf.file!r}: num_attention_heads ({H}) does not divide hidden_size ({E})")
    vocab = hf.integer("vocab_size")
    config = EncoderConfig(
        d_model=E, nhead=H, num_layers=hf.integer("num_hidden_layers"), dim_feedforward=hf.integer("intermediate_size"),
        activation=ACTIVATIONS[act], norm_first=False, layer_norm_eps=hf.number("layer_norm_eps", 1e-12, minimum=0.0),
        final_norm=False, embedding_scale=1.0, positional="learned",
        type_vocab_size=hf.integer("type_vocab_size", 0, default=2), embedding_norm=True, vocab_size=vocab,
        max_length=hf.integer("max_position_embeddings"), pad_id=0)
    _check_fits_in_memory(config, f"from_pretrained: {hf.file!r}", _BERT_NAMES)
    # The sentence-transformers files are read (and checked) before the weights.
    tokenizer, pooling, normalize, max_seq = _sentence_transformers_parts(path, config.max_length)
    state = strip_prefix(load_state_dict(path), ("bert.",))
    origin: Dict[str, str] = {}
    weights = _bert_weights(state, config, origin)
    return build(EncoderModel, config, weights, origin, tokenizer=tokenizer, pooling=pooling, normalize=normalize,
                  max_seq_length=max_seq)


def _bert_weights(state: Dict[str, np.ndarray], c: EncoderConfig, origin: Dict[str, str]) -> Dict[str, np.ndarray]:
    used: set = set()
    w: Dict[str, np.ndarray] = {}

    def put(ours: str, theirs: str):
        w[ours] = take(state, used, theirs)
        origin[ours] = theirs

    def put_ln(ours: str, theirs: str):
        w[ours + "weight"], w[ours + "bias"] = layer_norm_pair(state, used, theirs)
        origin[ours + "weight"], origin[ours + "bias"] = theirs + "weight", theirs + "bias"

    put("src_embed.weight", "embeddings.word_embeddings.weight")
    put("src_pos_embed.weight", "embeddings.position_embeddings.weight")
    if c.type_vocab_size > 0:
        put("src_type_embed.weight", "embeddings.token_type_embeddings.weight")
    put_ln("src_embed_norm.", "embeddings.LayerNorm.")
    for i in range(c.num_layers):
        s, d = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            names = [f"{s}attention.self.{n}.{kind}" for n in ("query", "key", "value")]
            ours = d + ("self_attn.in_proj_weight" if kind == "weight" else "self_attn.in_proj_bias")
            w[ours] = concat_rows(names, [take(state, used, n) for n in names])
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
    leftovers(state, used, ("pooler.", "cls.", "embeddings.position_ids"))
    return w


def _sentence_transformers_parts(path: str, max_position_embeddings: int):
    """(tokenizer or None, Pooling, normalize, max_seq_length) of a model folder."""
    tokenizer = folder_tokenizer(path)
    pooling, normalize, max_seq = Pooling(("mean",)), True, None
    modules_file = os.path.join(path, "modules.json")
    if os.path.isfile(modules_file):
        modules = read_json(modules_file, list)
        for i, m in enumerate(modules):
            if not isinstance(m, dict):
                raise ValueError(f"from_pretrained: {modules_file!r}: entry {i} must be a JSON object, got "
                                 f"{_short(m)}")
            for key in ("type", "path"):
                if not isinstance(m.get(key, ""), str):
                    raise ValueError(f"from_pretrained: {modules_file!r}: {key!r} of entry {i} must be a string, got "
                                     f"{_short(m[key])}")
        types = [m.get("type", "") for m in modules]
        normalize = any(t.endswith("Normalize") for t in types)
        other = [t for t in types if not t.endswith(("Transformer", "Pooling", "Normalize"))]
        if other:
            raise unsupported("sentence-transformers module(s)", other)
        for m in modules:
            if m.get("type", "").endswith("Pooling"):
                pool_file = inside(path, os.path.join(m.get("path", ""), "config.json"), modules_file,
                                    "pooling config")
                if os.path.isfile(pool_file):
                    pool_config = read_json(pool_file)
                    try:
                        pooling = Pooling.from_sentence_transformers(pool_config)
                    except (ValueError, TypeError) as e:
                        raise ValueError(f"from_pretrained: {pool_file!r}: {e}") from e
    st_file = os.path.join(path, "sentence_bert_config.json")
    if os.path.isfile(st_file):
        st = HFConfig(read_json(st_file), st_file)
        max_seq = st.integer("max_seq_length", 1, default=None, maximum=max_position_embeddings,
                             bound=" (max_position_embeddings in config.json: the model has no more positions)")
    return tokenizer, pooling, normalize, max_seq

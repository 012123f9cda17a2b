"""The encoder-decoder layout Hugging Face's BART-derived families share (Marian,
BART, mBART, M2M100/NLLB): ``config.json`` keys ``d_model``, ``encoder_layers``,
``encoder_attention_heads``, ... and tensors ``model.{encoder,decoder}.layers.N.
{self_attn,encoder_attn}.{q,k,v,out}_proj``, ``fc1``, ``fc2`` and the
``*_layer_norm`` of each sub-layer.

A family says what differs, as a :class:`Seq2SeqLayout`: where the LayerNorms sit
(post-LN or pre-LN, a final one after each stack, one after the embeddings), how
positions are made (a fixed table, or learned rows with an offset) and its defaults.
:func:`load` does the rest, the same for every family.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..config import TransformerConfig, _check_fits_in_memory
from ..model import Transformer
from . import _hf
from ._hf import ACTIVATIONS, HFConfig, take, unsupported

# config.json's names for the fields of TransformerConfig, in the messages about sizes
CONFIG_NAMES = {"d_model": "d_model", "nhead": "encoder_attention_heads", "num_encoder_layers": "encoder_layers",
                "num_decoder_layers": "decoder_layers", "dim_feedforward": "encoder_ffn_dim",
                "src_vocab_size": "vocab_size", "tgt_vocab_size": "vocab_size",
                "max_length": "max_position_embeddings"}

# positions(hf, config, state, used, origin) -> {our name: table [max_length, d_model]}
# for learned-style tables, or {} when the config's own positional kind is used.
PositionMaker = Callable[[HFConfig, TransformerConfig, Dict[str, np.ndarray], set, Dict[str, str]],
                         Dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Seq2SeqLayout:
    """What one BART-layout family is (see the module doc)."""

    family: str                    # in messages: "Marian", "BART", ...
    norm_first: bool               # pre-LN (mBART, M2M100) or post-LN (Marian, BART)
    final_norm: bool               # model.{encoder,decoder}.layer_norm after the stacks
    embedding_norm: bool           # model.{encoder,decoder}.layernorm_embedding
    positional: str                # TransformerConfig.positional
    positions: Optional[PositionMaker]  # None: nothing to read (a fixed table computed in C++)
    output_bias: bool              # final_logits_bias (Marian, BART, mBART; M2M100 has none)
    default_activation: str
    default_pad: int
    default_scale_embedding: bool
    start_default: str = "eos"     # decoder_start_token_id when config.json has none: "eos", "pad" or "bos"
    ignored_tensors: Tuple[str, ...] = ()  # prefixes of tensors the model does not use
    separate_vocabularies: bool = False    # Marian's share_encoder_decoder_embeddings / decoder_vocab_size


def eos_id(hf: HFConfig) -> int:
    value = hf.get("eos_token_id")
    if isinstance(value, list):
        if len(value) != 1:
            raise unsupported("several eos_token_id", value)
        return HFConfig({"eos_token_id": value[0]}, hf.file).integer("eos_token_id", 0)
    return hf.integer("eos_token_id", 0, default=2)


def config_of(hf: HFConfig, layout: Seq2SeqLayout) -> Tuple[TransformerConfig, Dict[str, str]]:
    """The TransformerConfig of a BART-layout config.json, and config.json's name of
    each field (for the messages about sizes)."""
    E = hf.integer("d_model")
    heads = hf.integer("encoder_attention_heads")
    if hf.integer("decoder_attention_heads", default=heads) != heads:
        raise unsupported("different encoder/decoder head counts", (heads, hf.get("decoder_attention_heads")))
    if E % heads:
        raise ValueError(f"from_pretrained: {hf.file!r}: encoder_attention_heads ({heads}) does not divide d_model "
                         f"({E})")
    ffn = hf.integer("encoder_ffn_dim")
    if hf.integer("decoder_ffn_dim", default=ffn) != ffn:
        raise unsupported("different encoder/decoder FFN sizes", (ffn, hf.get("decoder_ffn_dim")))
    act = hf.string("activation_function", layout.default_activation)
    if act not in ACTIVATIONS:
        raise unsupported("activation_function", act)
    vocab = hf.integer("vocab_size")
    shared = True
    tgt_vocab = vocab
    if layout.separate_vocabularies:
        shared = hf.flag("share_encoder_decoder_embeddings", True)
        tgt_vocab = vocab if shared else hf.integer("decoder_vocab_size", default=vocab)
    eos = eos_id(hf)
    pad = hf.integer("pad_token_id", 0, default=layout.default_pad)
    # Hugging Face's generate() starts from decoder_start_token_id, else bos_token_id.
    fallback = {"eos": eos, "pad": pad, "bos": hf.integer("bos_token_id", 0, default=0)}[layout.start_default]
    start = hf.integer("decoder_start_token_id", 0, default=fallback)
    for key, value in (("eos_token_id", eos), ("pad_token_id", pad), ("decoder_start_token_id", start)):
        if value >= tgt_vocab:
            raise hf.error(key, f"({value}) must be < the target vocabulary size ({tgt_vocab})")
    scale = hf.flag("scale_embedding", layout.default_scale_embedding)
    config = TransformerConfig(
        d_model=E, nhead=heads, num_encoder_layers=hf.integer("encoder_layers"),
        num_decoder_layers=hf.integer("decoder_layers"), dim_feedforward=ffn, activation=ACTIVATIONS[act],
        norm_first=layout.norm_first, layer_norm_eps=1e-5, final_norm=layout.final_norm,
        embedding_scale=math.sqrt(E) if scale else 1.0, positional=layout.positional,
        embedding_norm=layout.embedding_norm, src_vocab_size=vocab, tgt_vocab_size=tgt_vocab,
        share_embeddings=shared, tie_output=hf.flag("tie_word_embeddings", True), output_bias=layout.output_bias,
        max_length=hf.integer("max_position_embeddings"), pad_id=pad, bos_id=start, eos_id=eos)
    names = dict(CONFIG_NAMES, tgt_vocab_size="vocab_size" if shared else "decoder_vocab_size")
    return config, names


def load(path: str, hf: HFConfig, layout: Seq2SeqLayout, check: Optional[Callable[[HFConfig], None]] = None,
         ) -> Transformer:
    """A Transformer from a BART-layout model folder, with its generation defaults
    (``model.generation_defaults``) and the folder's tokenizer (``model.tokenizer``,
    None without a tokenizer.json)."""
    if check is not None:
        check(hf)
    config, names = config_of(hf, layout)
    _check_fits_in_memory(config, f"from_pretrained: {hf.file!r}", names)
    defaults = _hf.generation_defaults(path, hf, config)  # checked before reading the weights
    tokenizer = _hf.folder_tokenizer(path)
    state = _hf.strip_prefix(_hf.load_state_dict(path), ())
    origin: Dict[str, str] = {}
    weights = weights_of(state, config, layout, hf, origin)
    model = _hf.build(Transformer, config, weights, origin)
    model.generation_defaults = defaults
    model.tokenizer = tokenizer
    return model


def weights_of(state: Dict[str, np.ndarray], c: TransformerConfig, layout: Seq2SeqLayout, hf: HFConfig,
               origin: Dict[str, str]) -> Dict[str, np.ndarray]:
    """pytransformer's weights (nn.Transformer names) from a BART-layout state dict."""
    used: set = set()
    w: Dict[str, np.ndarray] = {}
    p = "model."

    put, put_norm = _hf.putters(state, used, w, origin)

    if c.share_embeddings:
        put("src_embed.weight", p + "shared.weight")
        for dup in (p + "encoder.embed_tokens.weight", p + "decoder.embed_tokens.weight"):
            used.add(dup)  # tied copies of shared.weight, when saved
    else:
        put("src_embed.weight", p + "encoder.embed_tokens.weight")
        put("tgt_embed.weight", p + "decoder.embed_tokens.weight")
    if layout.positions is not None:
        w.update(layout.positions(hf, c, state, used, origin))
    if layout.embedding_norm:
        put_norm("src_embed_norm", p + "encoder.layernorm_embedding")
        put_norm("tgt_embed_norm", p + "decoder.layernorm_embedding")

    def attention(src: str, dst: str):
        for kind, ours in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
            names = [f"{src}{n}_proj.{kind}" for n in ("q", "k", "v")]
            w[dst + ours] = _hf.concat_rows(names, [take(state, used, n) for n in names])
            origin[dst + ours] = " + ".join(names)
        put(dst + "out_proj.weight", src + "out_proj.weight")
        put(dst + "out_proj.bias", src + "out_proj.bias")

    def ffn_norms(src: str, dst: str, norms: List[Tuple[str, str]]):
        put(dst + "linear1.weight", src + "fc1.weight")
        put(dst + "linear1.bias", src + "fc1.bias")
        put(dst + "linear2.weight", src + "fc2.weight")
        put(dst + "linear2.bias", src + "fc2.bias")
        for ours, theirs in norms:
            put_norm(dst + ours, src + theirs)

    for i in range(c.num_encoder_layers):
        s, d = f"{p}encoder.layers.{i}.", f"encoder.layers.{i}."
        attention(s + "self_attn.", d + "self_attn.")
        ffn_norms(s, d, [("norm1", "self_attn_layer_norm"), ("norm2", "final_layer_norm")])
    for i in range(c.num_decoder_layers):
        s, d = f"{p}decoder.layers.{i}.", f"decoder.layers.{i}."
        attention(s + "self_attn.", d + "self_attn.")
        attention(s + "encoder_attn.", d + "multihead_attn.")
        ffn_norms(s, d, [("norm1", "self_attn_layer_norm"), ("norm2", "encoder_attn_layer_norm"),
                         ("norm3", "final_layer_norm")])
    if c.final_norm:
        put_norm("encoder.norm", p + "encoder.layer_norm")
        put_norm("decoder.norm", p + "decoder.layer_norm")
    if c.tie_output:
        used.add("lm_head.weight")  # tied to the embeddings, when saved
    else:
        put("generator.weight", "lm_head.weight")
    if c.output_bias:
        origin["generator.bias"] = "final_logits_bias"
        bias = state.get("final_logits_bias")
        used.add("final_logits_bias")
        w["generator.bias"] = (np.zeros(c.tgt_vocab_size, np.float32) if bias is None
                               else np.asarray(bias, np.float32).reshape(-1))
    _hf.leftovers(state, used, layout.ignored_tensors)
    return w


def learned_positions(offset: int = 2) -> PositionMaker:
    """BART / mBART: learned position rows ``embed_positions.weight`` [max + offset, E],
    whose first ``offset`` rows no position uses (position t is row t + offset)."""

    def make(hf: HFConfig, c: TransformerConfig, state: Dict[str, np.ndarray], used: set,
             origin: Dict[str, str]) -> Dict[str, np.ndarray]:
        out = {}
        for side, ours in (("encoder", "src_pos_embed.weight"), ("decoder", "tgt_pos_embed.weight")):
            theirs = f"model.{side}.embed_positions.weight"
            table = take(state, used, theirs)
            want = (c.max_length + offset, c.d_model)
            if table.shape != want:
                raise _hf.WeightsError([f"{theirs!r} has shape {tuple(table.shape)}, expected {want} "
                                        f"(max_position_embeddings + {offset} rows of d_model)"])
            out[ours] = table[offset:]
            origin[ours] = f"{theirs}[{offset}:]"
        return out

    return make

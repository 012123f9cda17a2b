"""CTranslate2 model folders (``model.bin`` + ``config.json`` + vocabulary/tokenizer),
the format faster-whisper and CTranslate2 users have on disk.

``model.bin`` (binary versions 1-6, little-endian): ``uint32`` version; from version 2
the spec name and an ``uint32`` revision; an ``uint32`` count of variables, each a name,
an ``uint8`` rank, ``rank`` x ``uint32`` dims, then (version >= 4) an ``uint8`` dtype
id and an ``uint32`` byte count, or (older) an ``uint8`` item size and an ``uint32``
element count, then the bytes; from version 3 an ``uint32`` count of aliases (name,
target name). Strings are an ``uint16`` length and that many bytes (with a NUL).
Every size is checked against the file before it is used.

Supported here: the Whisper spec (``WhisperSpec``) as :class:`pytransformer.WhisperModel`,
and the encoder-decoder Transformer spec (``TransformerSpec``: what ct2-transformers-converter
makes of Marian/OPUS-MT and other BART-layout translators) as a
:class:`pytransformer.Transformer`, with float32, float16, bfloat16 and int8 (+ scale)
variables.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Dict, Optional, Tuple

import numpy as np

from ..config import TransformerConfig
from ..model import Transformer
from ..whisper import WhisperModel, WhisperTokens
from . import _hf

# CTranslate2's DataType ids (include/ctranslate2/types.h)
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<f2"),
           5: "bfloat16"}
_DTYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_SUPPORTED_SPECS = ("WhisperSpec", "TransformerSpec")
_ACTIVATIONS = {0: "relu", 2: "silu", 3: "gelu"}  # CTranslate2's Activation ids pytransformer computes


class CT2FormatError(ValueError):
    """A model.bin that is not a CTranslate2 model this reader understands."""


def read_model_bin(path: str) -> Tuple[str, int, Dict[str, np.ndarray], Dict[str, str]]:
    """(spec name, revision, variables, aliases) of a CTranslate2 ``model.bin``;
    variables are numpy arrays (bfloat16 as float32, int8 as int8)."""
    with open(path, "rb") as f:
        data = memoryview(f.read())
    pos = 0

    def need(n: int, what: str):
        if n < 0 or pos + n > len(data):
            raise CT2FormatError(f"{path!r} is truncated or not a CTranslate2 model.bin (reading {what} at byte "
                                 f"{pos}: {n} bytes needed, {len(data) - pos} left)")

    def uint(fmt: str, what: str) -> int:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        need(size, what)
        v = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += size
        return v

    def string(what: str) -> str:
        nonlocal pos
        n = uint("H", what)
        need(n, what)
        raw = bytes(data[pos:pos + n])
        pos += n
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise CT2FormatError(f"{path!r}: {what} at byte {pos - n} is not UTF-8 text") from None

    version = uint("I", "the binary version")
    if not 1 <= version <= 6:
        raise CT2FormatError(f"{path!r}: unsupported CTranslate2 binary version {version} (this reader knows 1-6)")
    spec, revision = "", 1
    if version >= 2:
        spec = string("the spec name")
        revision = uint("I", "the spec revision")
    count = uint("I", "the variable count")
    variables: Dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string("a variable name")
        rank = uint("B", f"the rank of {name!r}")
        dims = [uint("I", f"the dims of {name!r}") for _ in range(rank)]
        if version >= 4:
            type_id = uint("B", f"the dtype of {name!r}")
            nbytes = uint("I", f"the size of {name!r}")
            if type_id not in _DTYPES:
                raise CT2FormatError(f"{path!r}: variable {name!r} has the unknown dtype id {type_id}")
            dtype = _DTYPES[type_id]
            itemsize = 2 if dtype == "bfloat16" else dtype.itemsize
        else:
            itemsize = uint("B", f"the item size of {name!r}")
            nbytes = uint("I", f"the element count of {name!r}") * itemsize
            dtype = {4: np.dtype("<f4"), 2: np.dtype("<f2"), 1: np.dtype("i1")}.get(itemsize)
            if dtype is None:
                raise CT2FormatError(f"{path!r}: variable {name!r} has the unknown item size {itemsize}")
        n = math.prod(dims)  # Python ints: no overflow whatever the file claims
        if n * itemsize != nbytes:
            raise CT2FormatError(f"{path!r}: variable {name!r} has {nbytes} bytes, but its shape {dims} needs "
                                 f"{n * itemsize}")
        need(nbytes, f"the data of {name!r}")
        raw = np.frombuffer(data, np.uint8, nbytes, pos)
        pos += nbytes
        if dtype == "bfloat16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(dtype)
        if name in variables:
            raise CT2FormatError(f"{path!r}: variable {name!r} appears twice")
        variables[name] = arr.reshape(dims)
    aliases: Dict[str, str] = {}
    if version >= 3:
        for _ in range(uint("I", "the alias count")):
            alias, target = string("an alias name"), string("an alias target")
            if target not in variables:
                raise CT2FormatError(f"{path!r}: alias {alias!r} points to {target!r}, which is not a variable")
            aliases[alias] = target
    return spec, revision, variables, aliases


def is_ct2_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "model.bin"))


class _Vars:
    """Variables by name, aliases resolved, int8 weights dequantized with their scale."""

    def __init__(self, path: str, variables: Dict[str, np.ndarray], aliases: Dict[str, str]):
        self.path, self.v, self.aliases, self.used = path, variables, aliases, set()

    def has(self, name: str) -> bool:
        return name in self.v or name in self.aliases

    def get(self, name: str) -> np.ndarray:
        real = self.aliases.get(name, name)
        if real not in self.v:
            raise CT2FormatError(f"{self.path!r}: the model has no variable {name!r}")
        self.used.add(real)
        a = self.v[real]
        if a.dtype == np.int8 and a.ndim == 2:
            scale_name = real + "_scale" if real + "_scale" in self.v else real.rsplit("/", 1)[0] + "/weight_scale"
            if scale_name not in self.v:
                raise CT2FormatError(f"{self.path!r}: int8 variable {real!r} has no scale ({scale_name!r})")
            self.used.add(scale_name)
            scale = np.asarray(self.v[scale_name], np.float32).reshape(-1, 1)
            return a.astype(np.float32) / scale
        return np.asarray(a, np.float32)

    def scalar(self, name: str, default=None):
        if not self.has(name):
            if default is None:
                raise CT2FormatError(f"{self.path!r}: the model has no variable {name!r}")
            return default
        self.used.add(self.aliases.get(name, name))
        return self.v[self.aliases.get(name, name)].reshape(-1)[0].item()


def load(path: str, compute_type: str = "float32"):
    """The model of a CTranslate2 folder: a WhisperModel or a Transformer."""
    bin_path = os.path.join(path, "model.bin")
    spec, revision, variables, aliases = read_model_bin(bin_path)
    if spec == "WhisperSpec":
        return load_whisper(path, compute_type, (spec, revision, variables, aliases))
    if spec == "TransformerSpec":
        return load_transformer(path, compute_type, (spec, revision, variables, aliases))
    raise CT2FormatError(f"{bin_path!r}: the CTranslate2 spec {spec or '(none)'!r} is not supported "
                         f"(supported: {', '.join(_SUPPORTED_SPECS)})")


def _vocabulary(path: str) -> list:
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            vocab = _hf.read_json(file, list)
            if not all(isinstance(t, str) for t in vocab):
                raise CT2FormatError(f"{file!r} must be a JSON array of token strings")
            return vocab
    for name in ("shared_vocabulary.txt", "target_vocabulary.txt"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f]
    raise FileNotFoundError(f"from_pretrained: {path!r} has no shared_vocabulary.json (or .txt): a CTranslate2 "
                            "translator folder needs its vocabulary")


def load_transformer(path: str, compute_type: str = "float32", read=None) -> Transformer:
    """A :class:`pytransformer.Transformer` from a CTranslate2 TransformerSpec folder
    with one shared vocabulary (Marian/OPUS-MT, BART-layout conversions).

    CTranslate2 starts Marian decoding from a zero embedding (``start_from_zero_embedding``):
    here that is one extra token at the end of the vocabulary, ``<pad>``, whose
    embedding row is zeros, the decoder start and suppressed in
    ``generation_defaults``; ``model.vocabulary`` lists the token strings by id."""
    bin_path = os.path.join(path, "model.bin")
    spec, revision, variables, aliases = read or read_model_bin(bin_path)
    v = _Vars(bin_path, variables, aliases)
    if v.has("encoder/embeddings_1/weight") or not v.has("encoder/embeddings_0/weight"):
        raise CT2FormatError(f"{bin_path!r}: one source embedding table is supported")
    pre = bool(v.scalar("encoder/pre_norm", 1))
    if bool(v.scalar("decoder/pre_norm", int(pre))) != pre:
        raise CT2FormatError(f"{bin_path!r}: encoder and decoder differ in pre_norm")
    act_id = int(v.scalar("encoder/activation", 0))
    if act_id not in _ACTIVATIONS or int(v.scalar("decoder/activation", act_id)) != act_id:
        raise CT2FormatError(f"{bin_path!r}: activation {act_id} is not supported (ReLU, SiLU, GELU are)")
    for flag in ("decoder/alibi", "encoder/multi_query_attention", "decoder/multi_query_attention",
                 "encoder/relative_position", "decoder/relative_position", "encoder/rms_norm"):
        if v.has(flag) and int(v.scalar(flag)):
            raise CT2FormatError(f"{bin_path!r}: {flag} is not supported")
    for name in ("encoder/layernorm_embedding/gamma", "decoder/layernorm_embedding/gamma"):
        if v.has(name):
            raise CT2FormatError(f"{bin_path!r}: {name.rsplit('/', 1)[0]} is not supported yet")
    src = v.get("encoder/embeddings_0/weight")
    tgt = v.get("decoder/embeddings/weight")
    V, E = tgt.shape
    if src.shape != tgt.shape or not np.array_equal(src, tgt):
        raise CT2FormatError(f"{bin_path!r}: separate source and target embeddings are not supported yet")
    heads = int(v.scalar("decoder/num_heads"))
    scale_src = float(v.scalar("encoder/scale_embeddings", 1))
    scale_tgt = float(v.scalar("decoder/scale_embeddings", scale_src))
    if scale_src == 1.0 and isinstance(v.scalar("encoder/scale_embeddings", 1), (bool, int)):
        scale_src = float(np.sqrt(E))  # older files: a flag meaning sqrt(depth)
    if scale_src != scale_tgt:
        raise CT2FormatError(f"{bin_path!r}: different source and target embedding scales")
    n_enc = sum(1 for k in list(variables) + list(aliases)
                if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_dec = sum(1 for k in list(variables) + list(aliases)
                if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    ffn = v.get("encoder/layer_0/ffn/linear_0/weight").shape[0]
    zero_start = bool(v.scalar("decoder/start_from_zero_embedding", 0))
    vocab = list(_vocabulary(path))
    if len(vocab) != V:
        raise CT2FormatError(f"{path!r}: the vocabulary has {len(vocab)} tokens, the embeddings {V} rows")
    w: Dict[str, np.ndarray] = {}
    table = tgt
    extra = 0
    if zero_start:
        table = np.concatenate([tgt, np.zeros((1, E), np.float32)])
        vocab.append("<pad>")
        extra = 1
    w["src_embed.weight"] = table
    pos_src = v.get("encoder/position_encodings/encodings")
    pos_tgt = v.get("decoder/position_encodings/encodings")
    if pos_src.shape != pos_tgt.shape or not np.array_equal(pos_src, pos_tgt):
        raise CT2FormatError(f"{bin_path!r}: different source and target position tables are not supported")
    w["src_pos_embed.weight"] = pos_src
    w["tgt_pos_embed.weight"] = pos_tgt

    def norm(ours: str, theirs: str):
        w[ours + ".weight"] = v.get(theirs + "/gamma")
        w[ours + ".bias"] = v.get(theirs + "/beta")

    def linear(ours: str, theirs: str):
        weight = v.get(theirs + "/weight")
        w[ours + ".weight"] = weight
        w[ours + ".bias"] = (v.get(theirs + "/bias") if v.has(theirs + "/bias")
                             else np.zeros(weight.shape[0], np.float32))

    def self_attention_and_ffn(d: str, s_: str, ffn_norm: str):
        """Self-attention (fused q/k/v, out), its norm1, the FFN and its norm."""
        linear(d + "self_attn.in_proj", s_ + "self_attention/linear_0")
        w[d + "self_attn.in_proj_weight"] = w.pop(d + "self_attn.in_proj.weight")
        w[d + "self_attn.in_proj_bias"] = w.pop(d + "self_attn.in_proj.bias")
        linear(d + "self_attn.out_proj", s_ + "self_attention/linear_1")
        norm(d + "norm1", s_ + "self_attention/layer_norm")
        norm(d + ffn_norm, s_ + "ffn/layer_norm")
        linear(d + "linear1", s_ + "ffn/linear_0")
        linear(d + "linear2", s_ + "ffn/linear_1")

    for i in range(n_enc):
        self_attention_and_ffn(f"encoder.layers.{i}.", f"encoder/layer_{i}/", "norm2")
    for i in range(n_dec):
        s_, d = f"decoder/layer_{i}/", f"decoder.layers.{i}."
        self_attention_and_ffn(d, s_, "norm3")
        linear(d + "q", s_ + "attention/linear_0")
        linear(d + "kv", s_ + "attention/linear_1")
        w[d + "multihead_attn.in_proj_weight"] = np.concatenate([w.pop(d + "q.weight"), w.pop(d + "kv.weight")])
        w[d + "multihead_attn.in_proj_bias"] = np.concatenate([w.pop(d + "q.bias"), w.pop(d + "kv.bias")])
        linear(d + "multihead_attn.out_proj", s_ + "attention/linear_2")
        norm(d + "norm2", s_ + "attention/layer_norm")
    final = pre and v.has("encoder/layer_norm/gamma")
    if final:
        norm("encoder.norm", "encoder/layer_norm")
        norm("decoder.norm", "decoder/layer_norm")
    proj = aliases.get("decoder/projection/weight", "decoder/projection/weight")
    if proj != "decoder/embeddings/weight":
        raise CT2FormatError(f"{bin_path!r}: an output projection not tied to the embeddings is not supported yet")
    bias = v.has("decoder/projection/bias")
    if bias:
        b = v.get("decoder/projection/bias")
        w["generator.bias"] = np.concatenate([b, np.zeros(extra, np.float32)])
    cfg_file = os.path.join(path, "config.json")
    cfg = _hf.read_json(cfg_file) if os.path.isfile(cfg_file) else {}

    def token_id(key: str, default: str) -> int:
        tok = cfg.get(key) or default
        if tok not in vocab:
            raise CT2FormatError(f"{cfg_file!r}: {key} {tok!r} is not in the vocabulary")
        return vocab.index(tok)

    eos = token_id("eos_token", "</s>")
    start = V if zero_start else token_id("decoder_start_token", "</s>")
    config = TransformerConfig(
        d_model=E, nhead=heads, num_encoder_layers=n_enc, num_decoder_layers=n_dec, dim_feedforward=ffn,
        activation=_ACTIVATIONS[act_id], norm_first=pre, layer_norm_eps=1e-5 if cfg.get("layer_norm_epsilon") is None
        else float(cfg["layer_norm_epsilon"]), final_norm=final, embedding_scale=scale_src, positional="learned",
        src_vocab_size=V + extra, tgt_vocab_size=V + extra, share_embeddings=True, tie_output=True,
        output_bias=bias, max_length=pos_src.shape[0], pad_id=start if zero_start else eos, bos_id=start,
        eos_id=eos)
    model = Transformer(config, w, compute_type=compute_type)
    model.vocabulary = vocab
    model.generation_defaults = {"suppress_tokens": [V]} if zero_start else {}
    model.tokenizer = None
    return model


def load_whisper(path: str, compute_type: str = "float32", read=None) -> WhisperModel:
    """A :class:`pytransformer.WhisperModel` from a CTranslate2 Whisper folder."""
    bin_path = os.path.join(path, "model.bin")
    spec, revision, variables, aliases = read or read_model_bin(bin_path)
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{bin_path!r}: the spec is {spec!r}, not WhisperSpec")
    if revision > 3:
        raise CT2FormatError(f"{bin_path!r}: {spec} revision {revision} is newer than this reader knows (3)")
    v = _Vars(bin_path, variables, aliases)
    for flag, want in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0), ("decoder/alibi", 0)):
        if v.has(flag) and int(v.scalar(flag)) != want:
            raise CT2FormatError(f"{bin_path!r}: {flag} = {v.scalar(flag)} is not Whisper's ({want})")
    emb = v.get("decoder/embeddings/weight")
    V, E = emb.shape
    heads = int(v.scalar("decoder/num_heads"))
    if int(v.scalar("encoder/num_heads", heads)) != heads:
        raise CT2FormatError(f"{bin_path!r}: different encoder and decoder head counts")
    n_enc = sum(1 for k in variables if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/bias"))
    n_dec = sum(1 for k in variables if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/bias"))
    ffn = v.get("encoder/layer_0/ffn/linear_0/weight").shape[0] if n_enc else 4 * E
    dec_pos = v.get("decoder/position_encodings/encodings")
    w: Dict[str, np.ndarray] = {}

    def norm(ours: str, theirs: str):
        w[ours + ".weight"] = v.get(theirs + "/gamma")
        w[ours + ".bias"] = v.get(theirs + "/beta")

    def linear(ours: str, theirs: str):
        w[ours + ".weight"] = v.get(theirs + "/weight")
        w[ours + ".bias"] = v.get(theirs + "/bias") if v.has(theirs + "/bias") else np.zeros(
            w[ours + ".weight"].shape[0], np.float32)

    def ffn_block(d: str, s: str):
        linear(d + "linear1", s + "ffn/linear_0")
        linear(d + "linear2", s + "ffn/linear_1")

    for i in range(n_enc):
        s, d = f"encoder/layer_{i}/", f"encoder.layers.{i}."
        w[d + "self_attn.in_proj_weight"] = v.get(s + "self_attention/linear_0/weight")
        w[d + "self_attn.in_proj_bias"] = v.get(s + "self_attention/linear_0/bias")
        linear(d + "self_attn.out_proj", s + "self_attention/linear_1")
        norm(d + "norm1", s + "self_attention/layer_norm")
        norm(d + "norm2", s + "ffn/layer_norm")
        ffn_block(d, s)
    norm("encoder.norm", "encoder/layer_norm")
    w["tgt_embed.weight"] = emb
    w["tgt_pos_embed.weight"] = dec_pos
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}/", f"decoder.layers.{i}."
        w[d + "self_attn.in_proj_weight"] = v.get(s + "self_attention/linear_0/weight")
        w[d + "self_attn.in_proj_bias"] = v.get(s + "self_attention/linear_0/bias")
        linear(d + "self_attn.out_proj", s + "self_attention/linear_1")
        w[d + "multihead_attn.in_proj_weight"] = np.concatenate(
            [v.get(s + "attention/linear_0/weight"), v.get(s + "attention/linear_1/weight")])
        w[d + "multihead_attn.in_proj_bias"] = np.concatenate(
            [v.get(s + "attention/linear_0/bias"), v.get(s + "attention/linear_1/bias")])
        linear(d + "multihead_attn.out_proj", s + "attention/linear_2")
        norm(d + "norm1", s + "self_attention/layer_norm")
        norm(d + "norm2", s + "attention/layer_norm")
        norm(d + "norm3", s + "ffn/layer_norm")
        ffn_block(d, s)
    norm("decoder.norm", "decoder/layer_norm")
    if v.has("decoder/projection/weight"):
        proj = v.aliases.get("decoder/projection/weight", "decoder/projection/weight")
        if proj != "decoder/embeddings/weight":
            raise CT2FormatError(f"{bin_path!r}: an output projection not tied to the embeddings is not supported")
    conv1 = (v.get("encoder/conv1/weight"), v.get("encoder/conv1/bias"))
    conv2 = (v.get("encoder/conv2/weight"), v.get("encoder/conv2/bias"))
    positions = v.get("encoder/position_encodings/encodings")
    n_mels = conv1[0].shape[1]

    tokenizer = _hf.folder_tokenizer(path)
    tokens = _tokens(path, V, tokenizer)
    config = TransformerConfig(
        d_model=E, nhead=heads, num_encoder_layers=n_enc, num_decoder_layers=n_dec, dim_feedforward=ffn,
        activation="gelu", norm_first=True, layer_norm_eps=1e-5, final_norm=True, embedding_scale=1.0,
        positional="learned", src_vocab_size=0, tgt_vocab_size=V, share_embeddings=False, tie_output=True,
        output_bias=False, max_length=dec_pos.shape[0], pad_id=tokens.eot, bos_id=tokens.sot, eos_id=tokens.eot)
    transformer = Transformer(config, w, compute_type=compute_type)
    return WhisperModel(transformer, conv1, conv2, positions, n_mels, tokens, tokenizer)


def _tokens(path: str, vocab: int, tokenizer) -> WhisperTokens:
    cfg_file = os.path.join(path, "config.json")
    cfg = _hf.read_json(cfg_file) if os.path.isfile(cfg_file) else {}
    if tokenizer is None or not hasattr(tokenizer, "token_to_id"):
        raise ValueError(f"from_pretrained: {path!r}: a CTranslate2 Whisper folder needs its tokenizer.json (and "
                         "the tokenizers package) to find the special tokens")

    def tid(*names: str) -> Optional[int]:
        for n in names:
            t = tokenizer.token_to_id(n)
            if t is not None and 0 <= t < vocab:
                return t
        return None

    sot, eot, no_ts = tid("<|startoftranscript|>"), tid("<|endoftext|>"), tid("<|notimestamps|>")
    if None in (sot, eot, no_ts):
        raise ValueError(f"from_pretrained: {path!r}: tokenizer.json lacks Whisper's special tokens")
    lang_ids = cfg.get("lang_ids") or []
    languages: Dict[str, int] = {}
    if vocab >= 51865:  # multilingual vocabularies; English-only models keep <|en|> .. but are prompted without them
        for t in lang_ids:
            tok = tokenizer.id_to_token(int(t)) or ""
            if tok.startswith("<|") and tok.endswith("|>"):
                languages[tok[2:-2]] = int(t)
    transcribe, translate = tid("<|transcribe|>"), tid("<|translate|>")
    sot_prev, sot_lm = tid("<|startofprev|>"), tid("<|startoflm|>")
    # faster-whisper's default: the checkpoint's non-speech tokens, and the task / start tokens
    suppress = set(int(t) for t in cfg.get("suppress_ids") or [])
    suppress.update(t for t in (transcribe, translate, sot, sot_prev, sot_lm) if t is not None)
    begin = tuple(int(t) for t in (cfg.get("suppress_ids_begin") or [tid("Ġ") or 220, eot]))
    return WhisperTokens(sot=sot, eot=eot, no_timestamps=no_ts, transcribe=transcribe, translate=translate,
                         no_speech=tid("<|nospeech|>", "<|nocaptions|>"), languages=languages,
                         suppress=tuple(sorted(suppress)), begin_suppress=begin, sot_prev=sot_prev)

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

from .config import _INT32_MAX, TransformerConfig, _check_fits_in_memory, _short
from .encoder import EncoderModel, Pooling
from .model import Transformer
from .weights import WeightsError, _to_numpy, read_safetensors

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
    hf = _read_json(cfg_path)
    model_type = hf.get("model_type")
    loaders: Dict[str, Callable] = {"bert": _load_bert, "marian": _load_marian}
    if not isinstance(model_type, str) or model_type not in loaders:
        raise ValueError(f"from_pretrained: model_type {model_type!r} is not supported (supported: "
                         f"{sorted(loaders)})")
    return loaders[model_type](path, _Config(hf, cfg_path))


# -- shared helpers ----------------------------------------------------------------


def _read_json(file: str, kind: type = dict) -> Any:
    """The JSON value of ``file``, which must be a ``kind`` (dict: an object, list: an array)."""
    try:
        with open(file, "rb") as f:
            text = f.read().decode("utf-8")
        value = json.loads(text)
    except UnicodeDecodeError as e:
        raise ValueError(f"from_pretrained: {file!r} is not valid JSON (not UTF-8 text: {e})") from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, ints of too many digits, deep nesting
        raise ValueError(f"from_pretrained: {file!r} is not valid JSON ({e})") from e
    if not isinstance(value, kind):
        want = {dict: "a JSON object", list: "a JSON array"}[kind]
        raise ValueError(f"from_pretrained: {file!r} does not hold {want} (it holds a JSON "
                         f"{_json_type(value)})")
    return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


_MISSING = object()


class _Config:
    """A JSON object read from ``file``, with typed getters whose errors name the file
    and the key (``ValueError``), never a TypeError or ZeroDivisionError later on."""

    def __init__(self, data: dict, file: str):
        self.data, self.file = data, file

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def error(self, key: str, problem: str) -> ValueError:
        return ValueError(f"from_pretrained: {self.file!r}: {key!r} {problem}")

    def integer(self, key: str, minimum: int = 1, default: Any = _MISSING, maximum: float = _INT32_MAX,
                bound: str = "") -> int:
        """An int in [minimum, maximum] (``bound`` says where the maximum comes from); a
        missing key (or null) takes ``default``, or is an error when there is none."""
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise ValueError(f"from_pretrained: {self.file!r} has no {key!r}" +
                                 (" (it is null)" if key in self.data else ""))
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an int, got {_short(value)} (a JSON {_json_type(value)})")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {_short(value)}")
        if value > maximum:
            raise self.error(key, f"must be <= {maximum}{bound or ' (sizes and ids are 32-bit ints)'}, got "
                                  f"{_short(value)}")
        return value

    def number(self, key: str, default: float, minimum: float = -math.inf) -> float:
        """A finite number (int or float, not a bool) >= minimum that float32 holds."""
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {_short(value)} (a JSON {_json_type(value)})")
        if isinstance(value, int) and abs(value) > 3.4028234663852886e38:
            raise self.error(key, f"must be finite in float32, got {_short(value)}")
        value = float(value)
        if not math.isfinite(value) or abs(value) > 3.4028234663852886e38 or value < minimum:
            raise self.error(key, f"must be a finite number >= {minimum} (in float32), got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_short(value)} (a JSON {_json_type(value)})")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_short(value)} (a JSON {_json_type(value)})")
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
        return _read_shards(path, index)
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


def _read_shards(path: str, index: str) -> Dict[str, np.ndarray]:
    """The tensors of the shards ``model.safetensors.index.json`` lists; each tensor
    it names must be in its shard, and no tensor may be in two shards."""
    data = _read_json(index)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        missing = "" if "weight_map" in data else " (it is missing)"
        raise ValueError(f"from_pretrained: {index!r}: 'weight_map' must be a JSON object mapping tensor names to "
                         f"shard files, got {_short(weight_map)}{missing}")
    if not weight_map:
        raise ValueError(f"from_pretrained: {index!r}: 'weight_map' is empty (no shard files listed)")
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ValueError(f"from_pretrained: {index!r}: the shard of {name!r} in 'weight_map' must be a file name "
                             f"(a string), got {_short(shard)}")
    out: Dict[str, np.ndarray] = {}
    origin: Dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
        file = _inside(path, shard, index, "shard")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"from_pretrained: {index!r} lists the shard {shard!r}, but {file!r} is not a "
                                    "file")
        tensors = _read_safetensors(file)
        for name in tensors:
            if name in origin:
                raise ValueError(f"from_pretrained: tensor {name!r} is in two shards, {origin[name]!r} and {shard!r}")
            origin[name] = shard
        out.update(tensors)
    misplaced = sorted(name for name, shard in weight_map.items() if origin.get(name) != shard)
    if misplaced:
        name = misplaced[0]
        where = f"it is in {origin[name]!r}" if name in origin else "no shard has it"
        raise ValueError(f"from_pretrained: {index!r} puts tensor {name!r} in {weight_map[name]!r}, but {where}" +
                         (f" ({len(misplaced)} such tensors)" if len(misplaced) > 1 else ""))
    return out


def _inside(folder: str, name: str, listed_in: str, what: str) -> str:
    """``folder/name`` for a relative file name listed in ``listed_in``, refusing names
    that leave the folder: absolute paths, ``..`` components, symbolic links to files
    outside it (except the blob store of a Hugging Face cache snapshot, whose files are
    links into ``../../blobs``)."""
    def refuse(why: str) -> ValueError:
        return ValueError(f"from_pretrained: {listed_in!r} lists the {what} {name!r}, which {why}; refusing to read "
                          "outside the model folder")

    if not name or "\x00" in name:
        raise refuse("is not a file name")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or os.path.splitdrive(name)[0]:
        raise refuse("is an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise refuse("has a '..' component")
    full = os.path.join(folder, name)
    root, real = os.path.realpath(folder), os.path.realpath(full)
    if _within(real, root):
        return full
    snapshots = os.path.dirname(root)
    if os.path.basename(snapshots) == "snapshots" and _within(real, os.path.join(os.path.dirname(snapshots), "blobs")):
        return full
    raise refuse(f"resolves to {real!r}, outside the model folder {root!r}")


def _within(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _read_safetensors(file: str) -> Dict[str, np.ndarray]:
    return read_safetensors(file, "from_pretrained: ")


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


# config.json's names for the fields of TransformerConfig, in the messages about sizes
_BERT_NAMES = {"d_model": "hidden_size", "nhead": "num_attention_heads", "num_encoder_layers": "num_hidden_layers",
               "dim_feedforward": "intermediate_size", "src_vocab_size": "vocab_size",
               "max_length": "max_position_embeddings", "type_vocab_size": "type_vocab_size"}
_MARIAN_NAMES = {"d_model": "d_model", "nhead": "encoder_attention_heads", "num_encoder_layers": "encoder_layers",
                 "num_decoder_layers": "decoder_layers", "dim_feedforward": "encoder_ffn_dim",
                 "src_vocab_size": "vocab_size", "tgt_vocab_size": "decoder_vocab_size",
                 "max_length": "max_position_embeddings"}


def _load_bert(path: str, hf: _Config) -> EncoderModel:
    E = hf.integer("hidden_size")
    H = hf.integer("num_attention_heads")
    act = hf.string("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise _unsupported("hidden_act", act)
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise _unsupported("position_embedding_type", hf.get("position_embedding_type"))
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise _unsupported("decoder BERT (is_decoder / add_cross_attention)", True)
    if E % H:
        raise ValueError(f"from_pretrained: {hf.file!r}: num_attention_heads ({H}) does not divide hidden_size ({E})")
    vocab = hf.integer("vocab_size")
    config = TransformerConfig(
        d_model=E, nhead=H, num_encoder_layers=hf.integer("num_hidden_layers"), num_decoder_layers=0,
        dim_feedforward=hf.integer("intermediate_size"), activation=_ACTIVATIONS[act], norm_first=False,
        layer_norm_eps=hf.number("layer_norm_eps", 1e-12, minimum=0.0), final_norm=False, embedding_scale=1.0,
        positional="learned", type_vocab_size=hf.integer("type_vocab_size", 0, default=2), embedding_norm=True,
        src_vocab_size=vocab, tgt_vocab_size=max(vocab, 3), share_embeddings=False, tie_output=True,
        output_bias=False, max_length=hf.integer("max_position_embeddings"), pad_id=0, bos_id=1, eos_id=2)
    _check_fits_in_memory(config, f"from_pretrained: {hf.file!r}", _BERT_NAMES, encoder_only=True)
    # The sentence-transformers files are read (and checked) before the weights.
    tokenizer, pooling, normalize, max_seq = _sentence_transformers_parts(path, config.max_length)
    state = _strip_prefix(load_state_dict(path), ("bert.",))
    origin: Dict[str, str] = {}
    weights = _bert_weights(state, config, origin)
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


def _sentence_transformers_parts(path: str, max_position_embeddings: int):
    """(tokenizer or None, Pooling, normalize, max_seq_length) of a model folder."""
    tokenizer = None
    tok_file = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tok_file):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            tokenizer = _MissingTokenizer(tok_file)
        else:
            try:
                tokenizer = Tokenizer.from_file(tok_file)
            except Exception as e:  # tokenizers' own error type: invalid JSON or an unknown layout
                raise ValueError(f"from_pretrained: cannot read {tok_file!r} with tokenizers ({e})") from e
    pooling, normalize, max_seq = Pooling(("mean",)), True, None
    modules_file = os.path.join(path, "modules.json")
    if os.path.isfile(modules_file):
        modules = _read_json(modules_file, list)
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
            raise _unsupported("sentence-transformers module(s)", other)
        for m in modules:
            if m.get("type", "").endswith("Pooling"):
                pool_file = _inside(path, os.path.join(m.get("path", ""), "config.json"), modules_file,
                                    "pooling config")
                if os.path.isfile(pool_file):
                    pool_config = _read_json(pool_file)
                    try:
                        pooling = Pooling.from_sentence_transformers(pool_config)
                    except (ValueError, TypeError) as e:
                        raise ValueError(f"from_pretrained: {pool_file!r}: {e}") from e
    st_file = os.path.join(path, "sentence_bert_config.json")
    if os.path.isfile(st_file):
        st = _Config(_read_json(st_file), st_file)
        max_seq = st.integer("max_seq_length", 1, default=None, maximum=max_position_embeddings,
                             bound=" (max_position_embeddings in config.json: the model has no more positions)")
    return tokenizer, pooling, normalize, max_seq


class _MissingTokenizer:
    """Stands in for a tokenizer when the `tokenizers` package is not installed."""

    def __init__(self, file: str):
        self.file = file

    def __call__(self, text):
        raise RuntimeError(f"embed() needs the 'tokenizers' package to read {self.file}: pip install tokenizers")


# -- Marian ------------------------------------------------------------------------


def _load_marian(path: str, hf: _Config) -> Transformer:
    E = hf.integer("d_model")
    heads = hf.integer("encoder_attention_heads")
    if hf.integer("decoder_attention_heads", default=heads) != heads:
        raise _unsupported("different encoder/decoder head counts", (heads, hf.get("decoder_attention_heads")))
    if E % heads:
        raise ValueError(f"from_pretrained: {hf.file!r}: encoder_attention_heads ({heads}) does not divide d_model "
                         f"({E})")
    ffn = hf.integer("encoder_ffn_dim")
    if hf.integer("decoder_ffn_dim", default=ffn) != ffn:
        raise _unsupported("different encoder/decoder FFN sizes", (ffn, hf.get("decoder_ffn_dim")))
    act = hf.string("activation_function", "gelu")
    if act not in _ACTIVATIONS:
        raise _unsupported("activation_function", act)
    if hf.flag("normalize_before", False) or hf.flag("add_final_layer_norm", False):
        raise _unsupported("pre-LN Marian (normalize_before / add_final_layer_norm)", True)
    vocab = hf.integer("vocab_size")
    shared = hf.flag("share_encoder_decoder_embeddings", True)
    tgt_vocab = vocab if shared else hf.integer("decoder_vocab_size", default=vocab)
    if isinstance(hf.get("eos_token_id"), list):
        eos_list = hf.get("eos_token_id")
        if len(eos_list) != 1:
            raise _unsupported("several eos_token_id", eos_list)
        eos = _Config({"eos_token_id": eos_list[0]}, hf.file).integer("eos_token_id", 0)
    else:
        eos = hf.integer("eos_token_id", 0, default=0)
    pad = hf.integer("pad_token_id", 0, default=58100)
    start = hf.integer("decoder_start_token_id", 0, default=pad)
    for key, value in (("eos_token_id", eos), ("pad_token_id", pad), ("decoder_start_token_id", start)):
        if value >= tgt_vocab:
            raise hf.error(key, f"({value}) must be < the target vocabulary size ({tgt_vocab})")
    scale = hf.flag("scale_embedding", False)
    config = TransformerConfig(
        d_model=E, nhead=heads, num_encoder_layers=hf.integer("encoder_layers"),
        num_decoder_layers=hf.integer("decoder_layers"), dim_feedforward=ffn, activation=_ACTIVATIONS[act],
        norm_first=False, layer_norm_eps=1e-5, final_norm=False,
        embedding_scale=math.sqrt(E) if scale else 1.0,
        positional="sinusoidal_concat", src_vocab_size=vocab, tgt_vocab_size=tgt_vocab, share_embeddings=shared,
        tie_output=hf.flag("tie_word_embeddings", True), output_bias=True,
        max_length=hf.integer("max_position_embeddings"), pad_id=pad, bos_id=start, eos_id=eos)
    names = dict(_MARIAN_NAMES, tgt_vocab_size="vocab_size" if shared else "decoder_vocab_size")
    _check_fits_in_memory(config, f"from_pretrained: {hf.file!r}", names)
    generation_defaults = _marian_generation_defaults(path, hf, config)  # checked before reading the weights
    state = _strip_prefix(load_state_dict(path), ())
    origin: Dict[str, str] = {}
    model = _build(Transformer, config, _marian_weights(state, config, origin), origin)
    model.generation_defaults = generation_defaults
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


def _marian_generation_defaults(path: str, hf: _Config, c: TransformerConfig) -> dict:
    """Options for Transformer.generate that reproduce Hugging Face's defaults
    (generation_config.json over config.json)."""
    sources = [hf]
    gen_file = os.path.join(path, "generation_config.json")
    if os.path.isfile(gen_file):
        sources.append(_Config(_read_json(gen_file), gen_file))
    gen = {}  # key -> the _Config it comes from (the last file that sets it)
    for source in sources:
        gen.update({k: source for k in source.data})

    def get(key: str):
        return gen[key].get(key) if key in gen else None

    out: Dict[str, Any] = {}
    if get("num_beams") is not None:
        out["beam_size"] = gen["num_beams"].integer("num_beams", 1)
    if get("max_length") is not None:  # counts the decoder start token
        out["max_length"] = max(1, min(gen["max_length"].integer("max_length", 1, maximum=math.inf) - 1,
                                       c.max_length))
    if get("length_penalty") is not None:
        out["length_penalty"] = gen["length_penalty"].number("length_penalty", 1.0)
    bad = get("bad_words_ids")
    if bad is not None:
        source = gen["bad_words_ids"]
        if not isinstance(bad, list) or not all(isinstance(b, list) for b in bad):
            raise source.error("bad_words_ids", f"must be a list of lists of token ids, got {_short(bad)}")
        for b in bad:
            for t in b:
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < c.tgt_vocab_size:
                    raise source.error("bad_words_ids", f"holds {_short(t)}, not a token id in [0, "
                                                        f"{c.tgt_vocab_size})")
        single = sorted({b[0] for b in bad if len(b) == 1})
        if single:
            out["suppress_tokens"] = single
    forced = get("forced_eos_token_id")
    if forced is not None:
        source = gen["forced_eos_token_id"]
        if isinstance(forced, list) and len(forced) == 1:
            forced = forced[0]
        if isinstance(forced, bool) or not isinstance(forced, int):
            raise source.error("forced_eos_token_id", f"must be a token id, got {_short(forced)}")
        if forced != c.eos_id:
            raise _unsupported(f"forced_eos_token_id in {source.file!r} other than eos_token_id ({c.eos_id})",
                               forced)
        out["forced_eos"] = True
    return out

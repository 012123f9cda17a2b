"""What every Hugging Face family shares: reading config.json and other JSON files
with errors that name the file and the key, reading the weights of a model folder
(safetensors, sharded safetensors, pytorch_model.bin), taking tensors out of a
checkpoint's state dict with errors under the checkpoint's names, and the generation
defaults of generation_config.json."""

from __future__ import annotations

import contextvars
import json
import math
import os
import warnings
from typing import Any, Dict, List, Tuple

import numpy as np

from ..config import _INT32_MAX, TransformerConfig, _short
from ..weights import WeightsError, _to_numpy, read_safetensors

ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}


def read_json(file: str, kind: type = dict) -> Any:
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
                         f"{json_type(value)})")
    return value


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


_MISSING = object()


class HFConfig:
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
            raise self.error(key, f"must be an int, got {_short(value)} (a JSON {json_type(value)})")
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
            raise self.error(key, f"must be a number, got {_short(value)} (a JSON {json_type(value)})")
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
            raise self.error(key, f"must be true or false, got {_short(value)} (a JSON {json_type(value)})")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_short(value)} (a JSON {json_type(value)})")
        return value


def unsupported(what: str, value: Any) -> ValueError:
    return ValueError(f"from_pretrained: unsupported {what} {value!r} (pytransformer would compute a different "
                      "model)")


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
    """The weights of a model folder as numpy arrays (safetensors first)."""
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        return read_safetensors_file(single)
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
    data = read_json(index)
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
        file = inside(path, shard, index, "shard")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"from_pretrained: {index!r} lists the shard {shard!r}, but {file!r} is not a "
                                    "file")
        tensors = read_safetensors_file(file)
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


def inside(folder: str, name: str, listed_in: str, what: str) -> str:
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


def read_safetensors_file(file: str) -> Dict[str, np.ndarray]:
    return read_safetensors(file, "from_pretrained: ")


def strip_prefix(state: Dict[str, np.ndarray], prefixes: Tuple[str, ...]) -> Dict[str, np.ndarray]:
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            both = sorted(k for k in state if k.startswith(p) and k[len(p):] in state)
            if both:
                raise WeightsError([f"{k!r} and {k[len(p):]!r} are both in the checkpoint" for k in both],
                                   "hint: the checkpoint mixes prefixed and unprefixed copies of a weight")
            return {k[len(p):] if k.startswith(p) else k: v for k, v in state.items()}
    return state


def take(state: Dict[str, np.ndarray], used: set, name: str) -> np.ndarray:
    if name not in state:
        raise WeightsError([f"missing {name!r} in the checkpoint"])
    used.add(name)
    return np.asarray(state[name])


def putters(state: Dict[str, np.ndarray], used: set, w: Dict[str, np.ndarray], origin: Dict[str, str]):
    """(put, put_norm): put(ours, theirs) moves the checkpoint tensor ``theirs`` to
    ``w[ours]`` (noting its origin); put_norm does a LayerNorm's weight and bias."""

    def put(ours: str, theirs: str) -> None:
        w[ours] = take(state, used, theirs)
        origin[ours] = theirs

    def put_norm(ours: str, theirs: str) -> None:
        put(ours + ".weight", theirs + ".weight")
        put(ours + ".bias", theirs + ".bias")

    return put, put_norm


def leftovers(state: Dict[str, np.ndarray], used: set, ignorable: Tuple[str, ...]) -> None:
    rest = [k for k in state if k not in used and not k.startswith(ignorable)]
    if rest:
        raise WeightsError([f"unexpected {k!r} in the checkpoint" for k in sorted(rest)],
                           "hint: the checkpoint has parts this model type does not use")


def layer_norm_pair(state, used, prefix):
    """LayerNorm weight and bias, with the old TensorFlow names (gamma, beta) too."""
    w = prefix + ("gamma" if prefix + "weight" not in state and prefix + "gamma" in state else "weight")
    b = prefix + ("beta" if prefix + "bias" not in state and prefix + "beta" in state else "bias")
    return take(state, used, w), take(state, used, b)


def concat_rows(names: List[str], arrays: List[np.ndarray]) -> np.ndarray:
    """Stack q, k, v projections; mismatched shapes name the offending weight."""
    first = arrays[0]
    bad = [f"{n!r} has shape {tuple(a.shape)}, expected {tuple(first.shape)} (the shape of {names[0]!r})"
           for n, a in zip(names[1:], arrays[1:]) if a.shape != first.shape]
    if bad:
        raise WeightsError(bad)
    return np.concatenate(arrays, axis=0)


#: Options of the pt.from_pretrained call in progress that every family's model takes
#: (compute_type), set by from_pretrained around the family's loader and read by build():
#: a family file needs no code for them.
LOAD_OPTIONS: "contextvars.ContextVar[Dict[str, Any]]" = contextvars.ContextVar("pytransformer_load_options",
                                                                                 default={})


def build(cls, config, weights: Dict[str, np.ndarray], origin: Dict[str, str], **kwargs):
    """cls(config, weights, **load options) with weight errors reported under the
    checkpoint's names."""
    try:
        return cls(config, weights, **{**LOAD_OPTIONS.get(), **kwargs})
    except WeightsError as e:
        def rename(problem: str) -> str:
            for ours, theirs in origin.items():
                if f"'{ours}'" in problem:
                    return problem.replace(f"'{ours}'", f"{theirs!r} (pytransformer's {ours!r})")
            return problem
        raise WeightsError([rename(p) for p in e.problems]) from None


# -- the folder's tokenizer ------------------------------------------------------------


class MissingTokenizer:
    """Stands in for a folder's tokenizer when the `tokenizers` package is not installed:
    any use raises RuntimeError saying what to install."""

    def __init__(self, file: str):
        self.file = file

    def _missing(self, *args, **kwargs):
        raise RuntimeError(f"this model's tokenizer needs the 'tokenizers' package to read {self.file}: "
                           "pip install tokenizers")

    __call__ = _missing

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._missing


def folder_tokenizer(path: str):
    """The folder's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` (a
    :class:`MissingTokenizer` without the package), or None when there is none."""
    tok_file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tok_file):
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return MissingTokenizer(tok_file)
    try:
        return Tokenizer.from_file(tok_file)
    except Exception as e:  # tokenizers' own error type: invalid JSON or an unknown layout
        raise ValueError(f"from_pretrained: cannot read {tok_file!r} with tokenizers ({e})") from e


# -- generation defaults ---------------------------------------------------------------


def _token_id(source: HFConfig, key: str, value: Any, c: TransformerConfig) -> int:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < c.tgt_vocab_size:
        raise source.error(key, f"must be a token id in [0, {c.tgt_vocab_size}), got {_short(value)}")
    return value


def generation_defaults(path: str, hf: HFConfig, c: TransformerConfig) -> Dict[str, Any]:
    """Options for Transformer.generate that reproduce Hugging Face's generate()
    defaults for this folder (generation_config.json over config.json): num_beams,
    max_length and min_length (HF counts the decoder start token; we do not),
    length_penalty, early_stopping, bad_words_ids of single tokens, forced_bos_token_id
    and forced_eos_token_id. An option that would change the output and that
    pytransformer does not implement (no_repeat_ngram_size, repetition_penalty, ...)
    is left out with a warning naming it (the defaults never silently differ)."""
    sources = [hf]
    gen_file = os.path.join(path, "generation_config.json")
    if os.path.isfile(gen_file):
        sources.append(HFConfig(read_json(gen_file), gen_file))
    gen: Dict[str, HFConfig] = {}  # key -> the file it comes from (the last file that sets it)
    for source in sources:
        gen.update({k: source for k in source.data})

    def get(key: str):
        return gen[key].get(key) if key in gen else None

    out: Dict[str, Any] = {}

    def ignored(what: str) -> None:
        warnings.warn(f"from_pretrained: the generation default {what} is not implemented by pytransformer and "
                      "is left out of model.generation_defaults: generate() may differ from Hugging Face's",
                      stacklevel=4)

    if get("num_beams") is not None:
        out["beam_size"] = gen["num_beams"].integer("num_beams", 1)
    if get("max_length") is not None:  # counts the decoder start token
        out["max_length"] = max(1, min(gen["max_length"].integer("max_length", 1, maximum=math.inf) - 1,
                                       c.max_length))
    if get("min_length") is not None:  # counts the decoder start token too
        hf_min = gen["min_length"].integer("min_length", 0, maximum=math.inf)
        if hf_min > 1:
            out["min_length"] = min(hf_min - 1, out.get("max_length", c.max_length))
    if get("length_penalty") is not None:
        out["length_penalty"] = gen["length_penalty"].number("length_penalty", 1.0)
    early = get("early_stopping")
    if early is not None:
        if early == "never" or not isinstance(early, bool):
            raise unsupported(f"early_stopping in {gen['early_stopping'].file!r}", early)
        if early:
            out["early_stopping"] = True
    for key, neutral in (("no_repeat_ngram_size", 0), ("encoder_no_repeat_ngram_size", 0),
                         ("repetition_penalty", 1.0), ("num_beam_groups", 1), ("diversity_penalty", 0.0),
                         ("do_sample", False)):
        value = get(key)
        if value is not None and value != neutral:
            ignored(f"{key}={value!r} in {gen[key].file!r}")
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
        longer = [b for b in bad if len(b) > 1]
        if longer:
            ignored(f"bad_words_ids of several tokens {_short(longer)} in {source.file!r}")
        single = sorted({b[0] for b in bad if len(b) == 1})
        if single:
            out["suppress_tokens"] = single
    forced = get("forced_bos_token_id")
    if forced is not None:
        out["forced_bos"] = _token_id(gen["forced_bos_token_id"], "forced_bos_token_id", forced, c)
    forced = get("forced_eos_token_id")
    if forced is not None:
        source = gen["forced_eos_token_id"]
        forced = _token_id(source, "forced_eos_token_id", forced, c)
        if forced != c.eos_id:
            raise unsupported(f"forced_eos_token_id in {source.file!r} other than eos_token_id ({c.eos_id})",
                              forced)
        out["forced_eos"] = True
    return out

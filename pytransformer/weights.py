"""Weight names, shapes and checks (the PyTorch converter is :mod:`pytransformer.families.torch`).

pytransformer uses ``torch.nn.Transformer``'s own state_dict names for the core
(``encoder.layers.{i}.self_attn.in_proj_weight``, ``...linear1.weight``,
``...norm1.weight``, ``encoder.norm.weight``, ``decoder.layers.{i}.multihead_attn...``)
plus ``src_embed.weight``, ``tgt_embed.weight``, ``generator.weight`` and
``generator.bias``.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .config import EncoderConfig, TransformerConfig, as_encoder_config

__all__ = ["WeightsError", "expected_weight_shapes", "expected_encoder_weight_shapes", "check_weights"]


class WeightsError(ValueError):
    """Weights that do not fit the config: lists every offending name."""

    def __init__(self, problems: List[str], hint: str = ""):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the weights:\n{lines}" + (f"\n{hint}" if hint else ""))


def expected_weight_shapes(config: TransformerConfig) -> Dict[str, Tuple[int, ...]]:
    """Every weight a model with this config needs, name -> shape, in a stable order."""
    return _shapes(config, encoder_only=False)


def expected_encoder_weight_shapes(config: "EncoderConfig | TransformerConfig") -> Dict[str, Tuple[int, ...]]:
    """The weights of an encoder-only model (:class:`pytransformer.EncoderModel`); a
    TransformerConfig is taken as its encoder half."""
    return _shapes(as_encoder_config(config)._transformer_config(), encoder_only=True)


def _shapes(config: TransformerConfig, encoder_only: bool) -> Dict[str, Tuple[int, ...]]:
    # The one weight table of the C++ model (csrc/model/weight_table.cpp), which its
    # loaders and exporters use too.
    from . import _core

    return dict(_core._weight_table(config._core_dict(), encoder_only))


def _to_numpy(value: Any) -> Any:
    """numpy view of a torch tensor (duck-typed: torch is never imported here)."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        t = value.detach().cpu()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return value


# --- safetensors files ----------------------------------------------------------

# safetensors dtype -> numpy dtype of the stored bytes (little-endian). BF16 is read as
# uint16 and widened to float32 (numpy has no bfloat16).
_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32, exactly (bfloat16 is float32's high half)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


class _SafetensorsFile:
    """A ``.safetensors`` file, its header parsed and validated without trusting it.

    The format: an 8-byte little-endian header length N, N bytes of JSON
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
    then the tensor bytes, offsets relative to the end of the header. Checked here:
    the header length against the file size, the JSON (an object, no repeated names),
    every dtype, shape and offset pair (inside the data, ``end - begin`` equal to the
    shape's byte size, the tensors covering the data without gaps or overlaps).
    Problems raise ValueError naming the file and, where there is one, the tensor.
    """

    def __init__(self, file: str, context: str = ""):
        self.file = file
        self._context = context
        try:
            st = os.stat(file)
        except OSError as e:
            raise self._error(f"cannot open it ({e.strerror or e})") from e
        if not stat.S_ISREG(st.st_mode):
            raise self._error("it is not a regular file")
        size = st.st_size
        with open(file, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise self._error(f"the file has {size} bytes, fewer than the 8 of the header length")
            n = int.from_bytes(prefix, "little")
            if n > size - 8:
                raise self._error(f"the header length {n} is larger than the rest of the file ({size - 8} bytes): "
                                  "the file is truncated or not safetensors")
            if n > _SAFETENSORS_MAX_HEADER:
                raise self._error(f"the header length {n} is over the format's limit of {_SAFETENSORS_MAX_HEADER}")
            raw = f.read(n)
        if len(raw) != n:
            raise self._error("the file changed while it was read")
        self._data_start = 8 + n
        self._data_size = size - 8 - n
        header = self._parse_header(raw)
        meta = header.pop("__metadata__", None)
        if meta is None:
            meta = {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise self._error("'__metadata__' in the header must map strings to strings")
        self.metadata: Dict[str, str] = meta
        self._entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name in sorted(header):
            self._entries[name] = self._entry(name, header[name])
        spans = sorted((begin, end, name) for name, (_, _, begin, end) in self._entries.items())
        at = 0
        for begin, end, name in spans:
            if begin != at:
                raise self._error(f"tensor {name!r} starts at data offset {begin}, expected {at} (the tensors "
                                  "overlap or leave a gap)")
            at = end
        if at != self._data_size:
            raise self._error(f"the tensors cover {at} bytes of data but the file holds {self._data_size}: the "
                              "file is truncated or has extra bytes")

    def _error(self, problem: str) -> ValueError:
        return ValueError(f"{self._context}cannot read {self.file!r} as safetensors: {problem}")

    def _parse_header(self, raw: bytes) -> dict:
        class Repeated(Exception):
            pass

        def no_repeats(pairs):
            seen: Dict[str, Any] = {}
            for k, v in pairs:
                if k in seen:
                    raise Repeated(k)
                seen[k] = v
            return seen

        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_repeats)
        except Repeated as e:
            raise self._error(f"the header names {e.args[0]!r} twice") from None
        except UnicodeDecodeError as e:
            raise self._error(f"the header is not UTF-8 ({e})") from e
        except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
            raise self._error(f"the header is not valid JSON ({e})") from e
        if not isinstance(header, dict):
            raise self._error(f"the header is a JSON {type(header).__name__}, not an object")
        return header

    def _entry(self, name: str, info: Any) -> Tuple[str, Tuple[int, ...], int, int]:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(info, dict):
            raise self._error(f"the header entry of tensor {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
            raise self._error(f"tensor {name!r} has dtype {dtype!r}, which pytransformer cannot read (known: "
                              f"{sorted(_SAFETENSORS_DTYPES)})")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise self._error(f"tensor {name!r} has shape {shape!r}, not a list of sizes >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= self._data_size):
            raise self._error(f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end] with 0 <= begin <= "
                              f"end <= {self._data_size} (the bytes of data in the file)")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise self._error(f"tensor {name!r} ({dtype}, shape {tuple(shape)}) needs {nbytes} bytes but its "
                              f"data_offsets {offsets} span {offsets[1] - offsets[0]}")
        return dtype, tuple(shape), offsets[0], offsets[1]

    def keys(self) -> List[str]:
        return list(self._entries)

    def tensors(self) -> Dict[str, np.ndarray]:
        """Every tensor, as a new writable numpy array; BF16 becomes float32 exactly."""
        out: Dict[str, np.ndarray] = {}
        with open(self.file, "rb") as f:
            for name, (dtype, shape, begin, end) in self._entries.items():
                buf = bytearray(end - begin)
                f.seek(self._data_start + begin)
                if f.readinto(buf) != len(buf):
                    raise self._error(f"the file ended inside tensor {name!r} (it changed while it was read)")
                stored = np.dtype(_SAFETENSORS_DTYPES[dtype])
                arr = np.frombuffer(buf, stored).reshape(shape)
                if dtype == "BF16":
                    arr = _bfloat16_to_float32(arr)
                elif not stored.isnative:
                    arr = arr.astype(stored.newbyteorder("="))
                out[name] = arr
        return out


def read_safetensors(file: "os.PathLike[str] | str", context: str = "") -> Dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as numpy arrays (BF16 widened to float32
    exactly), after validating the whole file; any problem is a ValueError naming the
    file. ``context`` prefixes the messages."""
    return _SafetensorsFile(os.fspath(file), context).tensors()


#: How a model computes: ``"float32"``, or ``"int8"`` (int8 weights of the linear layers
#: and token embedding tables with a float32 scale per row, activations quantized per
#: row at run time).
COMPUTE_TYPES = ("float32", "int8")


def check_compute_type(value: Any) -> str:
    if not isinstance(value, str) or value not in COMPUTE_TYPES:
        raise ValueError(f"compute_type must be one of {', '.join(map(repr, COMPUTE_TYPES))}, got {value!r}")
    return value


#: Suffix of the scales of an int8 weight: ``name + SCALE_SUFFIX`` (float32, one per row).
SCALE_SUFFIX = "_scale"


def is_int8_weight(name: str, shape: Tuple[int, ...]) -> bool:
    """Whether an int8 model stores ``name`` int8 (with a float32 scale per row): the
    weights of the linear layers (attention projections, FFN, output projection) and the
    token embedding tables (whose rows a tied output projection uses as its weight).
    Positions, token types, LayerNorms and biases stay float32."""
    return len(shape) == 2 and name.endswith(("in_proj_weight", "out_proj.weight", "linear1.weight",
                                              "linear2.weight", "generator.weight", "src_embed.weight",
                                              "tgt_embed.weight"))


def check_weights(config: TransformerConfig, weights: Mapping[str, Any],
                  expected: Optional[Dict[str, Tuple[int, ...]]] = None) -> Dict[str, np.ndarray]:
    """Validate ``weights`` against ``config``; return float32 C-contiguous arrays.

    Floating-point arrays of other precisions are converted to float32. The weight of
    a linear layer or a token embedding table may instead be int8 (values in [-127, 127]) with its float32 scales
    ``name + "_scale"`` (one per row, finite, >= 0), as int8 models save them; both are
    returned as they are. Raises :class:`WeightsError` listing every missing,
    unexpected, misshaped, non-float or non-finite weight at once.
    """
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of name -> array, got {type(weights).__name__}")
    if expected is None:
        expected = expected_weight_shapes(config)
    problems: List[str] = []
    out: Dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        if name not in weights:
            problems.append(f"missing '{name}' (expected shape {shape})")
            continue
        value = _to_numpy(weights[name])
        if not isinstance(value, np.ndarray):
            problems.append(f"'{name}' is a {type(value).__name__}, expected a numpy array of shape {shape}")
            continue
        if value.dtype == np.int8 and is_int8_weight(name, shape):
            problem = _check_int8(name, value, shape, weights)
            if problem:
                problems.append(problem)
            else:
                out[name] = np.ascontiguousarray(value)
                out[name + SCALE_SUFFIX] = np.ascontiguousarray(_to_numpy(weights[name + SCALE_SUFFIX]),
                                                                dtype=np.float32)
            continue
        if value.dtype.kind != "f":
            problems.append(f"'{name}' has dtype {value.dtype}, expected a floating-point array (float32)"
                            + (" or int8 with its scales" if is_int8_weight(name, shape) else ""))
            continue
        if value.shape != shape:
            problems.append(f"'{name}' has shape {value.shape}, expected {shape}")
            continue
        arr = np.ascontiguousarray(value, dtype=np.float32)
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            problems.append(f"'{name}' has {bad} non-finite value(s) (NaN or inf)")
            continue
        out[name] = arr
    for name in weights:
        base = name[:-len(SCALE_SUFFIX)] if name.endswith(SCALE_SUFFIX) else None
        if base in expected and getattr(_to_numpy(weights[base]), "dtype", None) == np.int8:
            continue  # the scales of an int8 weight (checked with it)
        if name not in expected:
            problems.append(f"unexpected '{name}'" + (
                f" with shape {tuple(np.shape(_to_numpy(weights[name])))}" if hasattr(weights[name], "shape") else ""))
    if problems:
        raise WeightsError(problems, _config_hint(config, problems))
    return out


def _check_int8(name: str, q: np.ndarray, shape: Tuple[int, ...], weights: Mapping[str, Any]) -> Optional[str]:
    """The problem with the int8 weight ``name`` and its scales, or None."""
    if q.shape != shape:
        return f"'{name}' has shape {q.shape}, expected {shape}"
    if q.size and int(q.min()) == -128:
        return f"'{name}' (int8) holds -128; int8 weights lie in [-127, 127]"
    sname = name + SCALE_SUFFIX
    if sname not in weights:
        return f"'{name}' is int8 but its scales '{sname}' are missing"
    sc = _to_numpy(weights[sname])
    if not isinstance(sc, np.ndarray) or sc.dtype.kind != "f" or sc.shape != (shape[0],):
        got = f"dtype {sc.dtype}, shape {sc.shape}" if isinstance(sc, np.ndarray) else type(sc).__name__
        return f"'{sname}' must be a float array of shape ({shape[0]},) (a scale per row of '{name}'), got {got}"
    sc = sc.astype(np.float32)
    if not (np.isfinite(sc).all() and (sc >= 0).all()):
        return f"'{sname}' must be finite and >= 0"
    return None


def _config_hint(config: TransformerConfig, problems: List[str]) -> str:
    if any("unexpected 'generator.weight'" in p for p in problems) and config.tie_output:
        return "hint: the config has tie_output=True but the weights carry generator.weight"
    if any("missing 'tgt_embed.weight'" in p for p in problems) and not config.share_embeddings:
        return "hint: set share_embeddings=True if source and target use one table"
    return ""

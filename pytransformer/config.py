"""Model configuration: the hyper-parameters of an encoder-decoder Transformer."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

#: Token ids of a batch: an integer numpy array [B, S] (any integer dtype) or nested
#: sequences of ints (rows of equal length).
TokenIds = Union[np.ndarray, Sequence[Sequence[int]]]
#: Lengths of a batch's rows: an integer array [B] or a sequence of ints; None: all full.
Lengths = Optional[Union[np.ndarray, Sequence[int]]]
#: One list of forced target ids per source (start_tokens).
StartTokens = Optional[Sequence[Sequence[int]]]

__all__ = ["TransformerConfig", "EncoderConfig"]

_ACTIVATIONS = ("relu", "gelu", "silu")
_FLOAT32_MAX = 3.4028234663852886e38
# The C++ model reads every size as int64 but token ids and lengths are int32, and
# sizes are multiplied together: every int field must fit an int32.
_INT32_MAX = 2 ** 31 - 1
_INT64_MAX = 2 ** 63 - 1


def _is_float32_finite(v: Any) -> bool:
    """A real number that stays finite once rounded to float32 (the kernels' precision)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int):  # exact, also for ints too large for a float
        return abs(v) <= int(_FLOAT32_MAX)
    return math.isfinite(v) and abs(v) <= _FLOAT32_MAX


_POSITIONALS = ("sinusoidal", "sinusoidal_concat", "learned")


class _Serializable:
    """to_dict / from_dict / to_json / from_json of a config dataclass."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a mapping of field names; unknown keys raise ValueError."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cls.__name__}.from_json: not valid JSON ({e})") from None
        except RecursionError:
            raise ValueError(f"{cls.__name__}.from_json: the JSON is nested too deeply") from None
        return cls.from_dict(data)


@dataclasses.dataclass(frozen=True)
class TransformerConfig(_Serializable):
    """Hyper-parameters of the encoder-decoder Transformer ("Attention Is All You Need").

    The defaults are the paper's Transformer-base with a 32000-token vocabulary.

    Attributes:
        d_model: model width (embedding size).
        nhead: attention heads; must divide ``d_model``.
        num_encoder_layers, num_decoder_layers: stack depths (0 allowed).
        dim_feedforward: hidden width of the position-wise feed-forward network.
        activation: ``"relu"`` (the paper), ``"gelu"`` (exact erf form) or ``"silu"``
            (``x * sigmoid(x)``, Marian's "swish").
        norm_first: ``False``: post-LN, ``LN(x + sublayer(x))`` as in the paper;
            ``True``: pre-LN, ``x + sublayer(LN(x))``.
        layer_norm_eps: epsilon of every LayerNorm.
        final_norm: a LayerNorm after the last encoder layer and after the last
            decoder layer (``encoder.norm``, ``decoder.norm``), as ``nn.Transformer``.
        embedding_scale: factor applied to token embeddings; ``None`` means
            ``sqrt(d_model)`` as in the paper (section 3.4).
        positional: ``"sinusoidal"``: the paper's interleaved sin/cos encodings;
            ``"sinusoidal_concat"``: the same frequencies with all sines first, then
            all cosines (Marian, fairseq); ``"learned"``: a trained table per side
            (``src_pos_embed.weight``, ``tgt_pos_embed.weight``, [max_length, d_model]).
        type_vocab_size: token type ("segment") embeddings added on the source side
            (``src_type_embed.weight``, BERT); 0 for none.
        embedding_norm: a LayerNorm right after the embeddings (``src_embed_norm``,
            ``tgt_embed_norm``; BERT).
        src_vocab_size, tgt_vocab_size: vocabulary sizes. ``src_vocab_size=0``: the
            encoder has no embeddings and takes float inputs
            (:meth:`Transformer.encode_features`; Whisper's audio encoder).
        share_embeddings: one embedding table (``src_embed.weight``) for source and
            target; needs equal vocabulary sizes.
        tie_output: the output projection reuses the target embedding table (no
            ``generator.weight``).
        output_bias: the output projection has a bias (``generator.bias``).
        max_length: longest source or target sequence (positions available).
        pad_id, bos_id, eos_id: special token ids (used by generation).
    """

    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    activation: str = "relu"
    norm_first: bool = False
    layer_norm_eps: float = 1e-5
    final_norm: bool = True
    embedding_scale: Optional[float] = None
    positional: str = "sinusoidal"
    type_vocab_size: int = 0
    embedding_norm: bool = False
    src_vocab_size: int = 32000
    tgt_vocab_size: int = 32000
    share_embeddings: bool = False
    tie_output: bool = False
    output_bias: bool = True
    max_length: int = 1024
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for name, minimum in (
            ("d_model", 1), ("nhead", 1), ("num_encoder_layers", 0), ("num_decoder_layers", 0),
            ("dim_feedforward", 1), ("src_vocab_size", 0), ("tgt_vocab_size", 1), ("max_length", 1),
            ("pad_id", 0), ("bos_id", 0), ("eos_id", 0), ("type_vocab_size", 0),
        ):
            value = getattr(self, name)
            if not is_int(value):
                raise TypeError(f"TransformerConfig.{name} must be an int, got {type(value).__name__}")
            if value < minimum:
                raise ValueError(f"TransformerConfig.{name} must be >= {minimum}, got {_short(value)}")
            if value > _INT32_MAX:
                raise ValueError(f"TransformerConfig.{name} must be <= {_INT32_MAX} (sizes and token ids are 32-bit "
                                 f"ints in the C++ model), got {_short(value)}")
        for name in ("norm_first", "final_norm", "share_embeddings", "tie_output", "output_bias", "embedding_norm"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TransformerConfig.{name} must be a bool, got {type(getattr(self, name)).__name__}")
        if self.d_model % self.nhead:
            raise ValueError(f"TransformerConfig: nhead ({self.nhead}) must divide d_model ({self.d_model})")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"TransformerConfig.activation must be one of {_ACTIVATIONS}, got {self.activation!r}")
        if self.positional not in _POSITIONALS:
            raise ValueError(f"TransformerConfig.positional must be one of {_POSITIONALS}, got {self.positional!r}")
        eps = self.layer_norm_eps
        if not _is_float32_finite(eps) or eps < 0:
            raise ValueError(f"TransformerConfig.layer_norm_eps must be a number >= 0 that is finite in float32, "
                             f"got {_short(eps)}")
        scale = self.embedding_scale
        if scale is not None and not _is_float32_finite(scale):
            raise ValueError(f"TransformerConfig.embedding_scale must be None or a number that is finite in "
                             f"float32, got {_short(scale)}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "TransformerConfig: share_embeddings needs src_vocab_size == tgt_vocab_size, got "
                f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        for name in ("pad_id", "bos_id", "eos_id"):
            if getattr(self, name) >= self.tgt_vocab_size:
                raise ValueError(f"TransformerConfig.{name} ({getattr(self, name)}) must be < tgt_vocab_size "
                                 f"({self.tgt_vocab_size})")
        # Python ints: every table (and the whole model) must have a byte size that a
        # 64-bit size holds, or the C++ side's size arithmetic would wrap around.
        for what, factors, nbytes in self._tables(encoder_only=False):
            if nbytes > _INT64_MAX:
                raise ValueError(f"TransformerConfig: {what} would take {nbytes} bytes of float32 "
                                 f"({_product(factors)}), more than a 64-bit size can hold")

    def _tables(self, encoder_only: bool) -> List[Tuple[str, List[Tuple[str, int]], int]]:
        """(what, [(field, value), ...], float32 bytes) of the large arrays a model with
        this config holds, then of them all ("the model"); Python ints, never overflowing."""
        E, F = self.d_model, self.dim_feedforward
        enc_layer = 4 * E * E + 2 * E * F + F + 9 * E       # attention, FFN, 2 LayerNorms
        dec_layer = 8 * E * E + 2 * E * F + F + 15 * E      # 2 attentions, FFN, 3 LayerNorms
        sides = 1 if encoder_only else 2
        tables: List[Tuple[str, List[Tuple[str, int]], int]] = [
            ("the position table", [("max_length", self.max_length), ("d_model", E)], 4 * self.max_length * E),
            ("the source embedding table", [("src_vocab_size", self.src_vocab_size), ("d_model", E)],
             4 * self.src_vocab_size * E),
            ("the token type table", [("type_vocab_size", self.type_vocab_size), ("d_model", E)],
             4 * self.type_vocab_size * E),
            ("the encoder layers", [("num_encoder_layers", self.num_encoder_layers), ("d_model", E),
                                    ("dim_feedforward", F)], 4 * self.num_encoder_layers * enc_layer),
        ]
        if not encoder_only:
            if not self.share_embeddings:
                tables.append(("the target embedding table", [("tgt_vocab_size", self.tgt_vocab_size),
                                                              ("d_model", E)], 4 * self.tgt_vocab_size * E))
            if not self.tie_output:
                tables.append(("the output projection", [("tgt_vocab_size", self.tgt_vocab_size), ("d_model", E)],
                               4 * self.tgt_vocab_size * E))
            tables.append(("the decoder layers", [("num_decoder_layers", self.num_decoder_layers), ("d_model", E),
                                                  ("dim_feedforward", F)], 4 * self.num_decoder_layers * dec_layer))
        total = sum(n for _, _, n in tables) + 4 * (sides - 1) * self.max_length * E  # a position table per side
        fields = ("d_model", "dim_feedforward", "num_encoder_layers", "src_vocab_size", "max_length") + (
            () if encoder_only else ("num_decoder_layers", "tgt_vocab_size"))
        tables.append(("the model", [(f, getattr(self, f)) for f in fields], total))
        return tables

    @property
    def resolved_embedding_scale(self) -> float:
        """The embedding factor in use: ``embedding_scale`` or ``sqrt(d_model)``."""
        return math.sqrt(self.d_model) if self.embedding_scale is None else float(self.embedding_scale)

    def _core_dict(self) -> dict:
        """The fields the C++ model reads."""
        d = self.to_dict()
        d["embedding_scale"] = self.resolved_embedding_scale
        return d


def _default(field: str) -> Any:
    return TransformerConfig.__dataclass_fields__[field].default


#: EncoderConfig field -> the TransformerConfig field it is (the rest are the same name).
_ENCODER_RENAMES = {"num_layers": "num_encoder_layers", "vocab_size": "src_vocab_size"}


@dataclasses.dataclass(frozen=True)
class EncoderConfig(_Serializable):
    """Hyper-parameters of an encoder-only Transformer (BERT and friends): the encoder half
    of :class:`TransformerConfig`, with one vocabulary and no decoder.

    Every field means what the :class:`TransformerConfig` field of the same name means
    (``num_layers`` is ``num_encoder_layers``, ``vocab_size`` is ``src_vocab_size``),
    with the same default and the same checks. ``pad_id`` is the tokenizer's padding
    id (informative: padding is given by lengths).
    """

    d_model: int = _default("d_model")
    nhead: int = _default("nhead")
    num_layers: int = _default("num_encoder_layers")
    dim_feedforward: int = _default("dim_feedforward")
    activation: str = _default("activation")
    norm_first: bool = _default("norm_first")
    layer_norm_eps: float = _default("layer_norm_eps")
    final_norm: bool = _default("final_norm")
    embedding_scale: Optional[float] = _default("embedding_scale")
    positional: str = _default("positional")
    type_vocab_size: int = _default("type_vocab_size")
    embedding_norm: bool = _default("embedding_norm")
    vocab_size: int = _default("src_vocab_size")
    max_length: int = _default("max_length")
    pad_id: int = _default("pad_id")

    def __post_init__(self) -> None:
        # Built (and so checked, with this class's field names in the messages) once;
        # not a field: equality, repr and to_dict see only the encoder's fields.
        object.__setattr__(self, "_encoder_decoder", self._build_transformer_config())

    @classmethod
    def from_transformer_config(cls, config: TransformerConfig) -> "EncoderConfig":
        """The encoder half of an encoder-decoder config."""
        names = {f.name: _ENCODER_RENAMES.get(f.name, f.name) for f in dataclasses.fields(cls)}
        return cls(**{ours: getattr(config, theirs) for ours, theirs in names.items()})

    def _transformer_config(self) -> TransformerConfig:
        """The encoder-decoder config whose encoder this is (no decoder, the target side a
        stand-in of the source vocabulary): what the C++ model and the weight table read."""
        return self._encoder_decoder

    def _build_transformer_config(self) -> TransformerConfig:
        fields = {_ENCODER_RENAMES.get(f.name, f.name): getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.vocab_size, int) and not isinstance(self.vocab_size, bool) and self.vocab_size < 1:
            raise ValueError(f"EncoderConfig.vocab_size must be >= 1, got {self.vocab_size}")
        try:
            return TransformerConfig(**fields, num_decoder_layers=0, tgt_vocab_size=self.vocab_size,
                                     share_embeddings=False, tie_output=True, output_bias=False,
                                     bos_id=self.pad_id, eos_id=self.pad_id)
        except (TypeError, ValueError) as e:
            raise type(e)(_encoder_names(str(e))) from None

    def _tables(self, encoder_only: bool = True) -> List[Tuple[str, List[Tuple[str, int]], int]]:
        inverse = {theirs: ours for ours, theirs in _ENCODER_RENAMES.items()}
        return [(what, [(inverse.get(f, f), v) for f, v in factors], n)
                for what, factors, n in self._transformer_config()._tables(encoder_only=True)]

    @property
    def resolved_embedding_scale(self) -> float:
        """The embedding factor in use: ``embedding_scale`` or ``sqrt(d_model)``."""
        return self._encoder_decoder.resolved_embedding_scale

    def _core_dict(self) -> dict:
        return self._encoder_decoder._core_dict()


def _encoder_names(message: str) -> str:
    """A TransformerConfig message in EncoderConfig's field names."""
    for ours, theirs in list(_ENCODER_RENAMES.items()) + [("vocab_size", "tgt_vocab_size")]:
        message = message.replace(theirs, ours)
    return message.replace("TransformerConfig", "EncoderConfig")


def as_encoder_config(config: Any) -> EncoderConfig:
    """An EncoderConfig, or the encoder half of a TransformerConfig; TypeError otherwise."""
    if isinstance(config, EncoderConfig):
        return config
    if isinstance(config, TransformerConfig):
        return EncoderConfig.from_transformer_config(config)
    raise TypeError(f"config must be an EncoderConfig (or a TransformerConfig, whose encoder is used), got "
                    f"{type(config).__name__}")


def _short(value: Any, limit: int = 60) -> str:
    """repr(value), shortened (a config value can be a 4000-digit int)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        sign, digits = ("-", "a negative") if value < 0 else ("", "an")
        return f"{digits} int of {value.bit_length()} bits (about {sign}10**{int(value.bit_length() * 0.30103)})"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text)} characters)"


def _product(factors: List[Tuple[str, int]]) -> str:
    return ", ".join(f"{name}={value}" for name, value in factors)


def _physical_memory() -> Optional[int]:
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def _check_fits_in_memory(config: "TransformerConfig | EncoderConfig", source: str,
                          names: Optional[Mapping[str, str]] = None) -> None:
    """Refuse, before anything is allocated, a config whose tables need more bytes than
    this machine has memory: a ValueError naming ``source``, the option(s) and the size.
    ``names`` maps config fields to the names the source uses (e.g. Hugging Face's)."""
    memory = _physical_memory()
    if memory is None:
        return
    names = names or {}
    for what, factors, nbytes in config._tables(encoder_only=isinstance(config, EncoderConfig)):
        if nbytes > memory:
            shown = [(names.get(f, f), v) for f, v in factors]
            raise ValueError(f"{source}: {what} would take {nbytes} bytes of float32 ({_product(shown)}), more than "
                             f"this machine's physical memory ({memory} bytes)")

"""pytransformer.Transformer: the encoder-decoder model."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .config import Lengths, StartTokens, TokenIds, TransformerConfig, _check_fits_in_memory
from .weights import COMPUTE_TYPES, check_compute_type, check_weights

__all__ = ["Transformer", "GenerationResult"]

_FORMAT = "pytransformer.Transformer"
_RESERVED_METADATA = ("format", "config", "compute_type")
PathLike = Union[str, "os.PathLike[str]"]


def _extra_metadata(metadata: Optional[Mapping[str, str]], reserved: Tuple[str, ...]) -> Dict[str, str]:
    """save()'s user metadata: str -> str, none of the keys the file format uses."""
    extra = dict(metadata or {})
    for k, v in extra.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("metadata must map str to str")
        if k in reserved:
            raise ValueError(f"metadata key {k!r} is reserved")
    return extra


def _open_model_file(path: str, fmt: str, what: str):
    """The validated safetensors file of a pytransformer model of format ``fmt``
    (FileNotFoundError, or ValueError naming the file)."""
    from .weights import _SafetensorsFile

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    f = _SafetensorsFile(path)
    if f.metadata.get("format") != fmt or "config" not in f.metadata:
        raise ValueError(f"{path!r} is a safetensors file but not a pytransformer {what} "
                         f"(format {f.metadata.get('format')!r})")
    return f


def _file_compute_type(path: str, metadata: Mapping[str, str], compute_type: Optional[str]) -> str:
    """load()'s compute type: the caller's, else the file's own (default float32)."""
    if compute_type is not None:
        return compute_type
    own = metadata.get("compute_type", "float32")
    if own not in COMPUTE_TYPES:
        raise ValueError(f"{path!r}: unknown compute_type {own!r} in the file's metadata")
    return own


def _ids(value: Any, name: str, vocab: int, max_length: int) -> np.ndarray:
    """int [B, L] token ids -> contiguous int32, with range checks."""
    if not isinstance(value, np.ndarray):
        if isinstance(value, (list, tuple)):
            try:
                value = np.asarray(value)
            except ValueError as e:  # ragged lists
                raise ValueError(f"{name} must be a rectangular [batch, length] array of token ids ({e})") from None
        else:
            raise TypeError(f"{name} must be a numpy array of integer token ids, got {type(value).__name__}")
    if value.dtype.kind not in "iu":
        if value.size == 0 and value.dtype.kind == "f":
            value = value.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer token ids, got dtype {value.dtype}")
    if value.ndim != 2:
        raise ValueError(f"{name} must have shape [batch, length], got shape {value.shape}")
    if value.shape[1] > max_length:
        raise ValueError(f"{name} has length {value.shape[1]}, longer than the model's max_length {max_length}")
    if value.size:
        lo, hi = value.min(), value.max()
        if lo < 0 or hi >= vocab:
            bad = np.argwhere((value < 0) | (value >= vocab))[0]
            raise ValueError(f"{name}[{bad[0]}, {bad[1]}] = {value[tuple(bad)]} is not a valid token id "
                             f"(vocabulary size {vocab})")
    return np.ascontiguousarray(value, dtype=np.int32)


def _float_array(value: Any, name: str, ndim: int) -> np.ndarray:
    """A C-contiguous float32 array of ``ndim`` dimensions with finite values."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a float32 numpy array, got {type(value).__name__}")
    if value.dtype.kind != "f" or value.dtype.itemsize != 4:
        raise TypeError(f"{name} must have dtype float32, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {value.shape}")
    value = np.ascontiguousarray(value, dtype=np.float32)
    if value.size and not np.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def _lengths(value: Any, batch: int, length: int, name: str = "src_lengths") -> Optional[np.ndarray]:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size == 0 and arr.dtype.kind == "f":  # [] reads as float64
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one length per row), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > length):
        b = int(np.argmax((arr < 0) | (arr > length)))
        raise ValueError(f"{name}[{b}] = {arr[b]} is outside [0, {length}] (the row has {length} positions)")
    return np.ascontiguousarray(arr, dtype=np.int32)


#: The defaults of Transformer.generate's options (generate_tokens uses the same); max_length's (None) depends on the model and the start tokens.
GENERATION_DEFAULTS: Dict[str, Any] = dict(
    min_length=0, beam_size=1, length_penalty=1.0, num_hypotheses=1, sampling_topk=1, sampling_topp=1.0,
    sampling_temperature=1.0, return_scores=True, forced_eos=False, early_stopping=False)
_D = GENERATION_DEFAULTS


@dataclasses.dataclass
class GenerationResult:
    """The hypotheses :meth:`Transformer.generate` found for one source, best first.

    Attributes:
        sequences: token ids of each hypothesis: the ``start_tokens`` (if any), then
            the generated tokens. Neither the start token ``bos_id`` nor the final
            ``eos_id`` is included.
        scores: what beam search ranks by, ``log_prob / length ** length_penalty``
            (``length`` = generated tokens, end-of-sequence included); None when
            ``return_scores=False``.
        log_probs: sum of the generated tokens' log-probabilities under the model
            (temperature 1), end-of-sequence included; None when ``return_scores=False``.
        probe: :meth:`Transformer.generate_from_memory`'s ``probe``: the probed token's
            probability (None when not asked for).
    """

    sequences: List[List[int]]
    scores: Optional[List[float]] = None
    log_probs: Optional[List[float]] = None
    probe: Optional[float] = None


_INT32_MAX = 2**31 - 1


def _int_option(name: str, value: Any, minimum: int, maximum: Optional[int] = _INT32_MAX,
                why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        shown = str(int(value)) if value < 10**30 else f"about 10**{len(str(int(value))) - 1}"
        raise ValueError(f"{name} must be <= {maximum}{why}, got {shown}")
    return int(value)


def _float_option(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class Transformer:
    """The encoder-decoder Transformer of "Attention Is All You Need", on the CPU.

    ``Transformer(config, weights)`` copies the weights (a mapping of
    ``torch.nn.Transformer`` state_dict names to arrays, see
    :func:`pytransformer.weights.expected_weight_shapes`) into aligned buffers and
    pre-packs every matrix for the kernels of this CPU. The model is immutable and
    may be called from several threads at once; calls release the GIL.

    ``compute_type="int8"``: the weights of every linear layer (attention
    projections, feed-forward, output projection) are quantized once, to int8 with a
    float32 scale per output row (symmetric; or taken as they are when given int8 with
    their ``_scale``), and their inputs to int8 per row at run time; int32 sums, the
    scales, bias, activation and residual applied in the write-back. The token
    embedding tables are int8 with a scale per row too (a row is dequantized when it
    is looked up; a tied output projection is that same int8 table), which makes an
    int8 model about a quarter of the float32 bytes. Positions, attention scores,
    softmax and LayerNorm stay float32.
    """

    def __init__(self, config: TransformerConfig, weights: Mapping[str, Any], *, compute_type: str = "float32"):
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        compute_type = check_compute_type(compute_type)
        _check_fits_in_memory(config, "Transformer")  # before the weights are walked or copied
        checked = check_weights(config, weights)
        self._config = config
        self._model = _core.TransformerModel(config._core_dict(), checked, compute_type)
        #: Options for :meth:`generate` that reproduce a checkpoint's own defaults
        #: (set by :func:`pytransformer.from_pretrained`; empty otherwise).
        self.generation_defaults: dict = {}
        #: Extra entries of the file the model was loaded from (see :meth:`save`).
        self.metadata: dict = {}

    @property
    def config(self) -> TransformerConfig:
        return self._config

    @property
    def compute_type(self) -> str:
        """``"float32"`` or ``"int8"``: how the linear layers compute (see the constructor)."""
        return self._model.compute_type

    def __repr__(self) -> str:
        c = self._config
        return (f"Transformer(d_model={c.d_model}, nhead={c.nhead}, layers={c.num_encoder_layers}+"
                f"{c.num_decoder_layers}, vocab={c.src_vocab_size}/{c.tgt_vocab_size})")

    # -- forward ---------------------------------------------------------------

    def encode(self, src_ids: TokenIds, src_lengths: Lengths = None) -> np.ndarray:
        """Encode source token ids.

        Args:
            src_ids: int array [B, S]; ids in [0, src_vocab_size).
            src_lengths: None (every row has S real tokens) or int [B]: row b's real
                tokens are ``src_ids[b, :src_lengths[b]]``, the rest is padding that
                no position attends to.

        Returns:
            float32 [B, S, d_model], the encoder output ("memory"). Values at padding
            positions are unspecified.
        """
        c = self._config
        self._check_takes_ids()
        ids = _ids(src_ids, "src_ids", c.src_vocab_size, c.max_length)
        lengths = _lengths(src_lengths, ids.shape[0], ids.shape[1])
        return self._model.encode(ids, lengths)

    def _check_takes_ids(self) -> None:
        if self._config.src_vocab_size == 0:
            raise ValueError("this model's encoder takes float inputs (src_vocab_size 0): use encode_features, "
                             "and generate_from_memory")

    def encode_features(self, inputs: np.ndarray, src_lengths: Lengths = None) -> np.ndarray:
        """Encode float inputs, for a model without source embeddings (``src_vocab_size``
        0, e.g. Whisper, whose audio front end and positions run before the encoder).

        Args:
            inputs: float32 [B, S, d_model], positions already added.
            src_lengths: as for :meth:`encode`.

        Returns:
            float32 [B, S, d_model], the encoder output ("memory").
        """
        c = self._config
        if c.src_vocab_size != 0:
            raise ValueError("this model's encoder takes token ids: use encode (encode_features is for models "
                             "with src_vocab_size 0)")
        x = _float_array(inputs, "inputs", 3)
        if x.shape[2] != c.d_model:
            raise ValueError(f"inputs must have shape [B, S, {c.d_model}] (d_model), got {x.shape}")
        lengths = _lengths(src_lengths, x.shape[0], x.shape[1])
        return self._model.encode_features(x, lengths)

    def decode(self, tgt_ids: TokenIds, memory: np.ndarray, src_lengths: Lengths = None, *,
               return_attention: bool = False) -> Union[np.ndarray, tuple]:
        """Teacher-forced decoding: logits for every target position.

        Args:
            tgt_ids: int [B, T] target ids (usually starting with bos_id); position t
                sees targets 0..t only (causal self-attention).
            memory: float32 [B, S, d_model] from :meth:`encode`.
            src_lengths: as given to :meth:`encode`.

            return_attention: also return the last decoder layer's encoder-decoder
                attention probabilities, averaged over heads: float32 [B, T, S], which
                source positions each target position looked at (for inspection).

        Returns:
            float32 [B, T, tgt_vocab_size] (unnormalised log-probabilities); with
            return_attention, the tuple (logits, attention).
        """
        c = self._config
        ids = _ids(tgt_ids, "tgt_ids", c.tgt_vocab_size, c.max_length)
        if not isinstance(memory, np.ndarray):
            raise TypeError(f"memory must be the float32 array returned by encode, got {type(memory).__name__}")
        if memory.dtype.kind != "f" or memory.dtype.itemsize != 4:  # any byte order (copied if swapped)
            raise TypeError(f"memory must have dtype float32, got {memory.dtype}")
        if memory.ndim != 3 or memory.shape[0] != ids.shape[0] or memory.shape[2] != c.d_model:
            raise ValueError(f"memory must have shape [{ids.shape[0]}, S, {c.d_model}] (batch of tgt_ids, "
                             f"d_model), got {memory.shape}")
        lengths = _lengths(src_lengths, ids.shape[0], memory.shape[1])
        return self._model.decode(ids, memory, lengths, bool(return_attention))

    # -- generation ------------------------------------------------------------

    def _generation_options(self, max_length, min_length, beam_size, length_penalty, num_hypotheses,
                            sampling_topk, sampling_topp, sampling_temperature, seed, return_scores,
                            suppress_tokens, forced_eos, forced_bos, early_stopping,
                            begin_suppress_tokens=None, extra=None) -> "_core.GenerationOptions":
        c = self._config
        max_length = _int_option("max_length", max_length, 1, c.max_length, " (the model's max_length)")
        min_length = _int_option("min_length", min_length, 0)
        if min_length > max_length:
            raise ValueError(f"min_length ({min_length}) must be <= max_length ({max_length})")
        beam_size = _int_option("beam_size", beam_size, 1)
        num_hypotheses = _int_option("num_hypotheses", num_hypotheses, 1)
        if num_hypotheses > beam_size:
            raise ValueError(f"num_hypotheses ({num_hypotheses}) must be <= beam_size ({beam_size})")
        length_penalty = _float_option("length_penalty", length_penalty)
        sampling_topk = _int_option("sampling_topk", sampling_topk, 0, None)
        sampling_topk = min(sampling_topk, c.tgt_vocab_size)  # more than the vocabulary means all of it
        sampling_topp = _float_option("sampling_topp", sampling_topp)
        if not 0.0 < sampling_topp <= 1.0:
            raise ValueError(f"sampling_topp must be in (0, 1], got {sampling_topp}")
        sampling_temperature = _float_option("sampling_temperature", sampling_temperature)
        if sampling_temperature <= 0.0:
            raise ValueError(f"sampling_temperature must be > 0, got {sampling_temperature}")
        if beam_size > 1 and sampling_topk != 1:
            raise ValueError("sampling (sampling_topk != 1) works with beam_size=1 only")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        else:
            seed = _int_option("seed", seed, 0, None) % (1 << 64)
        if not isinstance(return_scores, bool):
            raise TypeError(f"return_scores must be a bool, got {type(return_scores).__name__}")
        if not isinstance(forced_eos, bool):
            raise TypeError(f"forced_eos must be a bool, got {type(forced_eos).__name__}")
        if not isinstance(early_stopping, bool):
            raise TypeError(f"early_stopping must be a bool, got {type(early_stopping).__name__}")
        if forced_bos is not None:
            forced_bos = _int_option("forced_bos", forced_bos, 0, c.tgt_vocab_size - 1,
                                     " (the target vocabulary size - 1)")
        suppress = self._token_list("suppress_tokens", suppress_tokens)
        begin_suppress = self._token_list("begin_suppress_tokens", begin_suppress_tokens)
        self._check_generable(set(suppress), min_length, max_length, forced_eos, forced_bos is not None)
        return _core.GenerationOptions(
            max_length=max_length, min_length=min_length, beam_size=beam_size, length_penalty=length_penalty,
            num_hypotheses=num_hypotheses, sampling_topk=sampling_topk, sampling_topp=sampling_topp,
            sampling_temperature=sampling_temperature, seed=seed, return_scores=return_scores,
            suppress_tokens=suppress, forced_eos=forced_eos, forced_bos=forced_bos, early_stopping=early_stopping,
            begin_suppress_tokens=begin_suppress, **(extra or {}))

    def _token_list(self, name: str, tokens: Any) -> List[int]:
        """The ids of ``tokens`` (None: none), each a valid target id."""
        out: List[int] = []
        if tokens is None:
            return out
        if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__iter__"):
            raise TypeError(f"{name} must be a list of token ids")
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                raise TypeError(f"{name} must hold ints, got {type(t).__name__}")
            if not 0 <= t < self._config.tgt_vocab_size:
                raise ValueError(f"{name} contains {t}, not a valid target id "
                                 f"(vocabulary size {self._config.tgt_vocab_size})")
            out.append(int(t))
        return out

    def _default_max_length(self, start_tokens: Any, one_source: bool = False) -> int:
        """256, or what the model's positions leave after the longest start tokens."""
        longest = 0
        try:
            if start_tokens is not None:
                rows = [start_tokens] if one_source else start_tokens
                longest = max((len(r) for r in rows), default=0)
        except TypeError:
            pass  # _start_tokens reports malformed start tokens
        return max(1, min(256, self._config.max_length - longest))

    def _check_generable(self, suppressed: set, min_length: int, max_length: int, forced_eos: bool,
                         forced_bos: bool = False) -> None:
        """ValueError when some step could generate no token at all."""
        c = self._config
        forced_only = (forced_eos or forced_bos) and max_length == 1  # the only step is forced
        first_forced = forced_bos or forced_only
        if len(suppressed) >= c.tgt_vocab_size and not forced_only:
            raise ValueError(f"suppress_tokens holds every id of the target vocabulary ({c.tgt_vocab_size}): "
                             "nothing can be generated")
        others = c.tgt_vocab_size - len(suppressed - {c.eos_id}) - 1  # ids that are neither EOS nor suppressed
        if others == 0 and (min_length >= 2 or (min_length == 1 and not first_forced)):
            raise ValueError(f"min_length={min_length} forbids end-of-sequence (eos_id {c.eos_id}) at the first "
                             "step, but every other token is in suppress_tokens: nothing can be generated")

    def _start_tokens(self, start_tokens: Any, batch: int, max_length: int) -> Optional[List[List[int]]]:
        if start_tokens is None:
            return None
        c = self._config
        if isinstance(start_tokens, np.ndarray):
            start_tokens = start_tokens.tolist()
        if not isinstance(start_tokens, Sequence) or isinstance(start_tokens, (str, bytes)):
            raise TypeError("start_tokens must be a list with one list of token ids per source")
        if len(start_tokens) != batch:
            raise ValueError(f"start_tokens must have one list per source ({batch}), got {len(start_tokens)}")
        out = []
        for b, row in enumerate(start_tokens):
            if isinstance(row, np.ndarray):
                row = row.tolist()
            if not isinstance(row, Sequence) or isinstance(row, (str, bytes)):
                raise TypeError(f"start_tokens[{b}] must be a list of token ids")
            ids = []
            for t in row:
                if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                    raise TypeError(f"start_tokens[{b}] must hold ints, got {type(t).__name__}")
                if not 0 <= t < c.tgt_vocab_size:
                    raise ValueError(f"start_tokens[{b}] contains {t}, not a valid target id "
                                     f"(vocabulary size {c.tgt_vocab_size})")
                ids.append(int(t))
            out.append(ids)
        longest = max((len(r) for r in out), default=0)
        if longest + max_length > c.max_length:
            raise ValueError(f"start tokens ({longest}) + max_length ({max_length}) exceed the model's "
                             f"max_length ({c.max_length})")
        return out

    def generate(self, src_ids: TokenIds, src_lengths: Lengths = None, *, max_length: Optional[int] = None,
                 min_length: int = _D["min_length"], beam_size: int = _D["beam_size"],
                 length_penalty: float = _D["length_penalty"], num_hypotheses: int = _D["num_hypotheses"],
                 sampling_topk: int = _D["sampling_topk"], sampling_topp: float = _D["sampling_topp"],
                 sampling_temperature: float = _D["sampling_temperature"], seed: Optional[int] = None,
                 start_tokens: StartTokens = None, return_scores: bool = _D["return_scores"],
                 suppress_tokens: Optional[Sequence[int]] = None, forced_eos: bool = _D["forced_eos"],
                 forced_bos: Optional[int] = None, early_stopping: bool = _D["early_stopping"]) -> List[GenerationResult]:
        """Generate target sequences for a batch of sources (the whole loop runs in C++).

        Every target starts with ``bos_id``; generation stops at ``eos_id`` or after
        ``max_length`` generated tokens. The options follow CTranslate2's names:

        Args:
            src_ids, src_lengths: as for :meth:`encode` (sources of unequal lengths).
            max_length: most tokens to generate per hypothesis (end-of-sequence
                included; start tokens not counted). None: 256, or less when the
                model's own ``max_length`` (positions) leaves less room after the
                start tokens.
            min_length: end-of-sequence cannot be generated before this many tokens
                (so ``min_length == max_length`` forces exactly that many).
            beam_size: 1 for greedy search or sampling; K > 1 for beam search with K
                beams. Beam search keeps, per step, the best 2K continuations, lets
                only the top K finish (end-of-sequence or max_length), keeps the K best
                finished hypotheses, and stops a source once its best running beam, at
                its current length, cannot beat the worst of K finished ones (the
                semantics of Hugging Face's beam search with ``early_stopping=False``).
                Sources that are done leave the batch: their beams are not computed.
            length_penalty: hypotheses are ranked by ``log_prob / length**length_penalty``.
            num_hypotheses: hypotheses returned per source (<= beam_size). Beam search
                returns only real hypotheses (finished, with a finite score): fewer than
                ``num_hypotheses`` when fewer exist, e.g. when ``suppress_tokens``
                leaves fewer continuations than beams.
            sampling_topk: 1 (default) for greedy search; 0 samples from the whole
                vocabulary; k > 1 from the k most likely tokens.
            sampling_topp: nucleus sampling: sample from the smallest set of most
                likely tokens whose probability reaches topp (after top-k).
            sampling_temperature: logits are divided by it before sampling.
            seed: seed of the sampler (reproducible results); None draws one.
                Each source has its own stream, so its sample does not depend on the
                other sources in the batch.
            start_tokens: None, or one list of target ids per source forced right after
                ``bos_id`` (a prefix); they are returned in ``sequences``.
            return_scores: False skips computing log-probabilities (slightly faster).
            suppress_tokens: token ids never generated (e.g. the padding token of a
                Marian model: HF's ``bad_words_ids`` of single tokens).
            forced_eos: the ``max_length``-th generated token is always ``eos_id``, with
                log-probability 0 (HF's ``forced_eos_token_id``).
            forced_bos: None, or a target id that is always the first generated token,
                with log-probability 0 (HF's ``forced_bos_token_id``: the target-language
                token of mBART-50, M2M100 and NLLB). Unlike ``start_tokens`` it counts as
                a generated token (in ``max_length`` and the length penalty) and is
                returned in ``sequences``. ``forced_eos`` wins when both apply.
            early_stopping: beam search only: a source stops as soon as it has
                ``beam_size`` finished hypotheses (HF's ``early_stopping=True``), instead
                of when no running beam can beat the worst of them.

        Models from :func:`pytransformer.from_pretrained` carry their checkpoint's
        generation defaults in ``model.generation_defaults``:
        ``model.generate(ids, **model.generation_defaults)``.

        Returns:
            One :class:`GenerationResult` per source.
        """
        c = self._config
        self._check_takes_ids()
        ids = _ids(src_ids, "src_ids", c.src_vocab_size, c.max_length)
        lengths = _lengths(src_lengths, ids.shape[0], ids.shape[1])
        return self._run_generation(
            lambda start, opts: self._model.generate(ids, lengths, start, opts), ids.shape[0], max_length,
            min_length, beam_size, length_penalty, num_hypotheses, sampling_topk, sampling_topp,
            sampling_temperature, seed, start_tokens, return_scores, suppress_tokens, forced_eos, forced_bos,
            early_stopping, None)

    def generate_from_memory(self, memory: np.ndarray, src_lengths: Lengths = None, *,
                             max_length: Optional[int] = None, min_length: int = _D["min_length"],
                             beam_size: int = _D["beam_size"], length_penalty: float = _D["length_penalty"],
                             num_hypotheses: int = _D["num_hypotheses"], sampling_topk: int = _D["sampling_topk"],
                             sampling_topp: float = _D["sampling_topp"],
                             sampling_temperature: float = _D["sampling_temperature"], seed: Optional[int] = None,
                             start_tokens: StartTokens = None, return_scores: bool = _D["return_scores"],
                             suppress_tokens: Optional[Sequence[int]] = None, forced_eos: bool = _D["forced_eos"],
                             forced_bos: Optional[int] = None, early_stopping: bool = _D["early_stopping"],
                             begin_suppress_tokens: Optional[Sequence[int]] = None, decoder_start: Optional[int] = None,
                             timestamp_rules: Optional[Tuple[int, int, int]] = None,
                             renormalize: bool = False,
                             probe: Optional[Tuple[int, int]] = None, beam_semantics: str = "hf",
                             patience: float = 1.0) -> List[GenerationResult]:
        """:meth:`generate` from an encoder output already computed (:meth:`encode` or
        :meth:`encode_features`): memory float32 [B, S, d_model]. The options are those
        of :meth:`generate`, plus ``begin_suppress_tokens``: ids that cannot be the first
        generated token (Whisper's blank and end-of-text at the first step);
        ``decoder_start``: the first decoder input instead of ``bos_id`` (Whisper's
        ``<|startofprev|>`` before a text prompt); ``timestamp_rules``: None, or
        ``(timestamp_begin, no_timestamps_id, max_initial_timestamp_id)`` to apply
        Whisper's timestamp rules to the generated tokens; ``renormalize``: scores are
        log-probabilities of the distribution left after suppression and those rules
        (CTranslate2's rule) rather than of the raw logits; ``probe``: None, or
        ``(token, after)``: each result's ``probe`` is ``token``'s probability (softmax of
        the raw logits) at the first step whose decoder input is ``after`` (Whisper's
        no-speech probability after ``<|startoftranscript|>``); ``beam_semantics``:
        ``"hf"`` (Hugging Face's beam search, as :meth:`generate`) or ``"ct2"``
        (CTranslate2's: the ending candidates among the best K become hypotheses, a
        source stops with ``round(beam_size * patience)`` of them, ranked by
        ``log_prob / (tokens without EOS) ** length_penalty``)."""
        if beam_semantics not in ("hf", "ct2"):
            raise ValueError(f"beam_semantics must be 'hf' or 'ct2', got {beam_semantics!r}")
        patience = _float_option("patience", patience)
        if not patience > 0:
            raise ValueError(f"patience must be > 0, got {patience}")
        if not isinstance(renormalize, bool):
            raise TypeError(f"renormalize must be a bool, got {type(renormalize).__name__}")
        extra: Dict[str, Any] = {"renormalize": renormalize, "ct2_beam": beam_semantics == "ct2",
                                 "patience": patience}
        if probe is not None:
            extra["probe_token"], extra["probe_after"] = self._token_list("probe", probe)
        if decoder_start is not None:
            extra["decoder_start"] = self._token_list("decoder_start", [decoder_start])[0]
        if timestamp_rules is not None:
            begin, no_ts, max_initial = self._token_list("timestamp_rules", timestamp_rules)
            if begin <= self._config.eos_id:
                raise ValueError(f"timestamp_begin ({begin}) must be above eos_id ({self._config.eos_id})")
            extra.update(timestamp_begin=begin, no_timestamps=no_ts, max_initial_timestamp=max_initial)
        c = self._config
        mem = _float_array(memory, "memory", 3)
        if mem.shape[2] != c.d_model:
            raise ValueError(f"memory must have shape [B, S, {c.d_model}] (d_model), got {mem.shape}")
        lengths = _lengths(src_lengths, mem.shape[0], mem.shape[1])
        return self._run_generation(
            lambda start, opts: self._model.generate_from_memory(mem, lengths, start, opts), mem.shape[0],
            max_length, min_length, beam_size, length_penalty, num_hypotheses, sampling_topk, sampling_topp,
            sampling_temperature, seed, start_tokens, return_scores, suppress_tokens, forced_eos, forced_bos,
            early_stopping, begin_suppress_tokens, extra)

    def _run_generation(self, call, batch, max_length, min_length, beam_size, length_penalty, num_hypotheses,
                        sampling_topk, sampling_topp, sampling_temperature, seed, start_tokens, return_scores,
                        suppress_tokens, forced_eos, forced_bos, early_stopping,
                        begin_suppress_tokens, extra=None) -> List[GenerationResult]:
        if max_length is None:
            max_length = self._default_max_length(start_tokens)
        opts = self._generation_options(max_length, min_length, beam_size, length_penalty, num_hypotheses,
                                        sampling_topk, sampling_topp, sampling_temperature, seed, return_scores,
                                        suppress_tokens, forced_eos, forced_bos, early_stopping,
                                        begin_suppress_tokens, extra)
        start = self._start_tokens(start_tokens, batch, opts.max_length)
        raw = call(start, opts)
        results = []
        for hyps in raw:
            seqs = [list(h[0]) for h in hyps]
            probe = float(hyps[0][3]) if hyps and hyps[0][3] >= 0 else None
            if return_scores:
                results.append(GenerationResult(seqs, [float(h[1]) for h in hyps], [float(h[2]) for h in hyps],
                                                probe))
            else:
                results.append(GenerationResult(seqs, probe=probe))
        return results

    def generate_tokens(self, src_ids: Union[TokenIds, Sequence[int]], *, max_length: Optional[int] = None,
                        min_length: int = _D["min_length"], sampling_topk: int = _D["sampling_topk"],
                        sampling_topp: float = _D["sampling_topp"],
                        sampling_temperature: float = _D["sampling_temperature"], seed: Optional[int] = None,
                        start_tokens: Optional[Sequence[int]] = None, suppress_tokens: Optional[Sequence[int]] = None,
                        forced_eos: bool = _D["forced_eos"], forced_bos: Optional[int] = None) -> Iterator[int]:
        """Generate for one source, yielding each new token id as soon as it exists.

        For streaming UIs: greedy search (default) or sampling, with the options of
        :meth:`generate`. ``src_ids`` is one sequence of ids (``[S]`` or ``[1, S]``);
        ``start_tokens`` one list of forced ids (not yielded). Stops after
        end-of-sequence (not yielded) or ``max_length`` tokens. Each step is one call
        into C++; the iterator may be abandoned at any time.
        """
        c = self._config
        arr = src_ids if isinstance(src_ids, np.ndarray) else np.asarray(src_ids)
        if arr.ndim == 1:
            arr = arr[None, :]
        ids = _ids(arr, "src_ids", c.src_vocab_size, c.max_length)
        if ids.shape[0] != 1:
            raise ValueError(f"generate_tokens takes one source, got a batch of {ids.shape[0]}")
        if max_length is None:
            max_length = self._default_max_length(start_tokens, one_source=True)
        opts = self._generation_options(max_length, min_length, 1, _D["length_penalty"], 1, sampling_topk,
                                        sampling_topp, sampling_temperature, seed, False, suppress_tokens, forced_eos,
                                        forced_bos, False)
        start = self._start_tokens(None if start_tokens is None else [start_tokens], 1, opts.max_length)
        stream = self._model.stream(ids, start, opts)
        lock = threading.Lock()

        def tokens() -> Iterator[int]:
            while True:
                with lock:
                    tok = stream.next()
                if tok < 0:
                    return
                yield tok

        return tokens()

    # -- weights and files -----------------------------------------------------

    def state_dict(self, *, int8: bool = False) -> dict:
        """Every weight under its torch name: new float32 arrays, exactly as loaded (an
        int8 model's linear weights dequantized, ``q * scale``). ``int8=True``: an int8
        model's linear weights as stored instead, int8 arrays with their float32 scales
        under ``name + "_scale"`` (what :meth:`save` writes)."""
        return self._model.state_dict(int8=bool(int8))

    def save(self, path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> None:
        """Write the model to one ``.safetensors`` file, the config in its metadata.

        ``metadata``: extra string entries stored beside it (e.g. a vocabulary as
        JSON), returned by :meth:`load` in ``model.metadata``.
        """
        from safetensors.numpy import save_file

        extra = _extra_metadata(metadata, _RESERVED_METADATA)
        save_file(self.state_dict(int8=True), os.fspath(path),
                  metadata={**extra, "format": _FORMAT, "config": self._config.to_json(),
                            "compute_type": self.compute_type})

    @classmethod
    def load(cls, path: PathLike, *, compute_type: Optional[str] = None) -> "Transformer":
        """Load a file written by :meth:`save`. Never executes code from the file.

        The whole file is validated first (a truncated or corrupt file is a ValueError
        naming it); float16 and bfloat16 tensors are widened to float32 exactly.
        ``compute_type``: None for the file's own (``"int8"`` for a file saved by an
        int8 model, whose int8 weights are used as stored, not quantized again), or
        ``"float32"`` / ``"int8"`` (an int8 file loaded as float32 is dequantized; a
        float32 file loaded as int8 is quantized)."""
        path = os.fspath(path)
        f = _open_model_file(path, _FORMAT, "model")
        metadata = f.metadata
        try:
            config = TransformerConfig.from_json(metadata["config"])
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path!r}: bad pytransformer config in the file's metadata: {e}") from e
        _check_fits_in_memory(config, repr(path))  # before reading (or the C++ side allocating) anything
        weights = f.tensors()
        extra = {k: v for k, v in metadata.items() if k not in _RESERVED_METADATA}
        model = cls(config, weights, compute_type=_file_compute_type(path, metadata, compute_type))
        model.metadata = extra
        return model

    @classmethod
    def from_torch_state_dict(cls, state_dict: Mapping[str, Any], config: TransformerConfig,
                              ignore: Optional[list] = None, *, compute_type: str = "float32") -> "Transformer":
        """Build from a PyTorch model's ``state_dict()``.

        Recognises ``nn.Transformer`` names at the top level or under a prefix (e.g.
        ``transformer.`` in PyTorch's translation tutorial), embeddings such as
        ``src_tok_emb.embedding.weight`` / ``tgt_tok_emb.embedding.weight`` and
        ``generator.weight`` / ``generator.bias``; positional buffers are ignored.
        Names it cannot place raise WeightsError listing them (drop them with
        ``ignore``)::

            model = MyTorchSeq2Seq(...)            # nn.Transformer + embeddings + nn.Linear
            config = pt.TransformerConfig(d_model=512, nhead=8, ...)
            pt_model = pt.Transformer.from_torch_state_dict(model.state_dict(), config)
        """
        from .families.torch import convert_torch_state_dict  # the families import this module

        return cls(config, convert_torch_state_dict(state_dict, config, ignore), compute_type=compute_type)

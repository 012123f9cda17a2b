"""pytransformer.EncoderModel: an encoder-only Transformer (BERT-style), with
sentence embeddings when a tokenizer and a pooling configuration are attached."""

from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

import json
import os

import numpy as np

from . import _core
from .config import EncoderConfig, Lengths, TokenIds, TransformerConfig, _check_fits_in_memory, as_encoder_config
from .model import _extra_metadata, _file_compute_type, _ids, _lengths, _open_model_file
from .weights import check_compute_type, check_weights, expected_encoder_weight_shapes

_FORMAT = "pytransformer.EncoderModel"
_RESERVED_METADATA = ("format", "config", "compute_type", "pooling", "normalize", "max_seq_length", "tokenizer")

__all__ = ["EncoderModel", "Pooling"]

_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")  # the order of sentence-transformers' old flags
_ALIASES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}  # sentence-transformers' current name


class Pooling:
    """How token states become one sentence vector (sentence-transformers' Pooling).

    ``modes``: any of ``"cls"`` (the first token), ``"max"`` (element-wise max over the
    real tokens), ``"mean"`` (mean of the real tokens), ``"mean_sqrt_len"`` (sum /
    sqrt(number of tokens), also spelled ``"mean_sqrt_len_tokens"``); several are
    concatenated in the order given (as sentence-transformers does).
    """

    def __init__(self, modes: Sequence[str] = ("mean",)):
        modes = tuple(_ALIASES.get(m, m) for m in ((modes,) if isinstance(modes, str) else modes))
        if not modes:
            raise ValueError("Pooling needs at least one mode")
        for m in modes:
            if m not in _POOLING_MODES:
                raise ValueError(f"unknown pooling mode {m!r}; known: {_POOLING_MODES}")
        if len(set(modes)) != len(modes):
            raise ValueError(f"pooling modes repeat: {modes}")
        self.modes = modes

    @classmethod
    def from_sentence_transformers(cls, config: Mapping[str, Any]) -> "Pooling":
        """From a ``1_Pooling/config.json`` mapping: the old form (``pooling_mode_*``
        booleans) or the current one (``"pooling_mode": "mean"`` or a list)."""
        if not isinstance(config, Mapping):
            raise ValueError(f"the pooling config must be a mapping (a JSON object), got {type(config).__name__}")
        if "pooling_mode" in config:  # sentence-transformers >= 5: modes in the order given
            modes = config["pooling_mode"]
            if isinstance(modes, str):
                modes = [modes]
            if not isinstance(modes, (list, tuple)) or not all(isinstance(m, str) for m in modes):
                raise ValueError(f"'pooling_mode' in the pooling config must be a mode name or a list of them, "
                                 f"got {modes!r}")
            modes = [_ALIASES.get(m, m) for m in modes]
            unknown = [m for m in modes if m not in _POOLING_MODES]
            if unknown:
                raise ValueError(f"unsupported pooling mode(s) {unknown} in the pooling config "
                                 f"(supported: {list(_POOLING_MODES)})")
            return cls(modes or ("mean",))
        old_names = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                     "mean": "pooling_mode_mean_tokens", "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
        flags = [k for k, v in config.items() if isinstance(k, str) and k.startswith("pooling_mode_")
                 and v is not None and not isinstance(v, bool)]
        if flags:
            raise ValueError(f"{flags[0]!r} in the pooling config must be true or false, got {config[flags[0]]!r}")
        modes = [m for m in _POOLING_MODES if config.get(old_names[m])]
        unsupported = [k for k, v in config.items()
                       if k.startswith("pooling_mode_") and v and k not in old_names.values()]
        if unsupported:
            raise ValueError(f"unsupported pooling option(s) {unsupported} in the pooling config")
        return cls(modes or ("mean",))

    def __repr__(self) -> str:
        return f"Pooling({list(self.modes)!r})"

    def __call__(self, states: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """states [B, S, E] float32, lengths [B] -> [B, E * len(modes)] float32."""
        B, S, _ = states.shape
        mask = (np.arange(S)[None, :] < lengths[:, None]).astype(np.float32)[:, :, None]
        counts = np.maximum(mask.sum(axis=1), np.float32(1e-9))
        parts = []
        for m in self.modes:
            if m == "cls":
                parts.append(states[:, 0, :])
            elif m == "max":
                masked = np.where(mask > 0, states, np.float32(-1e9))
                parts.append(masked.max(axis=1))
            elif m == "mean":
                parts.append((states * mask).sum(axis=1) / counts)
            else:
                parts.append((states * mask).sum(axis=1) / np.sqrt(counts))
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


class EncoderModel:
    """The Transformer encoder alone (BERT and friends), on the CPU.

    It runs the same C++ encoder as :class:`pytransformer.Transformer`, configured by
    an :class:`pytransformer.EncoderConfig` (options such as ``positional="learned"``,
    ``type_vocab_size`` and ``embedding_norm``; a :class:`TransformerConfig` is taken
    as its encoder half). Weights:
    :func:`pytransformer.weights.expected_encoder_weight_shapes`. Usually built by
    :func:`pytransformer.from_pretrained`, which also attaches the checkpoint's
    tokenizer and pooling so that :meth:`embed` works on text.
    """

    def __init__(self, config: Union[EncoderConfig, TransformerConfig], weights: Mapping[str, Any], *,
                 tokenizer: Any = None, pooling: Optional[Pooling] = None, normalize: bool = True,
                 max_seq_length: Optional[int] = None, compute_type: str = "float32"):
        config = as_encoder_config(config)
        compute_type = check_compute_type(compute_type)
        if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                           or max_seq_length < 1):
            raise ValueError(f"max_seq_length must be None or an int >= 1, got {max_seq_length!r}")
        _check_fits_in_memory(config, "EncoderModel")  # before walking or copying weights
        checked = check_weights(config._transformer_config(), weights, expected_encoder_weight_shapes(config))
        self._config = config
        self._model = _core.EncoderOnlyModel(config._core_dict(), checked, compute_type)
        self.tokenizer = tokenizer
        self.pooling = pooling or Pooling()
        self.normalize = normalize
        self.max_seq_length = min(max_seq_length or config.max_length, config.max_length)
        #: Extra entries of the file the model was loaded from (see :meth:`save`).
        self.metadata: dict = {}

    @property
    def config(self) -> EncoderConfig:
        return self._config

    @property
    def compute_type(self) -> str:
        """``"float32"`` or ``"int8"`` (see :class:`pytransformer.Transformer`)."""
        return self._model.compute_type

    def __repr__(self) -> str:
        c = self._config
        return (f"EncoderModel(d_model={c.d_model}, nhead={c.nhead}, layers={c.num_layers}, "
                f"vocab={c.vocab_size}, pooling={self.pooling!r})")

    def encode(self, input_ids: TokenIds, lengths: Lengths = None, token_type_ids: Optional[TokenIds] = None) -> np.ndarray:
        """Last hidden states.

        Args:
            input_ids: int [B, S] token ids (right-padded).
            lengths: None (all S tokens are real) or int [B]: the real tokens of row b
                are ``input_ids[b, :lengths[b]]``; padding is never attended to.
            token_type_ids: None (all type 0) or int [B, S] segment ids.

        Returns:
            float32 [B, S, d_model]; values at padding positions are unspecified.
        """
        c = self._config
        ids = _ids(input_ids, "input_ids", c.vocab_size, c.max_length)
        lens = _lengths(lengths, ids.shape[0], ids.shape[1], "lengths")
        types = None
        if token_type_ids is not None:
            n_types = max(c.type_vocab_size, 1)
            types = _ids(token_type_ids, "token_type_ids", n_types, c.max_length)
            if types.shape != ids.shape:
                raise ValueError(f"token_type_ids must have the shape of input_ids {ids.shape}, got {types.shape}")
        return self._model.encode(ids, lens, types)

    def embed(self, texts: Iterable[str], batch_size: int = 32, normalize: Optional[bool] = None,
              progress: bool = False) -> np.ndarray:
        """Sentence embeddings of ``texts``: tokenize, encode, pool, normalise.

        Needs a tokenizer (``tokenizers.Tokenizer``, attached by from_pretrained when
        the folder has ``tokenizer.json``). Texts are processed in batches of
        ``batch_size`` (sorted by length, so padding is small); texts longer than
        ``max_seq_length`` tokens are truncated. ``normalize`` (default: the model's
        setting) scales each vector to unit L2 norm. ``progress=True`` shows a tqdm
        progress bar when tqdm is installed.

        Returns:
            float32 [len(texts), embedding size].
        """
        if self.tokenizer is None:
            raise RuntimeError("embed() needs a tokenizer: load the model with pytransformer.from_pretrained from a "
                               "folder with tokenizer.json, or set model.tokenizer")
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings (got one string: wrap it in a list)")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is a {type(t).__name__}, expected str")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        normalize = self.normalize if normalize is None else bool(normalize)
        out_dim = self._config.d_model * len(self.pooling.modes)
        if not texts:
            return np.zeros((0, out_dim), np.float32)
        encodings = self._tokenize(texts)
        order = np.argsort([-len(e[0]) for e in encodings], kind="stable")
        result = np.empty((len(texts), out_dim), np.float32)
        batches = range(0, len(texts), batch_size)
        if progress:
            try:
                from tqdm.auto import tqdm

                batches = tqdm(batches, total=len(batches), desc="embed", unit="batch")
            except ImportError:
                pass
        for start in batches:
            idx = order[start:start + batch_size]
            lens = np.array([len(encodings[i][0]) for i in idx], np.int32)
            S = int(lens.max())
            ids = np.zeros((len(idx), S), np.int32)
            types = np.zeros((len(idx), S), np.int32)
            for r, i in enumerate(idx):
                ids[r, :lens[r]] = encodings[i][0]
                types[r, :lens[r]] = encodings[i][1]
            states = self._model.encode(ids, lens, types if self._config.type_vocab_size > 0 else None)
            pooled = self.pooling(states, lens)
            if normalize:
                norms = np.sqrt((pooled.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
                pooled = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
            result[idx] = pooled
        return result

    def _tokenize(self, texts: List[str]):
        """[(ids, type_ids)] per text, truncated to max_seq_length."""
        tok = self.tokenizer
        if hasattr(tok, "encode_batch"):  # tokenizers.Tokenizer
            tok.no_padding()
            tok.enable_truncation(self.max_seq_length)
            encs = tok.encode_batch(texts)
            out = [(e.ids, e.type_ids) for e in encs]
        else:  # any callable returning a list of ids per text
            out = [(list(ids)[: self.max_seq_length], [0] * min(len(ids), self.max_seq_length))
                   for ids in (tok(t) for t in texts)]
        for i, (ids, _) in enumerate(out):
            if not ids:
                raise ValueError(f"texts[{i}] tokenizes to no tokens")
            if max(ids) >= self._config.vocab_size:
                raise ValueError(f"the tokenizer produced id {max(ids)} for texts[{i}], outside the model's "
                                 f"vocabulary ({self._config.vocab_size})")
        return out

    def state_dict(self, *, int8: bool = False) -> dict:
        """Every weight under pytransformer's names: new float32 arrays, as loaded (int8
        linear weights dequantized; ``int8=True``: as stored, with their ``_scale``)."""
        return self._model.state_dict(int8=bool(int8))

    def save(self, path: "os.PathLike[str] | str", metadata: Optional[Mapping[str, str]] = None) -> None:
        """Write the model to one ``.safetensors`` file: its weights (int8 + scales for an
        int8 model, about a quarter of float32), and in the metadata its config, compute
        type, pooling, normalisation, ``max_seq_length`` and, when it has a
        ``tokenizers.Tokenizer``, that tokenizer (its JSON), so that
        :meth:`load` gives back a model whose :meth:`embed` works on text. ``metadata``:
        extra string entries, returned by :meth:`load` in ``model.metadata``."""
        from safetensors.numpy import save_file

        meta = {**_extra_metadata(metadata, _RESERVED_METADATA), "format": _FORMAT, "config": self._config.to_json(), "compute_type": self.compute_type,
                "pooling": json.dumps(list(self.pooling.modes)), "normalize": json.dumps(bool(self.normalize)),
                "max_seq_length": str(int(self.max_seq_length))}
        if self.tokenizer is not None:
            to_str = getattr(self.tokenizer, "to_str", None)
            if to_str is None:
                raise TypeError(f"save() stores a tokenizers.Tokenizer; this model's tokenizer is a "
                                f"{type(self.tokenizer).__name__} (set model.tokenizer = None to save without it)")
            meta["tokenizer"] = to_str()
        save_file(self.state_dict(int8=True), os.fspath(path), metadata=meta)

    @classmethod
    def load(cls, path: "os.PathLike[str] | str", *, compute_type: Optional[str] = None) -> "EncoderModel":
        """Load a file written by :meth:`save` (never executes code from it). The file
        is validated first (a truncated or corrupt file is a ValueError naming it).
        ``compute_type``: None for the file's own, or ``"float32"`` / ``"int8"`` (as
        :meth:`pytransformer.Transformer.load`). The tokenizer, when the file has one,
        needs the ``tokenizers`` package."""
        path = os.fspath(path)
        f = _open_model_file(path, _FORMAT, "EncoderModel")
        meta = f.metadata
        try:
            config = EncoderConfig.from_json(meta["config"])
            modes = json.loads(meta.get("pooling", '["mean"]'))
            normalize = json.loads(meta.get("normalize", "true"))
            max_seq = int(meta.get("max_seq_length", config.max_length))
            pooling = Pooling(modes)
            if not isinstance(normalize, bool):
                raise ValueError(f"normalize must be true or false, got {normalize!r}")
        except RecursionError:
            raise ValueError(f"{path!r}: bad EncoderModel metadata: JSON nested too deeply") from None
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path!r}: bad EncoderModel metadata: {e}") from e
        compute_type = _file_compute_type(path, meta, compute_type)
        _check_fits_in_memory(config, repr(path))
        tokenizer = None
        if "tokenizer" in meta:
            try:
                from tokenizers import Tokenizer
            except ImportError as e:
                raise ImportError(f"{path!r} carries a tokenizer, which needs the tokenizers package: "
                                  "pip install tokenizers") from e
            try:
                tokenizer = Tokenizer.from_str(meta["tokenizer"])
            except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception type
                raise ValueError(f"{path!r}: the tokenizer in the file's metadata does not load: {e}") from None
        model = cls(config, f.tensors(), tokenizer=tokenizer, pooling=pooling, normalize=normalize,
                    max_seq_length=max_seq, compute_type=compute_type)
        model.metadata = {k: v for k, v in meta.items() if k not in _RESERVED_METADATA}
        return model

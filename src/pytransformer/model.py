"""pytransformer.Transformer: the encoder-decoder model."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from . import _core
from .config import TransformerConfig
from .weights import WeightsError, check_weights, convert_torch_state_dict

__all__ = ["Transformer"]

_FORMAT = "pytransformer.Transformer"
PathLike = Union[str, "os.PathLike[str]"]


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


def _lengths(value: Any, batch: int, length: int, name: str = "src_lengths") -> Optional[np.ndarray]:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one length per row), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > length):
        b = int(np.argmax((arr < 0) | (arr > length)))
        raise ValueError(f"{name}[{b}] = {arr[b]} is outside [0, {length}] (the row has {length} positions)")
    return np.ascontiguousarray(arr, dtype=np.int32)


class Transformer:
    """The encoder-decoder Transformer of "Attention Is All You Need", on the CPU.

    ``Transformer(config, weights)`` copies the weights (a mapping of
    ``torch.nn.Transformer`` state_dict names to arrays, see
    :func:`pytransformer.weights.expected_weight_shapes`) into aligned buffers and
    pre-packs every matrix for the kernels of this CPU. The model is immutable and
    may be called from several threads at once; calls release the GIL.
    """

    def __init__(self, config: TransformerConfig, weights: Mapping[str, Any]):
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        checked = check_weights(config, weights)
        self._config = config
        self._model = _core.TransformerModel(config._core_dict(), checked)

    @property
    def config(self) -> TransformerConfig:
        return self._config

    def __repr__(self) -> str:
        c = self._config
        return (f"Transformer(d_model={c.d_model}, nhead={c.nhead}, layers={c.num_encoder_layers}+"
                f"{c.num_decoder_layers}, vocab={c.src_vocab_size}/{c.tgt_vocab_size})")

    # -- forward ---------------------------------------------------------------

    def encode(self, src_ids: Any, src_lengths: Any = None) -> np.ndarray:
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
        ids = _ids(src_ids, "src_ids", c.src_vocab_size, c.max_length)
        lengths = _lengths(src_lengths, ids.shape[0], ids.shape[1])
        return self._model.encode(ids, lengths)

    def decode(self, tgt_ids: Any, memory: np.ndarray, src_lengths: Any = None) -> np.ndarray:
        """Teacher-forced decoding: logits for every target position.

        Args:
            tgt_ids: int [B, T] target ids (usually starting with bos_id); position t
                sees targets 0..t only (causal self-attention).
            memory: float32 [B, S, d_model] from :meth:`encode`.
            src_lengths: as given to :meth:`encode`.

        Returns:
            float32 [B, T, tgt_vocab_size] (unnormalised log-probabilities).
        """
        c = self._config
        ids = _ids(tgt_ids, "tgt_ids", c.tgt_vocab_size, c.max_length)
        if not isinstance(memory, np.ndarray):
            raise TypeError(f"memory must be the float32 array returned by encode, got {type(memory).__name__}")
        if memory.dtype != np.float32:
            raise TypeError(f"memory must have dtype float32, got {memory.dtype}")
        if memory.ndim != 3 or memory.shape[0] != ids.shape[0] or memory.shape[2] != c.d_model:
            raise ValueError(f"memory must have shape [{ids.shape[0]}, S, {c.d_model}] (batch of tgt_ids, "
                             f"d_model), got {memory.shape}")
        lengths = _lengths(src_lengths, ids.shape[0], memory.shape[1])
        return self._model.decode(ids, memory, lengths)

    # -- weights and files -----------------------------------------------------

    def state_dict(self) -> dict:
        """Every weight under its torch name: new float32 arrays, exactly as loaded."""
        return self._model.state_dict()

    def save(self, path: PathLike) -> None:
        """Write the model to one ``.safetensors`` file, the config in its metadata."""
        from safetensors.numpy import save_file

        metadata = {"format": _FORMAT, "config": self._config.to_json()}
        save_file(self.state_dict(), os.fspath(path), metadata=metadata)

    @classmethod
    def load(cls, path: PathLike) -> "Transformer":
        """Load a file written by :meth:`save`. Never executes code from the file."""
        from safetensors import safe_open

        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such model file: {path!r}")
        try:
            with safe_open(path, framework="numpy") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != _FORMAT or "config" not in metadata:
                    raise ValueError(f"{path!r} is a safetensors file but not a pytransformer model "
                                     "(no pytransformer config in its metadata)")
                config = TransformerConfig.from_json(metadata["config"])
                weights = {name: f.get_tensor(name) for name in f.keys()}
        except (ValueError, WeightsError):
            raise
        except Exception as e:  # safetensors' own errors: truncated or corrupt files
            raise ValueError(f"cannot read {path!r} as a safetensors model file: {e}") from None
        return cls(config, weights)

    @classmethod
    def from_torch_state_dict(cls, state_dict: Mapping[str, Any], config: TransformerConfig,
                              ignore: Optional[list] = None) -> "Transformer":
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
        return cls(config, convert_torch_state_dict(state_dict, config, ignore))

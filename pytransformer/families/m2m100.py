"""M2M100 and NLLB-200 (``model_type == "m2m_100"``; NLLB checkpoints use the M2M100
architecture) -> :class:`pytransformer.Transformer`.

Pre-LN with a final LayerNorm after each stack, embeddings scaled by sqrt(d_model)
(``scale_embedding``), no embedding LayerNorm, no output bias, and fairseq's fixed
sinusoidal positions: ``sin(p * f_i)`` in the first half of each vector and
``cos(p * f_i)`` in the second, ``f_i = exp(-i * ln(10000) / (d/2 - 1))``, where
the token at index t of a sequence is at position ``p = pad_token_id + 1 + t``. The
table is computed here and handed to the model as its (learned-style) position rows.
Generation starts from ``decoder_start_token_id`` (EOS); the target language is
``forced_bos_token_id`` (``generate(..., forced_bos=<language token id>)``).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from ..config import TransformerConfig
from ..model import Transformer
from . import register
from ._hf import HFConfig
from ._seq2seq import Seq2SeqLayout, load as load_seq2seq


def fairseq_sinusoidal_table(first: int, count: int, dim: int) -> np.ndarray:
    """Rows for positions [first, first + count) of fairseq's sinusoidal table
    (M2M100SinusoidalPositionalEmbedding.get_embedding), in float32 arithmetic as
    torch computes it: the frequencies and the products position x frequency are
    float32, sin and cos of those float32 arguments are then rounded once."""
    half = dim // 2
    table = np.zeros((count, dim), np.float32)
    if half == 0 or count == 0:
        return table
    step = np.float32(np.log(10000.0) / (half - 1)) if half > 1 else np.float32(np.inf)
    freq = np.exp(np.arange(half, dtype=np.float32) * -step).astype(np.float32)
    if half == 1:
        freq = np.ones(1, np.float32)  # exp(0 * -inf) is NaN in numpy; torch gives 1 for the only frequency
    pos = np.arange(first, first + count, dtype=np.float32)[:, None]
    arg = (pos * freq[None, :]).astype(np.float32)
    table[:, :half] = np.sin(arg.astype(np.float64)).astype(np.float32)
    table[:, half:2 * half] = np.cos(arg.astype(np.float64)).astype(np.float32)
    return table


def _positions(hf: HFConfig, c: TransformerConfig, state, used: set, origin: Dict[str, str]) -> Dict[str, np.ndarray]:
    table = fairseq_sinusoidal_table(c.pad_id + 1, c.max_length, c.d_model)
    what = f"fairseq sinusoidal positions {c.pad_id + 1}..{c.pad_id + c.max_length} (computed)"
    origin["src_pos_embed.weight"] = origin["tgt_pos_embed.weight"] = what
    return {"src_pos_embed.weight": table, "tgt_pos_embed.weight": table}


M2M100 = Seq2SeqLayout(
    family="M2M100", norm_first=True, final_norm=True, embedding_norm=False, positional="learned",
    positions=_positions, output_bias=False, default_activation="relu", default_pad=1,
    default_scale_embedding=True, start_default="eos",
    ignored_tensors=("model.encoder.embed_positions", "model.decoder.embed_positions"))


@register("m2m_100")
def load(path: str, hf: HFConfig) -> Transformer:
    """A Transformer from an M2M100 or NLLB folder (M2M100ForConditionalGeneration)."""
    return load_seq2seq(path, hf, M2M100)

"""BART and mBART (``model_type`` ``"bart"``, ``"mbart"``) -> :class:`pytransformer.Transformer`.

Both: learned positions whose first two rows no position uses (position t is row
t + 2 of ``embed_positions.weight``), a LayerNorm after the embeddings
(``layernorm_embedding``), one embedding table for source, target and output, and
``final_logits_bias``. BART is post-LN; mBART (mBART-25, mBART-50) is pre-LN with a
final LayerNorm after each stack. Generation starts from ``decoder_start_token_id``
(BART: EOS); mBART-50 checkpoints name the target language with
``forced_bos_token_id`` (``generate(..., forced_bos=<language token id>)``).
"""

from __future__ import annotations

from ..model import Transformer
from . import register
from ._hf import HFConfig
from ._seq2seq import Seq2SeqLayout, learned_positions, load as load_seq2seq

BART = Seq2SeqLayout(
    family="BART", norm_first=False, final_norm=False, embedding_norm=True, positional="learned",
    positions=learned_positions(2), output_bias=True, default_activation="gelu", default_pad=1,
    default_scale_embedding=False, start_default="eos")

MBART = Seq2SeqLayout(
    family="mBART", norm_first=True, final_norm=True, embedding_norm=True, positional="learned",
    positions=learned_positions(2), output_bias=True, default_activation="gelu", default_pad=1,
    default_scale_embedding=False, start_default="bos")


@register("bart")
def load_bart(path: str, hf: HFConfig) -> Transformer:
    """A Transformer from a BART folder (BartForConditionalGeneration)."""
    return load_seq2seq(path, hf, BART)


@register("mbart")
def load_mbart(path: str, hf: HFConfig) -> Transformer:
    """A Transformer from an mBART folder (MBartForConditionalGeneration)."""
    return load_seq2seq(path, hf, MBART)

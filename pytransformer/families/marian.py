"""Marian / OPUS-MT (``model_type == "marian"``) -> :class:`pytransformer.Transformer`.

Post-LN, no final LayerNorm, no embedding LayerNorm, fixed sinusoidal positions in
Marian's layout (sines in the first half of each vector, cosines in the second:
``positional="sinusoidal_concat"``), optionally separate source and target
vocabularies (``share_encoder_decoder_embeddings``, ``decoder_vocab_size``).
"""

from __future__ import annotations

from ..model import Transformer
from . import register
from ._hf import HFConfig, unsupported
from ._seq2seq import Seq2SeqLayout, load as load_seq2seq

LAYOUT = Seq2SeqLayout(
    family="Marian", norm_first=False, final_norm=False, embedding_norm=False, positional="sinusoidal_concat",
    positions=None, output_bias=True, default_activation="gelu", default_pad=58100,
    default_scale_embedding=False, start_default="pad", separate_vocabularies=True,
    ignored_tensors=("model.encoder.embed_positions", "model.decoder.embed_positions"))


def _check(hf: HFConfig) -> None:
    if hf.flag("normalize_before", False) or hf.flag("add_final_layer_norm", False):
        raise unsupported("pre-LN Marian (normalize_before / add_final_layer_norm)", True)


@register("marian")
def load(path: str, hf: HFConfig) -> Transformer:
    """A Transformer from a Marian folder, with its generation defaults."""
    return load_seq2seq(path, hf, LAYOUT, _check)

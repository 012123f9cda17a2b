"""Pegasus (``model_type == "pegasus"``: google/pegasus-xsum, -cnn_dailymail, -large, ...)
-> :class:`pytransformer.Transformer`.

The BART layout with pre-LN and a final LayerNorm after each stack, no embedding
LayerNorm, an output bias (``final_logits_bias``) and fixed sinusoidal positions in
Marian's layout (sines in the first half of each vector, cosines in the second, no
offset: ``positional="sinusoidal_concat"``). Embeddings are scaled by sqrt(d_model)
when ``scale_embedding`` (the released checkpoints). Generation starts from
``decoder_start_token_id`` (the padding id, 0, in the released checkpoints).
"""

from __future__ import annotations

from ..model import Transformer
from . import register
from ._hf import HFConfig
from ._seq2seq import Seq2SeqLayout, load as load_seq2seq

LAYOUT = Seq2SeqLayout(
    family="Pegasus", norm_first=True, final_norm=True, embedding_norm=False, positional="sinusoidal_concat",
    positions=None, output_bias=True, default_activation="gelu", default_pad=0, default_scale_embedding=False,
    start_default="pad", ignored_tensors=("model.encoder.embed_positions", "model.decoder.embed_positions"))


@register("pegasus")
def load(path: str, hf: HFConfig) -> Transformer:
    """A Transformer from a Pegasus folder (PegasusForConditionalGeneration)."""
    return load_seq2seq(path, hf, LAYOUT)

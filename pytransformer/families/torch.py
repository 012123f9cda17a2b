"""The ``torch`` family: ``torch.nn.Transformer`` state dicts (and models built around one).

:meth:`pytransformer.Transformer.from_torch_state_dict` lands here. pytransformer's own
weight names are ``nn.Transformer``'s (``encoder.layers.{i}.self_attn.in_proj_weight``,
``...linear1.weight``, ``encoder.norm.weight``, ...), so the core is copied under its
name, with any one prefix stripped (``transformer.`` in PyTorch's translation tutorial
``Seq2SeqTransformer``, ``model.``, ...); embeddings and the output layer are found
under their usual names. The architecture comes from the caller's
:class:`pytransformer.TransformerConfig` (a state dict does not carry one). torch is
never imported: any mapping of arrays or tensors works.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..config import TransformerConfig
from ..weights import WeightsError, _to_numpy, expected_weight_shapes

__all__ = ["convert_torch_state_dict"]

# Aliases for the non-core weights, tried in order: (pytransformer name, candidates).
_ALIASES = {
    "src_embed.weight": ("src_embed.weight", "src_tok_emb.embedding.weight", "src_tok_emb.weight",
                         "src_embedding.weight", "encoder_embedding.weight", "src_emb.weight",
                         "embedding.weight", "shared.weight"),
    "tgt_embed.weight": ("tgt_embed.weight", "tgt_tok_emb.embedding.weight", "tgt_tok_emb.weight",
                         "tgt_embedding.weight", "decoder_embedding.weight", "tgt_emb.weight"),
    "generator.weight": ("generator.weight", "generator.proj.weight", "output_layer.weight", "fc_out.weight",
                         "out_proj.weight", "lm_head.weight", "output.weight"),
    "generator.bias": ("generator.bias", "generator.proj.bias", "output_layer.bias", "fc_out.bias",
                       "out_proj.bias", "lm_head.bias", "output.bias"),
}
# Buffers a state dict may carry that pytransformer recomputes (positional tables).
_IGNORABLE = re.compile(r"(^|\.)(pos_embedding|pe|positional_encoding|pos_encoding|position_ids)$|"
                        r"^positional_encoding\.")
_CORE = re.compile(r"^(encoder\.(layers\.\d+\.|norm\.)|decoder\.(layers\.\d+\.|norm\.))")


def convert_torch_state_dict(state_dict: Mapping[str, Any], config: TransformerConfig,
                             ignore: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    """Rename a PyTorch state dict to pytransformer's names (values as numpy arrays).

    Recognises an ``nn.Transformer`` at the top level or under any one prefix
    (``transformer.`` in PyTorch's translation tutorial, ``model.``, ...), the
    tutorial's ``src_tok_emb.embedding.weight`` / ``tgt_tok_emb.embedding.weight`` /
    ``generator.*``, and the usual aliases for embeddings and the output layer.
    Positional-encoding buffers are ignored (pytransformer computes its own). Names
    listed in ``ignore`` (full names, as in the state dict) are dropped. Every other
    name that is not a weight of a model with this config is listed in one
    WeightsError.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    ignore_set = set(ignore or ())
    out: Dict[str, np.ndarray] = {}
    placed = set()
    # The core: strip the prefix before "encoder."/"decoder.".
    prefixes = set()
    for name in state_dict:
        m = re.search(r"(^|\.)(encoder|decoder)\.(layers\.\d+\.|norm\.)", name)
        if m:
            prefixes.add(name[: m.start(2)])
    if len(prefixes) > 1:
        raise WeightsError([f"the state dict has Transformer weights under several prefixes: {sorted(prefixes)}"])
    prefix = prefixes.pop() if prefixes else ""
    core_names = {n for n in expected_weight_shapes(config) if _CORE.match(n)}
    for name, value in state_dict.items():
        if name in ignore_set:
            continue
        if name.startswith(prefix) and name[len(prefix):] in core_names:
            out[name[len(prefix):]] = _to_numpy(value)
            placed.add(name)
    for target, candidates in _ALIASES.items():
        for cand in candidates:
            for full in (cand, prefix + cand):
                if full in state_dict and full not in placed and full not in ignore_set:
                    out[target] = _to_numpy(state_dict[full])
                    placed.add(full)
                    break
            if target in out:
                break
    # Tied / shared layouts: drop duplicates the config says are the same table.
    if config.share_embeddings and "tgt_embed.weight" in out:
        if np.array_equal(out["tgt_embed.weight"], out.get("src_embed.weight")):
            del out["tgt_embed.weight"]
    if config.tie_output and "generator.weight" in out:
        table = out.get("src_embed.weight") if config.share_embeddings else out.get("tgt_embed.weight")
        if table is not None and np.array_equal(out["generator.weight"], table):
            del out["generator.weight"]
    unplaced = [n for n in state_dict if n not in placed and n not in ignore_set and not _IGNORABLE.search(n)]
    if unplaced:
        raise WeightsError([f"could not place '{n}'" for n in unplaced],
                           "hint: pass ignore=[...] to drop names that are not part of the Transformer")
    return out

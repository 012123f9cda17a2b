"""Weight names, shapes and checks; conversion from PyTorch state dicts.

pytransformer uses ``torch.nn.Transformer``'s own state_dict names for the core
(``encoder.layers.{i}.self_attn.in_proj_weight``, ``...linear1.weight``,
``...norm1.weight``, ``encoder.norm.weight``, ``decoder.layers.{i}.multihead_attn...``)
plus ``src_embed.weight``, ``tgt_embed.weight``, ``generator.weight`` and
``generator.bias``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .config import TransformerConfig

__all__ = ["WeightsError", "expected_weight_shapes", "expected_encoder_weight_shapes", "check_weights",
           "convert_torch_state_dict"]


class WeightsError(ValueError):
    """Weights that do not fit the config: lists every offending name."""

    def __init__(self, problems: List[str], hint: str = ""):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the weights:\n{lines}" + (f"\n{hint}" if hint else ""))


def _attention_shapes(prefix: str, E: int) -> Dict[str, Tuple[int, ...]]:
    return {
        prefix + "in_proj_weight": (3 * E, E),
        prefix + "in_proj_bias": (3 * E,),
        prefix + "out_proj.weight": (E, E),
        prefix + "out_proj.bias": (E,),
    }


def _ffn_norm_shapes(prefix: str, E: int, F: int, norms: int) -> Dict[str, Tuple[int, ...]]:
    shapes = {
        prefix + "linear1.weight": (F, E),
        prefix + "linear1.bias": (F,),
        prefix + "linear2.weight": (E, F),
        prefix + "linear2.bias": (E,),
    }
    for n in range(1, norms + 1):
        shapes[f"{prefix}norm{n}.weight"] = (E,)
        shapes[f"{prefix}norm{n}.bias"] = (E,)
    return shapes


def expected_weight_shapes(config: TransformerConfig) -> Dict[str, Tuple[int, ...]]:
    """Every weight a model with this config needs, name -> shape, in a stable order."""
    return _shapes(config, encoder_only=False)


def expected_encoder_weight_shapes(config: TransformerConfig) -> Dict[str, Tuple[int, ...]]:
    """The weights of an encoder-only model (:class:`pytransformer.EncoderModel`)."""
    return _shapes(config, encoder_only=True)


def _shapes(config: TransformerConfig, encoder_only: bool) -> Dict[str, Tuple[int, ...]]:
    E, F = config.d_model, config.dim_feedforward
    shapes: Dict[str, Tuple[int, ...]] = {"src_embed.weight": (config.src_vocab_size, E)}
    if config.positional == "learned":
        shapes["src_pos_embed.weight"] = (config.max_length, E)
    if config.type_vocab_size > 0:
        shapes["src_type_embed.weight"] = (config.type_vocab_size, E)
    if config.embedding_norm:
        shapes["src_embed_norm.weight"] = (E,)
        shapes["src_embed_norm.bias"] = (E,)
    for i in range(config.num_encoder_layers):
        p = f"encoder.layers.{i}."
        shapes.update(_attention_shapes(p + "self_attn.", E))
        shapes.update(_ffn_norm_shapes(p, E, F, 2))
    if config.final_norm:
        shapes["encoder.norm.weight"] = (E,)
        shapes["encoder.norm.bias"] = (E,)
    if encoder_only:
        return shapes
    if not config.share_embeddings:
        shapes["tgt_embed.weight"] = (config.tgt_vocab_size, E)
    if config.positional == "learned":
        shapes["tgt_pos_embed.weight"] = (config.max_length, E)
    if config.embedding_norm:
        shapes["tgt_embed_norm.weight"] = (E,)
        shapes["tgt_embed_norm.bias"] = (E,)
    for i in range(config.num_decoder_layers):
        p = f"decoder.layers.{i}."
        shapes.update(_attention_shapes(p + "self_attn.", E))
        shapes.update(_attention_shapes(p + "multihead_attn.", E))
        shapes.update(_ffn_norm_shapes(p, E, F, 3))
    if config.final_norm:
        shapes["decoder.norm.weight"] = (E,)
        shapes["decoder.norm.bias"] = (E,)
    if not config.tie_output:
        shapes["generator.weight"] = (config.tgt_vocab_size, E)
    if config.output_bias:
        shapes["generator.bias"] = (config.tgt_vocab_size,)
    return shapes


def _to_numpy(value: Any) -> Any:
    """numpy view of a torch tensor (duck-typed: torch is never imported here)."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        t = value.detach().cpu()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return value


def check_weights(config: TransformerConfig, weights: Mapping[str, Any],
                  expected: Optional[Dict[str, Tuple[int, ...]]] = None) -> Dict[str, np.ndarray]:
    """Validate ``weights`` against ``config``; return float32 C-contiguous arrays.

    Floating-point arrays of other precisions are converted to float32. Raises
    :class:`WeightsError` listing every missing, unexpected, misshaped, non-float
    or non-finite weight at once.
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
        if value.dtype.kind != "f":
            problems.append(f"'{name}' has dtype {value.dtype}, expected a floating-point array (float32)")
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
        if name not in expected:
            problems.append(f"unexpected '{name}'" + (
                f" with shape {tuple(np.shape(_to_numpy(weights[name])))}" if hasattr(weights[name], "shape") else ""))
    if problems:
        raise WeightsError(problems, _config_hint(config, problems))
    return out


def _config_hint(config: TransformerConfig, problems: List[str]) -> str:
    if any("unexpected 'generator.weight'" in p for p in problems) and config.tie_output:
        return "hint: the config has tie_output=True but the weights carry generator.weight"
    if any("missing 'tgt_embed.weight'" in p for p in problems) and not config.share_embeddings:
        return "hint: set share_embeddings=True if source and target use one table"
    return ""


# --- PyTorch state dicts ----------------------------------------------------------

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

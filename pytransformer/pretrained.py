"""Load Hugging Face model folders: ``pt.from_pretrained(path)``.

A folder with ``config.json`` and ``model.safetensors`` (or sharded safetensors, or
``pytorch_model.bin`` when PyTorch is installed) becomes the model its
``model_type`` names, through the family modules of :mod:`pytransformer.families`:

* ``bert`` -> :class:`pytransformer.EncoderModel` (BERT, MiniLM, ...), with the
  folder's ``tokenizer.json`` and sentence-transformers pooling (``modules.json``,
  ``1_Pooling/config.json``) attached when present;
* ``marian`` (OPUS-MT), ``bart``, ``mbart`` (mBART-25/50) and ``m2m_100`` (M2M100,
  NLLB-200) -> :class:`pytransformer.Transformer`, with ``generation_defaults``
  taken from the checkpoint and ``tokenizer`` (the folder's ``tokenizer.json`` as a
  ``tokenizers.Tokenizer``, or None).

Everything is configured from ``config.json``; an unknown ``model_type`` or an
option pytransformer does not implement raises ``ValueError`` naming it, never a
silently different model.
"""

from __future__ import annotations

import os

from .families import REGISTRY
from .families._hf import LOAD_OPTIONS, HFConfig, load_state_dict, read_json
from .weights import check_compute_type

__all__ = ["from_pretrained", "load_state_dict"]


def from_pretrained(path: "os.PathLike[str] | str", *, compute_type: str = "float32"):
    """Build a pytransformer model from a Hugging Face model folder (see the module doc).

    ``compute_type``: ``"float32"``, or ``"int8"`` (the linear layers' weights and the
    token embedding tables quantized once at load, see :class:`pytransformer.Transformer`)."""
    compute_type = check_compute_type(compute_type)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"from_pretrained: {path!r} is not a directory (expected a model folder with "
                                "config.json and model.safetensors)")
    cfg_path = os.path.join(path, "config.json")
    from .families import _ctranslate2
    if _ctranslate2.is_ct2_folder(path) and not os.path.isfile(os.path.join(path, "model.safetensors")):
        return _ctranslate2.load(path, compute_type)
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"from_pretrained: no config.json in {path!r}")
    hf = read_json(cfg_path)
    model_type = hf.get("model_type")
    if not isinstance(model_type, str) or model_type not in REGISTRY:
        raise ValueError(f"from_pretrained: model_type {model_type!r} is not supported (supported: "
                         f"{sorted(REGISTRY)})")
    token = LOAD_OPTIONS.set({"compute_type": compute_type})
    try:
        return REGISTRY[model_type](path, HFConfig(hf, cfg_path))
    finally:
        LOAD_OPTIONS.reset(token)

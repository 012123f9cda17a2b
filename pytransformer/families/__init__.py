"""Checkpoint families: one module per Hugging Face ``model_type``.

Each module maps a checkpoint's ``config.json`` to a :class:`pytransformer.TransformerConfig`
(the model's spec) and its tensor names to pytransformer's, and registers its loader
with :func:`register`; :func:`pytransformer.from_pretrained` dispatches on
``model_type`` through :data:`REGISTRY`.

=============  ===============================  ===========================
model_type     module                           builds
=============  ===============================  ===========================
``bert``       :mod:`.bert`                     EncoderModel
``marian``     :mod:`.marian`                   Transformer
``bart``       :mod:`.bart`                     Transformer
``mbart``      :mod:`.bart`                     Transformer
``m2m_100``    :mod:`.m2m100` (M2M100, NLLB)    Transformer
(state dict)   :mod:`.torch` (nn.Transformer)   Transformer
=============  ===============================  ===========================

Encoder-only families build an :class:`pytransformer.EncoderModel` from an
:class:`pytransformer.EncoderConfig` (no target side); encoder-decoder families build a
:class:`pytransformer.Transformer` from a :class:`pytransformer.TransformerConfig`.

``torch.nn.Transformer`` state dicts (no ``config.json``, so no ``model_type``) are the
:mod:`.torch` family, loaded with :meth:`pytransformer.Transformer.from_torch_state_dict`
and the caller's config.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

#: model_type -> loader(path, config) -> model
REGISTRY: Dict[str, Callable[..., Any]] = {}


def register(*model_types: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function loads folders whose config.json has one of these model_types."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for t in model_types:
            if t in REGISTRY:
                raise RuntimeError(f"model_type {t!r} is registered twice")
            REGISTRY[t] = fn
        return fn

    return deco


from . import bart, bert, m2m100, marian  # noqa: E402,F401  (they register themselves)

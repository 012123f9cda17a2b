"""Checkpoint families: one module per Hugging Face ``model_type``.

Each module (found by :func:`_import_families`: a new family is one new file) maps a
checkpoint's ``config.json`` to a :class:`pytransformer.TransformerConfig`
(or :class:`pytransformer.EncoderConfig`: the model's spec) and its tensor names to pytransformer's, and registers its loader
with :func:`register`; :func:`pytransformer.from_pretrained` dispatches on
``model_type`` through :data:`REGISTRY`.

The families and the layouts they map are listed in README.md ("Hugging Face
checkpoints"); ``sorted(REGISTRY)`` is what this install supports. ``torch.nn.Transformer``
state dicts (no ``config.json``, so no ``model_type``) are the :mod:`.torch` family,
loaded with :meth:`pytransformer.Transformer.from_torch_state_dict` and the caller's
config.

Encoder-only families build an :class:`pytransformer.EncoderModel` from an
:class:`pytransformer.EncoderConfig` (no target side); encoder-decoder families build a
:class:`pytransformer.Transformer` from a :class:`pytransformer.TransformerConfig`.
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


def _import_families() -> None:
    """Import every family module of this package (each registers itself): adding a
    family is adding its file, nothing else to edit. Modules starting with "_" are
    shared helpers; ``torch`` has no model_type (no config.json) and is imported on use."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name != "torch":
            importlib.import_module(f"{__name__}.{info.name}")


_import_families()

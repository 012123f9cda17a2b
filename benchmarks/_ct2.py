"""CTranslate2: the functions that run in the worker process, and model conversion.

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import logging
import warnings

if __package__:  # imported as benchmarks._common (python -m)
    from ._worker import Worker
else:  # benchmarks/ is on sys.path
    from _worker import Worker

# -- CTranslate2 (functions that run in the worker) --------------------------------------


def ct2_load(kind: str, model_dir: str, threads: int, compute_type: str = "float32"):
    """ctranslate2.<kind> (Translator, Encoder) on the CPU, intra_threads = threads,
    compute_type "float32" or "int8" (a model converted with quantization="int8")."""
    import ctranslate2

    return getattr(ctranslate2, kind)(model_dir, device="cpu", compute_type=compute_type, intra_threads=threads,
                                      inter_threads=1)


def _ct2_load_logged(kind: str, model_dir: str):
    import ctranslate2

    ctranslate2.set_log_level(logging.INFO)
    try:
        ct2_load(kind, model_dir, 1)
    finally:
        ctranslate2.set_log_level(logging.WARNING)


def ct2_backend(worker: Worker, kind: str, model_dir: str) -> str:
    """CTranslate2's log of its ISA and SGEMM backend, from a model load in the worker."""
    keep = []
    for line in worker.stderr_of(_ct2_load_logged, kind, model_dir).splitlines():
        msg = line.split("] ")[-1].strip().lstrip("- ").strip()
        if msg.startswith(("Selected ISA", "Use Intel MKL", "SGEMM backend")):
            keep.append(msg)
    return ", ".join(keep)


def ct2_convert(model_dir: str, out_dir: str, quantization: str | None = None) -> None:
    """The converter behind the ct2-transformers-converter command line: float32, or
    quantization="int8" (its --quantization int8: int8 weights with a float32 scale per
    output row)."""
    from ctranslate2.converters import TransformersConverter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TransformersConverter(model_dir).convert(out_dir, quantization=quantization, force=True)


def folder_bytes(path: str) -> int:
    """Bytes of the files under path (a model file or folder)."""
    import os

    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)

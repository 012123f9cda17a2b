"""ONNX Runtime: export a torch module, quantize it (dynamic int8), open a session.

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level (torch and onnxruntime are imported by the calls)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings


def onnx_export(torch, module, example_args, path: str, input_names, output_names) -> None:
    """torch.onnx.export(dynamo=True) with dimensions 0 (batch) and 1 (length) of every
    input dynamic; the exporter's chatter silenced. Needs onnx and onnxscript."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    batch, length = torch.export.Dim("batch", max=1024), torch.export.Dim("length", max=512)
    dims = tuple({0: batch, 1: length} for _ in example_args)
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(example_args), path, dynamo=True, input_names=list(input_names),
                              output_names=list(output_names), dynamic_shapes=dims)
    finally:
        logging.disable(logging.NOTSET)


def onnx_quantize(src: str, dst: str) -> None:
    """onnxruntime.quantization.quantize_dynamic: int8 weights per output channel
    (QInt8), activations quantized at run time (ONNX Runtime's dynamic int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)


def ort_session(onnxruntime, path: str, threads: int):
    """CPUExecutionProvider, default graph optimisations, intra_op = threads, inter_op 1."""
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])

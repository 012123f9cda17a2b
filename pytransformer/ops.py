"""Functional ops: float32 numpy arrays in, new float32 numpy arrays out.

Every op accepts float32 arrays of any memory layout: C-contiguous native-order
input is read in place; anything else (a transposed or sliced view, big-endian
data) is first copied into a contiguous array. Other dtypes raise ``TypeError``
(convert with ``x.astype(numpy.float32)``); wrong ranks or mismatched shapes raise
``ValueError`` naming the argument and the shape expected. NaN and inf propagate
as in numpy. The GIL is released while a kernel runs, so ops may be called from
several Python threads at once.

============================  ==================================================
``linear(x, weight, ...)``    ``activation(x @ weight.T + bias)``, torch layout
``softmax(x)``                over the last axis
``layer_norm(x, w, b, ...)``  LayerNorm of ``x + residual`` over the last axis
``relu``, ``gelu``, ``silu``  element-wise (gelu: exact erf form; silu: x sigmoid(x))
``attention(q, k, v, ...)``   scaled dot-product attention, [B, H, L, D]
``multi_head_attention(...)`` ``nn.MultiheadAttention`` weights, batch-first
``positional_encoding(L, d)`` the paper's sinusoids
``quantize_weight(w)``        per-row symmetric int8 of a weight: (q, scale)
``quantize_rows(x)``          the run-time int8 of activations: (q, scale)
``linear_int8(x, q, scale)``  the int8 linear layer (float32 in and out)
``int8_matmul(xq, wq)``       its exact int32 sums
============================  ==================================================

The int8 ops take ``kernel=`` (a name from ``runtime_info()["int8_available"]``;
default: the one that goes with the active kernel set, ``runtime_info()["int8_kernel"]``).
"""

from ._core.ops import (  # noqa: F401  (re-exported; documented in _core.pyi)
    attention,
    gelu,
    int8_matmul,
    layer_norm,
    linear,
    linear_int8,
    multi_head_attention,
    positional_encoding,
    quantize_rows,
    quantize_weight,
    relu,
    silu,
    softmax,
)

__all__ = [
    "linear",
    "softmax",
    "layer_norm",
    "relu",
    "gelu",
    "silu",
    "attention",
    "multi_head_attention",
    "positional_encoding",
    "quantize_weight",
    "quantize_rows",
    "linear_int8",
    "int8_matmul",
]

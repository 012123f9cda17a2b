"""asv benchmarks: every op of pytransformer.ops at Transformer-base shapes.

One class per op. Every class is parameterised by shape and by thread count
(1 and 2, set with ``pt.set_num_threads`` in ``setup``); the inputs are float32,
C-contiguous and made once per parameter set in ``setup``, so only the op is timed.
For a GEMM, GFLOP/s = 2*M*K*N / time; ``benchmarks/compare_gemm.py`` prints that
against numpy (OpenBLAS) and PyTorch side by side.
"""

import numpy as np

import pytransformer as pt

THREADS = [1, 2]
D_MODEL = 512
NUM_HEADS = 8


def _randn(rng, shape, scale=1.0):
    x = rng.standard_normal(shape, dtype=np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    return x


class _Op:
    # The (16, 512, 32000) GEMM and the biggest attention cases need a few seconds of
    # calls per sample at one thread; asv's default 60 s per benchmark is too tight.
    timeout = 180

    def _set_threads(self, threads):
        pt.set_num_threads(threads)
        self.rng = np.random.default_rng(0)


# -- GEMM ---------------------------------------------------------------------


class Linear(_Op):
    """linear(x[M,K], weight[N,K], bias[N], activation): nn.Linear's layout.

    (128|1024, 512, 512): attention projections; (128, 512, 2048) / (128, 2048, 512):
    the FFN; M=1: one decode step (a GEMV); (16, 512, 32000): the output layer.
    """

    params = (
        [
            (128, 512, 512),
            (128, 512, 2048),
            (128, 2048, 512),
            (1024, 512, 512),
            (1, 512, 512),
            (1, 512, 2048),
            (16, 512, 32000),
        ],
        ["none", "bias", "bias+relu", "bias+gelu"],
        THREADS,
    )
    param_names = ["M,K,N", "epilogue", "threads"]

    def setup(self, mkn, epilogue, threads):
        self._set_threads(threads)
        m, k, n = mkn
        self.x = _randn(self.rng, (m, k))
        self.w = _randn(self.rng, (n, k), scale=k**-0.5)
        self.b = None if epilogue == "none" else _randn(self.rng, (n,))
        self.act = epilogue.split("+")[1] if "+" in epilogue else None

    def time_linear(self, mkn, epilogue, threads):
        pt.ops.linear(self.x, self.w, self.b, self.act)


class LinearInt8(_Op):
    """linear_int8(x[M,K], weight int8 [N,K], weight_scale[N], bias[N]): the int8
    linear layer of compute_type="int8" models (x quantized per row inside the call,
    int32 sums, dequantize + bias in the write-back), at the shapes of Linear. The
    weight is packed inside each call (as pt.ops.linear does), so this is an upper
    bound of what a model's pre-packed layers cost. Kernel: runtime_info()['int8_kernel']."""

    params = ([(128, 512, 512), (128, 512, 2048), (128, 2048, 512), (1024, 512, 512), (1, 512, 2048),
               (16, 512, 2048), (16, 512, 32000)], THREADS)
    param_names = ["M,K,N", "threads"]

    def setup(self, mkn, threads):
        self._set_threads(threads)
        m, k, n = mkn
        self.x = _randn(self.rng, (m, k))
        self.q, self.s = pt.ops.quantize_weight(_randn(self.rng, (n, k), scale=k**-0.5))
        self.b = _randn(self.rng, (n,))

    def time_linear_int8(self, mkn, threads):
        pt.ops.linear_int8(self.x, self.q, self.s, self.b)


class QuantizeRows(_Op):
    """quantize_rows(x[rows, 512]): the run-time quantization of activations."""

    params = ([1, 16, 128, 2048], THREADS)
    param_names = ["rows", "threads"]

    def setup(self, rows, threads):
        self._set_threads(threads)
        self.x = _randn(self.rng, (rows, D_MODEL))

    def time_quantize_rows(self, rows, threads):
        pt.ops.quantize_rows(self.x)


class Int8Matmul(_Op):
    """int8_matmul(x int8 [M,K], weight int8 [N,K]): the exact int32 product alone."""

    params = ([(16, 512, 2048), (128, 512, 2048), (1024, 512, 512)], THREADS)
    param_names = ["M,K,N", "threads"]

    def setup(self, mkn, threads):
        self._set_threads(threads)
        m, k, n = mkn
        self.x = self.rng.integers(-127, 128, (m, k), dtype=np.int8)
        self.w = self.rng.integers(-127, 128, (n, k), dtype=np.int8)

    def time_int8_matmul(self, mkn, threads):
        pt.ops.int8_matmul(self.x, self.w)


# -- row-wise ops ---------------------------------------------------------------

ROWS = [1, 128, 2048, 16384]


class Softmax(_Op):
    """softmax over the last axis of [rows, 512]."""

    params = (ROWS, THREADS)
    param_names = ["rows", "threads"]

    def setup(self, rows, threads):
        self._set_threads(threads)
        self.x = _randn(self.rng, (rows, D_MODEL), scale=4.0)

    def time_softmax(self, rows, threads):
        pt.ops.softmax(self.x)


class LayerNorm(_Op):
    """layer_norm of [rows, 512], with and without the fused residual add."""

    params = (ROWS, [False, True], THREADS)
    param_names = ["rows", "residual", "threads"]

    def setup(self, rows, residual, threads):
        self._set_threads(threads)
        self.x = _randn(self.rng, (rows, D_MODEL))
        self.r = _randn(self.rng, (rows, D_MODEL)) if residual else None
        self.w = 1.0 + _randn(self.rng, (D_MODEL,), scale=0.1)
        self.b = _randn(self.rng, (D_MODEL,), scale=0.1)

    def time_layer_norm(self, rows, residual, threads):
        pt.ops.layer_norm(self.x, self.w, self.b, 1e-5, self.r)


# -- element-wise ops -----------------------------------------------------------


class Activation(_Op):
    """relu and gelu (exact erf form) on the FFN hidden activations [tokens, 2048]."""

    params = (["relu", "gelu"], [(1, 2048), (128, 2048), (1024, 2048)], THREADS)
    param_names = ["op", "shape", "threads"]

    def setup(self, op, shape, threads):
        self._set_threads(threads)
        self.x = _randn(self.rng, shape, scale=3.0)
        self.fn = getattr(pt.ops, op)

    def time_activation(self, op, shape, threads):
        self.fn(self.x)


# -- attention -------------------------------------------------------------------


class Attention(_Op):
    """attention(q, k, v) on [B, H, L, 64] (self-attention: Lq = Lk = L), plain and causal."""

    params = (
        [(1, 8, 32, 64), (1, 8, 128, 64), (16, 8, 32, 64), (16, 8, 128, 64)],
        [False, True],
        THREADS,
    )
    param_names = ["B,H,L,D", "causal", "threads"]

    def setup(self, bhld, causal, threads):
        self._set_threads(threads)
        self.q = _randn(self.rng, bhld)
        self.k = _randn(self.rng, bhld)
        self.v = _randn(self.rng, bhld)

    def time_attention(self, bhld, causal, threads):
        pt.ops.attention(self.q, self.k, self.v, causal=causal)


class MultiHeadAttention(_Op):
    """multi_head_attention on [B, L, 512], 8 heads, nn.MultiheadAttention weights.

    self: query is key is value (one fused QKV GEMM); self-causal: the decoder's
    masked self-attention; cross: key = value = a separate memory of the same length
    (Q GEMM + fused KV GEMM), as in the decoder's encoder-decoder attention.
    """

    params = ([(1, 32), (1, 128), (16, 32), (16, 128)], ["self", "self-causal", "cross"], THREADS)
    param_names = ["B,L", "kind", "threads"]

    def setup(self, bl, kind, threads):
        self._set_threads(threads)
        b, length = bl
        e = D_MODEL
        self.query = _randn(self.rng, (b, length, e))
        self.memory = self.query if kind.startswith("self") else _randn(self.rng, (b, length, e))
        self.causal = kind == "self-causal"
        self.in_w = _randn(self.rng, (3 * e, e), scale=e**-0.5)
        self.in_b = _randn(self.rng, (3 * e,), scale=0.1)
        self.out_w = _randn(self.rng, (e, e), scale=e**-0.5)
        self.out_b = _randn(self.rng, (e,), scale=0.1)

    def time_multi_head_attention(self, bl, kind, threads):
        pt.ops.multi_head_attention(
            self.query, self.memory, self.memory, self.in_w, self.in_b, self.out_w, self.out_b,
            NUM_HEADS, causal=self.causal,
        )


# -- positions -------------------------------------------------------------------


class PositionalEncoding(_Op):
    """positional_encoding(length, 512): the paper's sinusoid table."""

    params = ([128, 1024, 4096], THREADS)
    param_names = ["length", "threads"]

    def setup(self, length, threads):
        self._set_threads(threads)

    def time_positional_encoding(self, length, threads):
        pt.ops.positional_encoding(length, D_MODEL)

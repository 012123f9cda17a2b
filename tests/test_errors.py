"""Bad inputs raise the documented exception naming the argument; NaN and inf
propagate as in numpy and never crash.

Contract (pytransformer.ops): a non-ndarray or an array of a dtype other than
float32 raises TypeError naming the argument; a wrong rank or mismatched shape
raises ValueError naming the argument and the expected shape.
"""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
import reference as ref
from helpers import randn
from pytransformer import _core

F32 = np.float32


def f32(*shape):
    return np.ones(shape, dtype=F32)


# ---------------------------------------------------------------------------
# Valid calls, one per op, as dicts of keyword arguments; each error test replaces
# one argument.
# ---------------------------------------------------------------------------

E, HEADS = 8, 2


def valid_calls():
    return {
        "linear": (pt.ops.linear, dict(x=f32(3, 4), weight=f32(5, 4), bias=f32(5))),
        "softmax": (pt.ops.softmax, dict(x=f32(3, 4))),
        "layer_norm": (pt.ops.layer_norm, dict(x=f32(3, 4), weight=f32(4), bias=f32(4), residual=f32(3, 4))),
        "relu": (pt.ops.relu, dict(x=f32(3, 4))),
        "gelu": (pt.ops.gelu, dict(x=f32(3, 4))),
        "attention": (pt.ops.attention, dict(q=f32(2, 3, 5, 4), k=f32(2, 3, 6, 4), v=f32(2, 3, 6, 7),
                                             key_padding_mask=np.zeros((2, 6), dtype=bool))),
        "multi_head_attention": (pt.ops.multi_head_attention, dict(
            query=f32(2, 5, E), key=f32(2, 6, E), value=f32(2, 6, E), in_proj_weight=f32(3 * E, E),
            in_proj_bias=f32(3 * E), out_proj_weight=f32(E, E), out_proj_bias=f32(E), num_heads=HEADS,
            key_padding_mask=np.zeros((2, 6), dtype=bool))),
    }


ARRAY_ARGS = [(op, name) for op, (_, kw) in valid_calls().items() for name, value in kw.items()
              if isinstance(value, np.ndarray) and value.dtype == F32]
REQUIRED = {("linear", "x"), ("linear", "weight"), ("softmax", "x"), ("layer_norm", "x"), ("relu", "x"),
            ("gelu", "x"), ("attention", "q"), ("attention", "k"), ("attention", "v"),
            ("multi_head_attention", "query"), ("multi_head_attention", "key"),
            ("multi_head_attention", "value"), ("multi_head_attention", "in_proj_weight"),
            ("multi_head_attention", "out_proj_weight")}


def call_with(op, **changes):
    fn, kw = valid_calls()[op]
    kw.update(changes)
    return fn(**kw)


REFERENCES = {"linear": ref.linear, "softmax": ref.softmax, "layer_norm": ref.layer_norm, "relu": ref.relu,
              "gelu": ref.gelu, "attention": ref.attention, "multi_head_attention": ref.multi_head_attention}


@pytest.mark.parametrize("op", sorted(REFERENCES))
def test_valid_calls_pass(op, rng):
    """The valid call of each op (the base of every error test below) succeeds and
    matches the numpy reference, with random values in place of the ones."""
    fn, kw = valid_calls()[op]
    kw = {k: (rng.standard_normal(v.shape).astype(F32) if isinstance(v, np.ndarray) and v.dtype == F32 else v)
          for k, v in kw.items()}
    got = fn(**kw)
    want = REFERENCES[op](**kw)
    assert got.dtype == F32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


BAD_DTYPES = [np.float64, np.int32, np.float16, np.bool_, np.complex64, np.uint32, object]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op,name", ARRAY_ARGS)
def test_wrong_dtype_is_type_error(op, name, dtype):
    good = valid_calls()[op][1][name]
    bad = good.astype(dtype)
    with pytest.raises(TypeError, match=rf"{op}: {name} "):
        call_with(op, **{name: bad})


@pytest.mark.parametrize("op,name", ARRAY_ARGS)
def test_non_array_is_type_error(op, name):
    good = valid_calls()[op][1][name]
    for bad in [good.tolist(), 1.5, "x", good[(0,) * good.ndim]]:  # list, float, str, numpy scalar
        with pytest.raises(TypeError, match=rf"{op}: {name} "):
            call_with(op, **{name: bad})


def misaligned(a):
    """A copy of `a` whose data starts one byte past an aligned address (a C-contiguous,
    native-order array that numpy flags as not aligned)."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


@pytest.mark.parametrize("op,name", ARRAY_ARGS)
def test_misaligned_array_gives_the_aligned_result(op, name, rng):
    # A view at an odd byte offset must not reach the kernels as a misaligned float*
    # (undefined behaviour; UBSan in .ci/sanitize.sh reports it): it is copied, and
    # the result is bitwise that of the same values aligned.
    fn, kw = valid_calls()[op]
    kw = {k: (rng.standard_normal(v.shape).astype(F32) if isinstance(v, np.ndarray) and v.dtype == F32 else v)
          for k, v in kw.items()}
    want = fn(**kw)
    got = fn(**{**kw, name: misaligned(kw[name])})
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op,name", sorted(REQUIRED))
def test_none_for_required_array_is_type_error(op, name):
    with pytest.raises(TypeError, match=rf"{op}: {name} "):
        call_with(op, **{name: None})


@pytest.mark.parametrize("op,name", sorted(set(ARRAY_ARGS) - REQUIRED))
def test_none_for_optional_array_is_accepted(op, name):
    out = call_with(op, **{name: None})
    assert out.dtype == F32


@pytest.mark.parametrize("op", ["attention", "multi_head_attention"])
@pytest.mark.parametrize("bad", [np.zeros((2, 6), F32), np.zeros((2, 6), np.uint8), np.zeros((2, 6), np.int64),
                                 [[False] * 6] * 2, "mask"], ids=["float32", "uint8", "int64", "list", "str"])
def test_mask_not_bool_array_is_type_error(op, bad):
    # A mask of another dtype is a dtype error like any other: TypeError.
    with pytest.raises(TypeError, match=rf"{op}: key_padding_mask "):
        call_with(op, key_padding_mask=bad)


# ---------------------------------------------------------------------------
# Ranks and shapes
# ---------------------------------------------------------------------------

SHAPE_ERRORS = [
    # linear
    ("linear", "x", dict(x=np.array(1.0, F32))),
    ("linear", "weight", dict(weight=f32(5, 3))),  # K mismatch
    ("linear", "weight", dict(weight=f32(5))),
    ("linear", "weight", dict(weight=f32(1, 5, 4))),
    ("linear", "bias", dict(bias=f32(4))),
    ("linear", "bias", dict(bias=f32(6))),
    ("linear", "bias", dict(bias=f32(1, 5))),
    ("linear", "bias", dict(bias=np.array(1.0, F32))),
    # softmax
    ("softmax", "x", dict(x=np.array(1.0, F32))),
    # layer_norm
    ("layer_norm", "x", dict(x=np.array(1.0, F32), weight=None, bias=None, residual=None)),
    ("layer_norm", "weight", dict(weight=f32(3))),
    ("layer_norm", "weight", dict(weight=f32(5))),
    ("layer_norm", "weight", dict(weight=f32(3, 4))),
    ("layer_norm", "bias", dict(bias=f32(3))),
    ("layer_norm", "bias", dict(bias=f32(1, 4))),
    ("layer_norm", "residual", dict(residual=f32(3, 5))),
    ("layer_norm", "residual", dict(residual=f32(1, 4))),  # broadcastable is not enough
    ("layer_norm", "residual", dict(residual=f32(4))),
    ("layer_norm", "residual", dict(residual=f32(1, 3, 4))),
    # attention
    ("attention", "q", dict(q=f32(3, 5, 4))),
    ("attention", "q", dict(q=f32(1, 2, 3, 5, 4))),
    ("attention", "k", dict(k=f32(2, 3, 6))),
    ("attention", "k", dict(k=f32(1, 3, 6, 4))),  # batch
    ("attention", "k", dict(k=f32(2, 2, 6, 4))),  # heads
    ("attention", "k", dict(k=f32(2, 3, 6, 5))),  # head size
    ("attention", "v", dict(v=f32(2, 3, 7, 7))),  # key length
    ("attention", "v", dict(v=f32(1, 3, 6, 7))),
    ("attention", "v", dict(v=f32(2, 1, 6, 7))),
    ("attention", "v", dict(v=f32(2, 3, 6))),
    ("attention", "key_padding_mask", dict(key_padding_mask=np.zeros((2, 5), bool))),  # Lq, not Lk
    ("attention", "key_padding_mask", dict(key_padding_mask=np.zeros((1, 6), bool))),
    ("attention", "key_padding_mask", dict(key_padding_mask=np.zeros((6,), bool))),
    ("attention", "key_padding_mask", dict(key_padding_mask=np.zeros((2, 1, 6), bool))),
    ("attention", "key_padding_mask", dict(key_padding_mask=np.zeros((2, 3, 5, 6), bool))),
    # multi_head_attention
    ("multi_head_attention", "query", dict(query=f32(5, E))),
    ("multi_head_attention", "key", dict(key=f32(2, 6, E + 1))),
    ("multi_head_attention", "key", dict(key=f32(3, 6, E))),
    ("multi_head_attention", "key", dict(key=f32(6, E))),
    ("multi_head_attention", "value", dict(value=f32(2, 7, E))),
    ("multi_head_attention", "value", dict(value=f32(2, 6, E + 2))),
    ("multi_head_attention", "value", dict(value=f32(1, 6, E))),
    ("multi_head_attention", "in_proj_weight", dict(in_proj_weight=f32(E, E))),
    ("multi_head_attention", "in_proj_weight", dict(in_proj_weight=f32(3 * E, E + 1))),
    ("multi_head_attention", "in_proj_weight", dict(in_proj_weight=f32(3 * E * E))),
    ("multi_head_attention", "in_proj_bias", dict(in_proj_bias=f32(E))),
    ("multi_head_attention", "in_proj_bias", dict(in_proj_bias=f32(3, E))),
    ("multi_head_attention", "out_proj_weight", dict(out_proj_weight=f32(E, 3 * E))),
    ("multi_head_attention", "out_proj_weight", dict(out_proj_weight=f32(E))),
    ("multi_head_attention", "out_proj_bias", dict(out_proj_bias=f32(3 * E))),
    ("multi_head_attention", "key_padding_mask", dict(key_padding_mask=np.zeros((2, 5), bool))),  # Lq
    ("multi_head_attention", "key_padding_mask", dict(key_padding_mask=np.zeros((1, 6), bool))),
]


@pytest.mark.parametrize("op,name,changes", SHAPE_ERRORS,
                         ids=[f"{op}-{name}-{i}" for i, (op, name, _) in enumerate(SHAPE_ERRORS)])
def test_shape_error_is_value_error(op, name, changes):
    with pytest.raises(ValueError, match=rf"{op}: {name} must have") as info:
        call_with(op, **changes)
    # The message states what was expected and what was given.
    msg = str(info.value)
    assert "got" in msg and ("shape" in msg or "dimension" in msg)


def test_shape_error_states_expected_shape():
    with pytest.raises(ValueError, match=r"weight must have shape \[out_features, in_features\] = \[\*, 4\]"):
        call_with("linear", weight=f32(5, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \[out_features\] = \[5\].*got \(4,\)"):
        call_with("linear", bias=f32(4))
    with pytest.raises(ValueError, match=r"k must have shape \[2, 3, Lk, 4\].*got \(2, 3, 6, 5\)"):
        call_with("attention", k=f32(2, 3, 6, 5))
    with pytest.raises(ValueError, match=r"residual must have shape \(3, 4\)"):
        call_with("layer_norm", residual=f32(1, 4))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \[2, 6\]"):
        call_with("attention", key_padding_mask=np.zeros((2, 5), bool))


# ---------------------------------------------------------------------------
# Scalars and options
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "RELU", "Gelu", "", "gelu_tanh", "none"])
def test_bad_activation_string_is_value_error(activation):
    with pytest.raises(ValueError, match="linear: activation must be None, 'relu', 'gelu' or 'silu'"):
        call_with("linear", activation=activation)


@pytest.mark.parametrize("activation", [1, 0, True, b"relu", ["relu"], np.str_("relu").encode()])
def test_non_str_activation_is_type_error(activation):
    with pytest.raises(TypeError, match="linear: activation"):
        call_with("linear", activation=activation)


def test_numpy_str_activation_is_accepted():
    np.testing.assert_array_equal(call_with("linear", activation=np.str_("relu")),
                                  call_with("linear", activation="relu"))


@pytest.mark.parametrize("eps", [-1e-5, -1.0, -np.inf, np.inf, np.nan])
def test_bad_eps_is_value_error(eps):
    with pytest.raises(ValueError, match="layer_norm: eps must be"):
        call_with("layer_norm", eps=eps)


@pytest.mark.parametrize("eps", ["1e-5", None, [1e-5]])
def test_non_number_eps_is_type_error(eps):
    with pytest.raises(TypeError, match="layer_norm: eps"):
        call_with("layer_norm", eps=eps)


@pytest.mark.parametrize("eps", [0, 0.0, 1, np.float32(1e-5), np.float64(1e-3)])
def test_number_eps_is_accepted(eps):
    assert call_with("layer_norm", eps=eps).shape == (3, 4)


@pytest.mark.parametrize("scale", [np.nan, np.inf, -np.inf, float("nan")])
def test_non_finite_scale_is_value_error(scale):
    with pytest.raises(ValueError, match="attention: scale must be finite"):
        call_with("attention", scale=scale)


@pytest.mark.parametrize("op,name,value", [("attention", "scale", 1e39), ("attention", "scale", -3.5e38),
                                           ("layer_norm", "eps", 1e39)])
def test_scalar_beyond_float32_range_is_value_error(op, name, value):
    # The kernels take float32: a Python float beyond FLT_MAX would reach them as inf
    # (for attention, scores of +-inf and a NaN result), so it is not finite either.
    with pytest.raises(ValueError, match=f"{op}: {name} must be finite"):
        call_with(op, **{name: value})


@pytest.mark.parametrize("scale", ["0.5", [0.5]])
def test_non_number_scale_is_type_error(scale):
    with pytest.raises(TypeError, match="attention: scale"):
        call_with("attention", scale=scale)


@pytest.mark.parametrize("num_heads", [0, -1, 3, 5, 16])
def test_bad_num_heads_is_value_error(num_heads):
    with pytest.raises(ValueError, match="multi_head_attention: num_heads must be"):
        call_with("multi_head_attention", num_heads=num_heads)


@pytest.mark.parametrize("num_heads", [2.0, "2", None, True, np.float32(2)])
def test_non_int_num_heads_is_type_error(num_heads):
    with pytest.raises(TypeError, match="multi_head_attention: num_heads must be an int"):
        call_with("multi_head_attention", num_heads=num_heads)


def test_positional_arguments_after_star_are_rejected():
    q = f32(1, 1, 2, 4)
    with pytest.raises(TypeError):
        pt.ops.attention(q, q, q, None)  # key_padding_mask is keyword-only


@pytest.mark.parametrize("length,d_model", [(-1, 8), (8, -1), (-5, -5)])
def test_negative_positional_encoding_is_value_error(length, d_model):
    with pytest.raises(ValueError, match="positional_encoding: (length|d_model) must be >= 0"):
        pt.ops.positional_encoding(length, d_model)


@pytest.mark.parametrize("length,d_model,name", [(2.0, 8, "length"), (8, 4.0, "d_model"), ("8", 8, "length"),
                                                 (None, 8, "length"), (True, 8, "length"), (8, False, "d_model"),
                                                 (np.float64(3), 8, "length")])
def test_non_int_positional_encoding_is_type_error(length, d_model, name):
    with pytest.raises(TypeError, match=f"positional_encoding: {name} must be an int"):
        pt.ops.positional_encoding(length, d_model)


@pytest.mark.parametrize("n", [0, -1, -100])
def test_set_num_threads_below_one_is_value_error(restore_threads, n):
    with pytest.raises(ValueError, match="set_num_threads"):
        pt.set_num_threads(n)
    assert pt.get_num_threads() == restore_threads


@pytest.mark.parametrize("n", [1.5, 2.0, "2", None, True, [2]])
def test_set_num_threads_non_int_is_type_error(restore_threads, n):
    with pytest.raises(TypeError, match="set_num_threads"):
        pt.set_num_threads(n)
    assert pt.get_num_threads() == restore_threads


@pytest.mark.parametrize("name", ["bogus", "", "AVX2", "sse", "auto"])
def test_set_isa_unknown_is_value_error(name):
    before = pt.runtime_info()["isa"]
    with pytest.raises(ValueError):
        _core._set_isa(name)
    assert pt.runtime_info()["isa"] == before


# ---------------------------------------------------------------------------
# NaN and inf propagate as in numpy, on every ISA
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("M", [3, 40])
def test_linear_nan_inf(isa, rng, M):
    K, N = 37, 21
    x, w, b = randn(rng, M, K), randn(rng, N, K), randn(rng, N)
    x[0, 5] = np.nan  # row 0 all NaN
    x[1, 7] = np.inf  # row 1: +-inf by the sign of w[:, 7]
    x[2, 3] = -np.inf
    w[4, 3] = 0.0  # ... except inf * 0 = NaN in y[2, 4]
    w[6, :] = np.nan  # column 6 all NaN
    b[9] = np.inf  # column 9 +inf, except where a row is NaN or -inf
    for activation in [None, "relu", "gelu"]:
        out = pt.ops.linear(x, w, b, activation)
        with np.errstate(invalid="ignore", over="ignore"):
            expected = ref.linear(x, w, b, activation)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected), err_msg=str(activation))
        np.testing.assert_array_equal(np.isposinf(out), np.isposinf(expected), err_msg=str(activation))
        np.testing.assert_array_equal(np.isneginf(out), np.isneginf(expected), err_msg=str(activation))
        assert np.isnan(out[0]).all() and np.isnan(out[:, 6]).all() and np.isnan(out[2, 4])


def test_softmax_nan_inf(isa, rng):
    x = randn(rng, 6, 19)
    x[0, 3] = np.nan
    x[1, 4] = np.inf
    x[2, :] = -np.inf
    x[3, ::3] = -np.inf
    x[4, 0] = -np.inf
    with np.errstate(invalid="ignore"):
        expected = ref.softmax(x)
    out = pt.ops.softmax(x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out[:3]).all() and not np.isnan(out[3:]).any()
    np.testing.assert_array_equal(out[3, ::3], 0.0)


def test_layer_norm_nan_inf(isa, rng):
    x, w, b = randn(rng, 5, 23), randn(rng, 23), randn(rng, 23)
    x[0, 3] = np.nan
    x[1, 4] = np.inf
    x[2, 0] = -np.inf
    w[7] = np.nan  # column 7 NaN
    with np.errstate(invalid="ignore"):
        expected = ref.layer_norm(x, w, b)
    out = pt.ops.layer_norm(x, w, b)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out[:3]).all() and np.isnan(out[:, 7]).all() and np.isfinite(np.delete(out[3:], 7, 1)).all()


def test_activations_nan_inf(isa, rng):
    x = randn(rng, 101, scale=5.0)
    x[::7] = np.nan
    x[3::11] = np.inf
    x[5::13] = -np.inf
    for op, reference in [(pt.ops.relu, ref.relu), (pt.ops.gelu, ref.gelu)]:
        out, expected = op(x), reference(x)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
        np.testing.assert_array_equal(out[np.isinf(x)], expected[np.isinf(x)])


def test_attention_nan(isa, rng):
    q, k, v = randn(rng, 1, 2, 8, 4), randn(rng, 1, 2, 8, 4), randn(rng, 1, 2, 8, 4)
    q[0, 0, 2, 1] = np.nan  # one query: its row is NaN
    k[0, 1, 5, 0] = np.nan  # one key: NaN for every query that sees it (causal: i >= 5)
    out = pt.ops.attention(q, k, v, causal=True)
    with np.errstate(invalid="ignore"):
        expected = ref.attention(q, k, v, causal=True)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out[0, 0, 2]).all() and np.isnan(out[0, 1, 5:]).all() and not np.isnan(out[0, 1, :5]).any()


def test_huge_finite_inputs_do_not_crash(isa):
    big = np.full((20, 33), 3e38, F32)
    with np.errstate(over="ignore", invalid="ignore"):
        for out in [pt.ops.linear(big, big[:7]), pt.ops.softmax(big), pt.ops.layer_norm(big, None, None),
                    pt.ops.gelu(big), pt.ops.relu(-big)]:
            assert out.dtype == F32
    np.testing.assert_array_equal(pt.ops.softmax(big), np.full((20, 33), 1 / 33, F32))
    assert np.all(np.isposinf(pt.ops.linear(big, big[:7])))

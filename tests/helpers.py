"""Helpers shared by the op tests: random inputs, odd memory layouts and the scaled
comparison against the float64 reference."""

from __future__ import annotations

import numpy as np

# Smallest positive float32 (a denormal): one unit in the last place below FLT_MIN.
DENORM_ULP = float(np.finfo(np.float32).smallest_subnormal)


def randn(rng, *shape, scale=1.0, offset=0.0):
    """float32 N(offset, scale^2) of the given shape."""
    return np.asarray(rng.standard_normal(shape) * scale + offset, dtype=np.float32)


def transposed_view(a):
    """The same values as `a`, as a non-contiguous view (last two axes stored swapped)."""
    if a.ndim < 2:
        return strided_view(a)
    stored = np.ascontiguousarray(np.swapaxes(a, -1, -2))
    view = np.swapaxes(stored, -1, -2)
    assert not view.flags.c_contiguous or view.size <= 1
    return view


def strided_view(a):
    """The same values as `a`, as a view with a step of 2 along the last axis."""
    buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],) if a.ndim else (2,), dtype=a.dtype)
    if a.ndim == 0:
        buf[0] = a
        return buf[::2].reshape(())
    buf[..., ::2] = a
    view = buf[..., ::2]
    assert not view.flags.c_contiguous or view.size <= 1
    return view


def big_endian(a):
    """The same values as `a`, stored big-endian ('>f4')."""
    out = a.astype(">f4")
    assert out.dtype.byteorder == ">"
    return out


LAYOUTS = {
    "transposed": transposed_view,
    "strided": strided_view,
    "big_endian": big_endian,
}


def assert_close(out, ref, rtol, scale=0.0, atol=0.0, err_msg=""):
    """Compare a float32 result with its float64 reference.

    Each element must satisfy |out - ref| <= rtol * (|ref| + scale) + atol, where
    `scale` (a number or an array broadcastable to ref) is the magnitude of the terms
    summed into that element: float32 rounding is relative to those, not to a result
    that may have cancelled. `atol` is only for documented absolute floors (results
    in the denormal range). NaN must sit exactly where the reference has NaN, and inf
    where it has the same inf. Also checks type, dtype and shape.
    """
    assert isinstance(out, np.ndarray), type(out)
    assert out.dtype == np.float32, out.dtype
    assert out.shape == np.shape(ref), (out.shape, np.shape(ref))
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), ref.shape)
    out64 = out.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(out64), np.isnan(ref), err_msg=f"NaN pattern differs. {err_msg}")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(out64[inf], ref[inf], err_msg=f"inf differs. {err_msg}")
    finite = np.isfinite(ref)
    err = np.where(finite, np.abs(out64 - np.where(finite, ref, 0.0)), 0.0)
    bound = np.where(finite, rtol * (np.abs(np.where(finite, ref, 0.0)) + scale) + atol, np.inf)
    bad = ~(err <= bound)  # also catches a non-finite out where ref is finite
    if np.any(bad):
        ratio = np.where(bad, np.nan_to_num(err / np.maximum(bound, 1e-300), nan=np.inf), 0.0)
        where = np.unravel_index(np.argmax(ratio), ref.shape)
        raise AssertionError(
            f"{int(bad.sum())} of {ref.size} elements beyond rtol={rtol} (scaled), atol={atol}; worst at "
            f"{tuple(int(i) for i in where)}: out={out64[where]!r} ref={ref[where]!r} "
            f"|err|={err[where]:.3e} bound={bound[where]:.3e} scale={scale[where]:.3e}; "
            f"first bad indices {np.argwhere(bad)[:5].tolist()}. {err_msg}")


def each_isa():
    """Iterate over every kernel set this CPU runs, switching the process to it, and
    restore the original choice at the end (for hypothesis tests, which cannot take
    the function-scoped `isa` fixture)."""
    import pytransformer as pt
    from pytransformer import _core

    original = pt.runtime_info()["isa"]
    try:
        for name in pt.runtime_info()["isa_available"]:
            _core._set_isa(name)
            yield name
    finally:
        _core._set_isa(original)

"""Property-based fuzzing of the public API with hypothesis (derandomized: every run
draws the same examples, so CI is reproducible).

Covered: the ops (random shapes with empty and huge dimensions, every memory layout,
NaN / inf, wrong dtypes, ranks, shapes and options), ``TransformerConfig`` and model
construction from random small configs (valid and invalid), ``encode`` / ``decode``
with random ids, lengths and dtypes, ``generate`` / ``generate_tokens`` with every
option drawn from valid and invalid ranges, ``Transformer.load`` on malformed files
and ``from_pretrained`` on malformed folders.

Every example either succeeds, and then its result is checked against an
independent reference (the float64 numpy ops of reference.py; a float64 model
written here from the config's documentation; for generation: valid ids, no EOS
inside, lengths within [min_length, max_length], no suppressed id, scores in order
and equal to ``log_prob / length ** length_penalty``, log-probabilities equal to the
teacher-forced ``decode``, and greedy search equal to a greedy loop over ``decode``
logits; safetensors' own reader for loaded files; hf_folders.bert_reference for
BERT folders), or raises one of the documented exception types (TypeError,
ValueError incl. pt.WeightsError, OverflowError, MemoryError, FileNotFoundError)
with a message that names the argument or the problem. Any other exception, a crash
or a hang is a failure. Calls that could hang (huge dimensions next to an empty
one) run in a forked child with a deadline, so a hang is reported with its example.

Env: PT_FUZZ_SCALE scales every max_examples (.ci/sanitize.sh runs 0.5); PT_FUZZ_SHRINK=0
reports a failing example as found, without shrinking it (.ci/sanitize.sh);
PT_FUZZ_TEST_TIMEOUT (seconds, default 900) ends the process with every thread's
traceback if one test function runs longer (a hang that the fork guard cannot see).
"""

from __future__ import annotations

import faulthandler
import functools
import json
import math
import os
import pickle
import select
import shutil
import signal
import sys
import tempfile
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis import event, example, given, note

import pytransformer as pt
import reference as ref
from model_utils import reference_decode, reference_encode
from helpers import assert_close
from pytransformer import _core

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SCALE = float(os.environ.get("PT_FUZZ_SCALE", "1"))
SHRINK = os.environ.get("PT_FUZZ_SHRINK", "1") != "0"
TEST_TIMEOUT = float(os.environ.get("PT_FUZZ_TEST_TIMEOUT", "900"))
HANG_SECONDS = 10.0          # a call on empty arrays (or refused) must return long before this
DOCUMENTED = (TypeError, ValueError, OverflowError, MemoryError)
F32 = np.float32
F32_MAX = float(np.finfo(np.float32).max)
ISAS = list(pt.runtime_info()["isa_available"])
INT32_MAX = 2 ** 31 - 1
PHYSICAL_MEMORY = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def size_outcome(nbytes, problems, *names):
    """An output of ``nbytes``: more than this machine's memory must be refused (an
    error naming ``names``), up to 16 MiB must be computed; True when the example is
    in between (it would allocate gigabytes: not run)."""
    if nbytes > PHYSICAL_MEMORY:
        problems.add((ValueError, MemoryError), *names)
    return 2 ** 24 < nbytes <= PHYSICAL_MEMORY


def fuzz(n):
    """Reproducible settings with ``n`` examples (scaled by PT_FUZZ_SCALE)."""
    phases = list(Phase) if SHRINK else [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(max_examples=max(3, int(round(n * SCALE))), deadline=None, derandomize=True, database=None,
                    print_blob=False, phases=phases,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _watchdog():
    """A test function that runs past PT_FUZZ_TEST_TIMEOUT is a hang: dump every
    thread's traceback and end the process (rather than block CI)."""
    # To the process's real stderr: under pytest's sys capture sys.stderr has no fileno.
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# ---------------------------------------------------------------------------
# Outcome checks
# ---------------------------------------------------------------------------


def attempt(fn):
    """(result, None) or (None, documented exception); anything else propagates."""
    try:
        return fn(), None
    except DOCUMENTED as e:
        return None, e


def check_message(err, names, what=""):
    msg = str(err)
    assert msg.strip(), f"{what}: {type(err).__name__} with an empty message"
    assert any(n in msg for n in names), \
        f"{what}: {type(err).__name__}({msg[:400]!r}) names none of {sorted(set(names))}"


class Problems:
    """What is wrong with an example's arguments: (exception types, names one of which
    the message must hold) per problem. Without a required problem the call must
    succeed; an optional one (``optional=True``: the outcome depends on the machine or
    on an undocumented limit) allows that error too."""

    def __init__(self):
        self.items = []
        self.required = False

    def add(self, types, *names, optional=False):
        self.items.append((types if isinstance(types, tuple) else (types,), names))
        self.required = self.required or not optional

    def extend(self, other):
        self.items += other.items
        self.required = self.required or other.required

    @property
    def success_ok(self):
        return not self.required

    def check(self, err, prefix="", what=""):
        """``err`` is what one of the problems allows, and names its argument."""
        fits = [names for types, names in self.items if isinstance(err, types)]
        assert fits, (f"{what}: {type(err).__name__}({str(err)[:300]!r}) is none of the errors expected for "
                      f"{[(tuple(t.__name__ for t in ty), n) for ty, n in self.items]}")
        check_message(err, [prefix + n for names in fits for n in names], what)

    def __repr__(self):
        return repr([(tuple(t.__name__ for t in ty), n) for ty, n in self.items])


def expect(problems, fn, prefix="", what=""):
    """Run fn: success when there are no problems (the result is returned), else one
    of the expected errors (None is returned)."""
    return judge(problems, *attempt(fn), prefix=prefix, what=what)


def judge(problems, out, err, prefix="", what=""):
    note(f"problems: {problems!r}")
    event(f"{what.split()[0] if what else ''}: " + ("ok" if err is None else type(err).__name__))
    if err is None:
        assert problems.success_ok, f"{what}: succeeded although {problems!r}"
        return out
    if not problems.items:
        # A valid call whose buffers would exceed the machine's memory is refused up
        # front, naming what is too large (documented: README "Memory").
        if isinstance(err, ValueError) and "more than this machine's memory" in str(err):
            return None
        raise AssertionError(f"{what}: valid call raised {type(err).__name__}: {err}") from err
    problems.check(err, prefix, what)
    return None


def run_with_deadline(fn, seconds=HANG_SECONDS):
    """fn() in a forked child: ("ok", summary) or ("error", type name, message,
    documented?). A child still running after ``seconds`` or killed by a signal fails
    the test with that finding (instead of hanging or crashing pytest)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            try:
                out = fn()
                res = ("ok", (tuple(out.shape), str(out.dtype)) if isinstance(out, np.ndarray) else repr(out)[:200])
            except BaseException as e:  # noqa: BLE001 (reported to the parent)
                res = ("error", type(e).__name__, str(e)[:2000], isinstance(e, DOCUMENTED), isinstance(e, ValueError))
            data = pickle.dumps(res)
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"hang: the call did not return within {seconds:.0f} s")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise AssertionError(f"crash: the call killed the process with signal {os.WTERMSIG(status)}")
    assert chunks, "the child sent no result"
    return pickle.loads(b"".join(chunks))


def deadline_outcome(fn, problems, prefix, what):
    """run_with_deadline + the checks of ``expect``; returns the success summary."""
    res = run_with_deadline(fn)
    note(f"child: {res!r}; problems: {problems!r}")
    if res[0] == "ok":
        assert problems.success_ok, f"{what}: succeeded although {problems!r}"
        return res[1]
    _, name, msg, documented, is_value_error = res
    assert documented, f"{what}: raised {name}: {msg}"
    if not problems.items:
        raise AssertionError(f"{what}: valid call raised {name}: {msg}")
    kinds = {"TypeError": TypeError, "ValueError": ValueError, "OverflowError": OverflowError,
             "MemoryError": MemoryError}
    err_type = kinds.get(name, ValueError if is_value_error else Exception)
    err = err_type(msg)
    problems.check(err, prefix, what)
    return None


# ---------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------

SPECIALS = (np.nan, np.inf, -np.inf)
LAYOUTS = ("contiguous", "contiguous", "contiguous", "fortran", "transposed", "strided", "reversed", "big_endian",
           "unaligned", "readonly", "broadcast")
BAD_DTYPES = (np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64, object)


def unaligned(a):
    """The values of ``a`` in a C-contiguous array whose data is not 4-byte aligned."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    if a.size:
        out[...] = a
    return out


def strided(a):
    """The values of ``a`` as a view with a step of 2 along the last axis."""
    buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    buf[..., ::2] = a
    return buf[..., ::2]


def with_layout(a, layout):
    """``a`` in another memory layout; the values may change (broadcast), which is fine:
    the reference is computed from the array that is passed."""
    if a.ndim == 0 or a.size == 0 or layout == "contiguous":
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "transposed":
        if a.ndim < 2:
            return with_layout(a, "strided")
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    if layout == "strided":
        return strided(a)
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "big_endian":
        return a.astype(">f4") if a.dtype == F32 else a.astype(a.dtype.newbyteorder(">"))
    if layout == "unaligned":
        return unaligned(a)
    if layout == "readonly":
        b = a.copy()
        b.setflags(write=False)
        return b
    if layout == "broadcast":
        return np.broadcast_to(a[:1], a.shape)
    raise AssertionError(layout)


def scrub_masked_keys(arr, mask, key_axis):
    """KNOWN BUG, kept visible by test_known_bug_nonfinite_at_masked_values (xfail,
    strict): a NaN or inf at a masked value (V; masked keys K are fixed) still reaches the output (0 * NaN in the
    P.V product), in ops.attention, multi_head_attention and decode with non-finite
    memory at padding. Until the kernel is fixed, non-finite values at masked keys
    are replaced by 0 here, so the fuzz still checks everything else."""
    if not (isinstance(arr, np.ndarray) and isinstance(mask, np.ndarray) and mask.dtype == bool
            and arr.dtype.kind == "f" and mask.ndim == 2 and arr.ndim > key_axis
            and mask.shape == (arr.shape[0], arr.shape[key_axis])):
        return arr
    shape = [1] * arr.ndim
    shape[0], shape[key_axis] = mask.shape
    with np.errstate(invalid="ignore"):
        bad = np.broadcast_to(mask.reshape(shape), arr.shape) & ~np.isfinite(arr)
    if not bad.any():
        return arr
    out = arr.copy()
    out[bad] = 0
    return out


def float_array(draw, shape, specials=SPECIALS, scale=2.0):
    """float32 values of ``shape``: uniform, sometimes with some of ``specials`` (NaN,
    inf, -inf by default; False: none) and zeros."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = (rng.uniform(-scale, scale, shape)).astype(F32)
    pool = (tuple(specials) if specials else ()) + (0.0,)
    if a.size and draw(st.integers(0, 5)) == 0:
        for _ in range(draw(st.integers(1, 3))):
            idx = tuple(int(rng.integers(0, s)) for s in shape)
            a[idx] = draw(st.sampled_from(pool))
    return a


DIM = st.one_of(st.integers(0, 5), st.integers(0, 5), st.sampled_from([1, 7, 16, 17, 33, 65]))


def corrupt(draw, a, problems, op, name, *, fixed_rank=True, required=True, checked_axes=(), min_rank=0,
            p=8):
    """With probability 1/p each, replace array argument ``a`` with a wrong dtype, a
    non-array, a wrong rank or a wrong size along an axis the op checks; record the
    error it must cause."""
    kind = draw(st.sampled_from(["none"] * p + ["dtype", "nonarray", "rank", "shape"]))
    if kind == "dtype":
        problems.add(TypeError, f"{op}: {name} ")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN cast to an int dtype
            return a.astype(draw(st.sampled_from(BAD_DTYPES)))
    if kind == "nonarray":
        bad = draw(st.sampled_from(["list", "float", "str", "none", "scalar"]))
        if bad == "none" and not required:
            return None  # None is fine for an optional argument
        problems.add(TypeError, f"{op}: {name} ")
        return {"list": a.tolist(), "float": 1.5, "str": "x", "none": None,
                "scalar": F32(1.0)}[bad]
    if kind == "rank" and (fixed_rank or min_rank > 0):
        if not fixed_rank:
            b = np.zeros((), a.dtype)                 # below the minimum rank
        elif draw(st.booleans()) or a.ndim == 0:
            b = np.zeros(a.shape + (1,), a.dtype)     # one axis more
        else:
            b = np.zeros(a.shape[:-1], a.dtype)       # one axis less
        problems.add(ValueError, f"{op}: {name} ")
        return b
    if kind == "shape" and checked_axes and a.ndim:
        axis = draw(st.sampled_from(list(checked_axes)))
        shape = list(a.shape)
        shape[axis] += draw(st.integers(1, 2))
        problems.add(ValueError, f"{op}: {name} ")
        return np.zeros(shape, a.dtype)
    return a


@st.composite
def isa_choice(draw):
    return draw(st.sampled_from(ISAS))


def on_isa(isa, fn):
    original = pt.runtime_info()["isa"]
    _core._set_isa(isa)
    try:
        return fn()
    finally:
        _core._set_isa(original)


def check_against(out, expected, rtol, scale=0.0, what=""):
    """assert_close with a denormal floor (kernels may flush results below FLT_MIN)."""
    with np.errstate(all="ignore"):
        assert_close(out, expected, rtol, scale, atol=float(np.finfo(F32).tiny), err_msg=what)


# ---------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------


def huge_empty_shape(draw, rank):
    """A shape of ``rank`` >= 1 with one zero dimension and one huge one."""
    shape = [draw(st.integers(0, 3)) for _ in range(rank)]
    zero = draw(st.integers(0, rank - 1))
    shape[zero] = 0
    if rank > 1:
        big = draw(st.sampled_from([i for i in range(rank) if i != zero]))
        shape[big] = draw(st.sampled_from([2 ** 31 - 1, 2 ** 31 + 7, 2 ** 40]))
    return tuple(shape)


@fuzz(250)
@given(st.data())
def test_fuzz_elementwise_softmax_layer_norm(data):
    draw = data.draw
    op = draw(st.sampled_from(["relu", "gelu", "silu", "softmax", "layer_norm"]))
    isa = draw(isa_choice())
    min_rank = 0 if op in ("relu", "gelu", "silu") else 1
    huge = draw(st.integers(0, 9)) == 0
    problems = Problems()
    if huge:
        shape = huge_empty_shape(draw, draw(st.integers(max(min_rank, 1), 3)))
        x = np.empty(shape, F32)
        note(f"{op} huge x{shape}")
        if op == "layer_norm":
            fn = lambda: pt.ops.layer_norm(x, None, None)  # noqa: E731
        else:
            fn = lambda: getattr(pt.ops, op)(x)  # noqa: E731
        summary = deadline_outcome(fn, problems, "", f"{op} x{shape}")
        assert summary == (shape, "float32"), summary
        return
    shape = tuple(draw(st.lists(DIM, min_size=min_rank, max_size=3)))
    while int(np.prod(shape)) > 3000:
        shape = shape[1:]
    x0 = float_array(draw, shape, scale=draw(st.sampled_from([1.0, 4.0, 30.0])))
    x = with_layout(x0, draw(st.sampled_from(LAYOUTS)))
    x = corrupt(draw, x, problems, op, "x", fixed_rank=False, min_rank=min_rank)
    note(f"{op} x{shape} isa={isa}")
    if op == "layer_norm":
        n = shape[-1] if shape else 0
        w = draw(st.one_of(st.none(), st.just("array")))
        b = draw(st.one_of(st.none(), st.just("array")))
        r = draw(st.one_of(st.none(), st.just("array")))
        # weight without specials: a zero normalised value times inf is NaN in one
        # precision and not the other (rounding), which says nothing about the op
        w = None if w is None else with_layout(float_array(draw, (n,), specials=False) + F32(0.5),
                                               draw(st.sampled_from(LAYOUTS)))
        b = None if b is None else float_array(draw, (n,))
        r = None if r is None else with_layout(float_array(draw, shape), draw(st.sampled_from(LAYOUTS)))
        if w is not None:
            w = corrupt(draw, w, problems, op, "weight", required=False, checked_axes=(0,))
        if b is not None:
            b = corrupt(draw, b, problems, op, "bias", required=False, checked_axes=(0,))
        if r is not None:
            r = corrupt(draw, r, problems, op, "residual", required=False, checked_axes=tuple(range(len(shape))))
        eps = draw(st.sampled_from([1e-5, 1e-5, 0.0, 1e-12, 0.5, 1e30, 3, np.float32(1e-3), "bad-neg", "bad-nan",
                                    "bad-inf", "bad-big", "bad-str"]))
        if isinstance(eps, str):
            problems.add(TypeError if eps == "bad-str" else ValueError, "layer_norm: eps")
            eps = {"bad-neg": -1e-5, "bad-nan": math.nan, "bad-inf": math.inf, "bad-big": 1e39,
                   "bad-str": "1e-5"}[eps]
        out = expect(problems, lambda: on_isa(isa, lambda: pt.ops.layer_norm(x, w, b, eps=eps, residual=r)),
                     what="layer_norm")
        if out is not None:
            e32 = float(np.float32(eps))
            with np.errstate(all="ignore"):
                expected = ref.layer_norm(x, w, b, e32, r)
                scale = ref.layer_norm_scale(x, w, b, e32, r) if x.size else 0.0
            check_against(out, expected, 1e-4, np.nan_to_num(scale, nan=0.0, posinf=0.0), "layer_norm")
        return
    out = expect(problems, lambda: on_isa(isa, lambda: getattr(pt.ops, op)(x)), what=op)
    if out is not None:
        with np.errstate(all="ignore"):
            expected = getattr(ref, op)(x)
        check_against(out, expected, 1e-5, 0.0, op)
        assert out.shape == x.shape


@fuzz(200)
@given(st.data())
def test_fuzz_linear(data):
    draw = data.draw
    isa = draw(isa_choice())
    problems = Problems()
    act = draw(st.sampled_from([None, None, "relu", "gelu", "silu", np.str_("gelu"), "bad-tanh", "bad-empty",
                                "bad-int", "bad-bytes"]))
    if isinstance(act, str) and act.startswith("bad-"):
        problems.add(ValueError if act in ("bad-tanh", "bad-empty") else TypeError, "linear: activation")
        act = {"bad-tanh": "tanh", "bad-empty": "", "bad-int": 1, "bad-bytes": b"relu"}[act]
    if draw(st.integers(0, 7)) == 0:  # an empty dimension next to a huge one
        M, K, N = draw(st.sampled_from([(2 ** 40, 0, 0), (0, 2 ** 40, 0), (2 ** 31 + 1, 0, 0), (0, 0, 2 ** 33),
                                        (2 ** 40, 0, 3), (0, 2 ** 35, 0)]))
        x, w = np.empty((M, K), F32), np.empty((N, K), F32)
        size_outcome(4 * M * N, problems, "linear")
        note(f"linear huge x{x.shape} w{w.shape}")
        summary = deadline_outcome(lambda: pt.ops.linear(x, w, None, act), problems, "", "linear huge")
        if summary is not None:
            assert summary == ((M, N), "float32"), summary
        return
    lead = tuple(draw(st.lists(st.integers(0, 4), max_size=2)))
    M, K, N = draw(DIM), draw(DIM), draw(DIM)
    xshape = lead + (M, K) if draw(st.booleans()) else (K,)
    x = with_layout(float_array(draw, xshape), draw(st.sampled_from(LAYOUTS)))
    w = with_layout(float_array(draw, (N, K)), draw(st.sampled_from(LAYOUTS)))
    b = None if draw(st.booleans()) else with_layout(float_array(draw, (N,)), draw(st.sampled_from(LAYOUTS)))
    x = corrupt(draw, x, problems, "linear", "x", fixed_rank=False, min_rank=1)
    w = corrupt(draw, w, problems, "linear", "weight", checked_axes=(1,))
    if b is not None:
        b = corrupt(draw, b, problems, "linear", "bias", required=False, checked_axes=(0,))
    note(f"linear x{xshape} w{(N, K)} bias={b is not None} act={act!r} isa={isa}")
    out = expect(problems, lambda: on_isa(isa, lambda: pt.ops.linear(x, w, b, act)), what="linear")
    if out is not None:
        with np.errstate(all="ignore"):
            expected = ref.linear(x, w, b, None if act is None else str(act))
            scale = ref.linear_scale(x, w, b)
        check_against(out, expected, 1e-4, np.nan_to_num(scale, posinf=0.0), "linear")


def bool_mask(draw, shape):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    kind = draw(st.sampled_from(["random", "none_masked", "all_masked", "suffix"]))
    if kind == "random":
        m = rng.random(shape) < 0.3
    elif kind == "none_masked":
        m = np.zeros(shape, bool)
    elif kind == "all_masked":
        m = np.ones(shape, bool)
    else:
        m = np.arange(shape[1])[None, :] >= rng.integers(0, shape[1] + 1, shape[0])[:, None]
    layout = draw(st.sampled_from(["contiguous", "fortran", "strided", "reversed", "readonly"]))
    if m.size and m.ndim == 2 and layout == "strided":
        buf = np.zeros((shape[0], 2 * shape[1]), bool)
        buf[:, ::2] = m
        return buf[:, ::2]
    if m.size and layout == "fortran":
        return np.asfortranarray(m)
    if m.size and layout == "reversed":
        return np.ascontiguousarray(m[::-1])[::-1]
    if layout == "readonly":
        m.setflags(write=False)
    return m


def corrupt_mask(draw, m, problems, op, checked_axes=(0, 1)):
    kind = draw(st.sampled_from(["none"] * 8 + ["dtype", "list", "shape"]))
    if kind == "dtype":
        problems.add(TypeError, f"{op}: key_padding_mask ")
        return m.astype(draw(st.sampled_from([np.uint8, np.int64, np.float32])))
    if kind == "list":
        problems.add(TypeError, f"{op}: key_padding_mask ")
        return m.tolist()
    if kind == "shape":
        problems.add(ValueError, f"{op}: key_padding_mask ")
        shape = list(m.shape)
        shape[draw(st.sampled_from(list(checked_axes)))] += 1
        return np.zeros(shape, bool)
    return m


@fuzz(200)
@given(st.data())
def test_fuzz_attention(data):
    draw = data.draw
    isa = draw(isa_choice())
    problems = Problems()
    causal = draw(st.booleans())
    scale = draw(st.sampled_from([None, None, 0.5, 0.0, -1.0, 3, 100.0, "bad-nan", "bad-inf", "bad-big",
                                  "bad-str"]))
    if isinstance(scale, str):
        problems.add(TypeError if scale == "bad-str" else ValueError, "attention: scale")
        scale = {"bad-nan": math.nan, "bad-inf": -math.inf, "bad-big": 1e39, "bad-str": "0.5"}[scale]
    if draw(st.integers(0, 7)) == 0:
        B, H, Lq, Lk, D, Dv = draw(st.sampled_from([(2 ** 40, 1, 0, 0, 1, 1), (1, 2 ** 40, 0, 0, 2, 2),
                                                    (1, 1, 3, 2 ** 40, 0, 0), (1, 1, 0, 2 ** 33, 0, 0),
                                                    (2 ** 31 + 1, 2, 0, 1, 0, 0), (3, 0, 2 ** 40, 2 ** 40, 0, 0)]))
        q, k, v = np.empty((B, H, Lq, D), F32), np.empty((B, H, Lk, D), F32), np.empty((B, H, Lk, Dv), F32)
        note(f"attention huge q{q.shape} k{k.shape} v{v.shape}")
        summary = deadline_outcome(lambda: pt.ops.attention(q, k, v, causal=causal, scale=scale), problems, "",
                                   "attention huge")
        if summary is not None:
            assert summary == ((B, H, Lq, Dv), "float32"), summary
        return
    B, H = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    Lq, Lk, D, Dv = draw(DIM), draw(DIM), draw(DIM), draw(DIM)
    # specials only in q and k: an inf in v times a probability that underflows to 0 in
    # float32 but not in float64 is NaN in one precision only
    q = with_layout(float_array(draw, (B, H, Lq, D)), draw(st.sampled_from(LAYOUTS)))
    k = with_layout(float_array(draw, (B, H, Lk, D)), draw(st.sampled_from(LAYOUTS)))
    v = with_layout(float_array(draw, (B, H, Lk, Dv), specials=False), draw(st.sampled_from(LAYOUTS)))
    mask = bool_mask(draw, (B, Lk)) if draw(st.booleans()) else None
    q = corrupt(draw, q, problems, "attention", "q")
    k = corrupt(draw, k, problems, "attention", "k", checked_axes=(0, 1, 3))
    v = corrupt(draw, v, problems, "attention", "v", checked_axes=(0, 1, 2))
    if mask is not None:
        mask = corrupt_mask(draw, mask, problems, "attention")
    k, v = scrub_masked_keys(k, mask, 2), scrub_masked_keys(v, mask, 2)
    note(f"attention B={B} H={H} Lq={Lq} Lk={Lk} D={D} Dv={Dv} causal={causal} scale={scale} "
         f"mask={mask is not None} isa={isa}")
    out = expect(problems, lambda: on_isa(isa, lambda: pt.ops.attention(q, k, v, key_padding_mask=mask,
                                                                         causal=causal, scale=scale)),
                 what="attention")
    if out is not None:
        with np.errstate(all="ignore"):
            expected = ref.attention(q, k, v, key_padding_mask=mask, causal=causal,
                                     scale=None if scale is None else float(np.float32(scale)))
        vmax = np.abs(np.asarray(v, np.float64)).max(axis=(2, 3), keepdims=True, initial=0.0)
        check_against(out, expected, 1e-4, vmax, "attention")


@fuzz(150)
@given(st.data())
def test_fuzz_multi_head_attention(data):
    draw = data.draw
    isa = draw(isa_choice())
    op = "multi_head_attention"
    problems = Problems()
    causal = draw(st.booleans())
    H = draw(st.sampled_from([1, 1, 2, 3, 4]))
    E = H * draw(st.integers(0, 4)) if draw(st.integers(0, 5)) else draw(st.integers(0, 9))
    heads = draw(st.sampled_from([H, H, H, 0, -1, E + 1, 2 ** 64, float(H), True, np.int64(H)]))
    if isinstance(heads, (bool, float)):
        problems.add(TypeError, f"{op}: num_heads")
    elif heads >= 2 ** 63 or heads < 1 or E % heads:
        problems.add((ValueError, OverflowError), f"{op}: num_heads")
    if draw(st.integers(0, 9)) == 0:
        Bh = draw(st.sampled_from([2 ** 40, 2 ** 31 + 3]))
        x = np.empty((Bh, 0, E), F32)
        inw, outw = np.ones((3 * E, E), F32), np.ones((E, E), F32)
        note(f"{op} huge batch {Bh} E={E} heads={heads!r}")
        summary = deadline_outcome(lambda: pt.ops.multi_head_attention(x, x, x, inw, None, outw, None, heads),
                                   problems, "", op + " huge")
        if summary is not None:
            assert summary == ((Bh, 0, E), "float32"), summary
        return
    B, Lq, Lk = draw(st.integers(0, 3)), draw(DIM), draw(DIM)
    mode = draw(st.sampled_from(["self", "kv", "separate"]))
    # NaN only: the projections spread an inf into the values, where a probability
    # that underflows in float32 but not in float64 makes NaN of it in one precision
    nan = (np.nan,)
    query = with_layout(float_array(draw, (B, Lq, E), nan), draw(st.sampled_from(LAYOUTS)))
    if mode == "self":
        Lk = Lq
    key = query if mode == "self" else with_layout(float_array(draw, (B, Lk, E), nan),
                                                    draw(st.sampled_from(LAYOUTS)))
    value = key if mode != "separate" else with_layout(float_array(draw, (B, Lk, E), nan),
                                                        draw(st.sampled_from(LAYOUTS)))
    inw = with_layout(float_array(draw, (3 * E, E), specials=False) / F32(max(E, 1) ** 0.5),
                      draw(st.sampled_from(LAYOUTS)))
    inb = None if draw(st.booleans()) else float_array(draw, (3 * E,), specials=False)
    outw = with_layout(float_array(draw, (E, E), specials=False) / F32(max(E, 1) ** 0.5),
                       draw(st.sampled_from(LAYOUTS)))
    outb = None if draw(st.booleans()) else float_array(draw, (E,), specials=False)
    mask = bool_mask(draw, (B, Lk)) if draw(st.booleans()) else None
    if mode == "self":
        query = corrupt(draw, query, problems, op, "query")
        key = value = query
    else:
        query = corrupt(draw, query, problems, op, "query")
        key = corrupt(draw, key, problems, op, "key", checked_axes=(0, 2))
        if mode == "kv":
            value = key
        else:
            value = corrupt(draw, value, problems, op, "value", checked_axes=(0, 1, 2))
    inw = corrupt(draw, inw, problems, op, "in_proj_weight", checked_axes=(0, 1))
    outw = corrupt(draw, outw, problems, op, "out_proj_weight", checked_axes=(0, 1))
    if inb is not None:
        inb = corrupt(draw, inb, problems, op, "in_proj_bias", required=False, checked_axes=(0,))
    if outb is not None:
        outb = corrupt(draw, outb, problems, op, "out_proj_bias", required=False, checked_axes=(0,))
    if mask is not None:
        mask = corrupt_mask(draw, mask, problems, op)
    if isinstance(mask, np.ndarray) and mask.dtype == bool and mask.ndim == 2:
        scrubbed_key = scrub_masked_keys(key, mask, 1)
        if scrubbed_key is not key:
            value = scrubbed_key if value is key else value
            key = scrubbed_key
        value = scrub_masked_keys(value, mask, 1) if value is not key else value
    note(f"{op} B={B} Lq={Lq} Lk={Lk} E={E} heads={heads!r} mode={mode} causal={causal} isa={isa}")
    # A problem with the query's rank hides the head check and vice versa: the call
    # must fail either way, naming one of them.
    out = expect(problems, lambda: on_isa(isa, lambda: pt.ops.multi_head_attention(
        query, key, value, inw, inb, outw, outb, heads, key_padding_mask=mask, causal=causal)), what=op)
    if out is not None:
        with np.errstate(all="ignore"):
            expected = ref.multi_head_attention(query, key, value, inw, inb, outw, outb, int(heads),
                                                key_padding_mask=mask, causal=causal)
            scale = ref.multi_head_attention_scale(query, key, value, inw, inb, outw, outb, int(heads),
                                                   key_padding_mask=mask, causal=causal)
        check_against(out, expected, 1e-4, np.nan_to_num(scale, nan=0.0, posinf=0.0), op)


@fuzz(120)
@given(st.one_of(st.integers(0, 40), st.sampled_from([-1, 2 ** 31, 2 ** 40, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64,
                                                      -2 ** 70, 1.0, "8", None, True, np.int64(5)])),
       st.one_of(st.integers(0, 40), st.sampled_from([-1, 2 ** 31, 2 ** 40, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64,
                                                      -2 ** 70, 2.0, "8", None, False, np.int32(6)])))
@example(2 ** 40, 0)   # empty tables with a huge side: always tried
@example(0, 2 ** 40)
@example(2 ** 62, 0)
def test_fuzz_positional_encoding(length, d_model):
    problems = Problems()
    for name, value in (("length", length), ("d_model", d_model)):
        if isinstance(value, (bool, float, str)) or value is None:
            problems.add(TypeError, f"positional_encoding: {name}")
        elif value < 0 or value >= 2 ** 63:
            problems.add((ValueError, OverflowError), f"positional_encoding: {name}")
    if not problems.items:
        L, d = int(length), int(d_model)
        if size_outcome(4 * L * d, problems, "positional_encoding"):
            return
        if L * d == 0 and 4 * max(L, d) >= 2 ** 63:
            # an empty table whose shape numpy itself cannot represent
            problems.add(ValueError, "positional_encoding", "too big", optional=True)
    note(f"positional_encoding({length!r}, {d_model!r}); problems {problems!r}")
    # in a child: a table of 0 x 2**40 floats is empty, but must not take 2**40 steps either
    summary = deadline_outcome(lambda: pt.ops.positional_encoding(length, d_model), problems, "",
                               "positional_encoding")
    if summary is not None:
        L, d = int(length), int(d_model)
        assert summary == ((L, d), "float32"), summary
        if 0 < L * d <= 10 ** 5:
            check_against(pt.ops.positional_encoding(length, d_model), ref.positional_encoding(L, d), 1e-5, 1.0,
                          "positional_encoding")


# ---------------------------------------------------------------------------
# A float64 model reference written from TransformerConfig's documentation
# ---------------------------------------------------------------------------


def _mask(lengths, S):
    return None if lengths is None else np.arange(S)[None, :] >= np.asarray(lengths)[:, None]


def weights_for(config, seed):
    """Random float32 weights of every expected name and shape, scaled to keep
    activations O(1)."""
    rng = np.random.default_rng(seed)
    E = config.d_model
    out = {}
    for name, shape in pt.weights.expected_weight_shapes(config).items():
        if "embed.weight" in name:
            a = rng.standard_normal(shape) / math.sqrt(E)
        elif "norm" in name:
            a = rng.uniform(0.5, 1.5, shape) if name.endswith("weight") else rng.normal(0, 0.1, shape)
        elif len(shape) == 2:
            a = rng.uniform(-1, 1, shape) * math.sqrt(3.0 / max(shape[1], 1))
        else:
            a = rng.normal(0, 0.1, shape)
        out[name] = np.asarray(a, F32)
    return out


def valid_positions(lengths, B, S):
    return np.ones((B, S), bool) if lengths is None else ~_mask(lengths, S)


def assert_model_close(out, expected, valid, what, atol=2e-4):
    assert out.dtype == F32 and out.shape == expected.shape, (what, out.dtype, out.shape, expected.shape)
    if not valid.any():
        return
    a, b = out[valid].astype(np.float64), expected[valid]
    # NaN only where the reference has NaN (a LayerNorm over one feature with eps 0 is 0/0)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: NaN pattern")
    assert np.isfinite(a[~np.isnan(b)]).all(), f"{what}: non-finite output at a real position"
    a, b = np.nan_to_num(a), np.nan_to_num(b)
    err = np.abs(a - b) / (1.0 + np.abs(b))
    assert err.max() <= atol, f"{what}: max scaled error {err.max():.3e} > {atol}"


# ---------------------------------------------------------------------------
# TransformerConfig and model construction
# ---------------------------------------------------------------------------

INT_MINIMUM = {"d_model": 1, "nhead": 1, "num_encoder_layers": 0, "num_decoder_layers": 0, "dim_feedforward": 1,
               "src_vocab_size": 1, "tgt_vocab_size": 1, "max_length": 1, "pad_id": 0, "bos_id": 0, "eos_id": 0,
               "type_vocab_size": 0}
BOOL_FIELDS = ("norm_first", "final_norm", "share_embeddings", "tie_output", "output_bias", "embedding_norm")
BAD_INTS = (-1, -2 ** 70, True, False, 2.0, "3", None, 2 ** 31, 2 ** 63, 10 ** 30, [2], np.float64(2.0))
BAD_BOOLS = (1, 0, "yes", None, np.int64(1))


def config_problems(kw):
    """The documented rules of TransformerConfig: [(exception types, field names)]."""
    p = Problems()
    ints_ok = True
    for name, minimum in INT_MINIMUM.items():
        v = kw[name]
        if isinstance(v, bool) or not isinstance(v, int):
            p.add((TypeError, ValueError), name)
            ints_ok = False
        elif v < minimum or v > INT32_MAX:
            p.add(ValueError, name)
            ints_ok = False
    for name in BOOL_FIELDS:
        if not isinstance(kw[name], bool):
            p.add((TypeError, ValueError), name)
    if kw["activation"] not in ("relu", "gelu", "silu"):
        p.add((TypeError, ValueError), "activation")
    if kw["positional"] not in ("sinusoidal", "sinusoidal_concat", "learned"):
        p.add((TypeError, ValueError), "positional")
    eps = kw["layer_norm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0 <= eps <= F32_MAX):
        p.add((TypeError, ValueError), "layer_norm_eps")
    scale = kw["embedding_scale"]
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not abs(scale) <= F32_MAX):
        p.add((TypeError, ValueError), "embedding_scale")
    if ints_ok:
        E, F = kw["d_model"], kw["dim_feedforward"]
        tables = {"max_length": kw["max_length"] * E, "src_vocab_size": kw["src_vocab_size"] * E,
                  "tgt_vocab_size": kw["tgt_vocab_size"] * E, "type_vocab_size": kw["type_vocab_size"] * E,
                  "num_encoder_layers": kw["num_encoder_layers"] * (4 * E * E + 2 * E * F + F + 9 * E),
                  "num_decoder_layers": kw["num_decoder_layers"] * (8 * E * E + 2 * E * F + F + 15 * E)}
        if max(tables.values()) * 4 > 2 ** 63 - 1 or 4 * sum(tables.values()) > 2 ** 63 - 1:
            p.add(ValueError, "bytes")   # a table (or the model) beyond a 64-bit byte size
        if kw["d_model"] % kw["nhead"]:
            p.add(ValueError, "nhead")
        if kw["share_embeddings"] is True and kw["src_vocab_size"] != kw["tgt_vocab_size"]:
            p.add(ValueError, "share_embeddings")
        for name in ("pad_id", "bos_id", "eos_id"):
            if kw[name] >= kw["tgt_vocab_size"]:
                p.add(ValueError, name)
    return p


@st.composite
def config_kwargs(draw):
    """Small valid values; in most examples some fields replaced by bad ones (each with
    probability 1/bad_rate, bad_rate drawn per example)."""
    bad_rate = draw(st.sampled_from([10 ** 9, 10 ** 9, 60, 12]))
    H = draw(st.sampled_from([1, 2, 3, 4]))
    V = draw(st.integers(3, 12))
    kw = dict(
        d_model=H * draw(st.integers(1, 4)), nhead=H, num_encoder_layers=draw(st.integers(0, 2)),
        num_decoder_layers=draw(st.integers(0, 2)), dim_feedforward=draw(st.integers(1, 24)),
        activation=draw(st.sampled_from(["relu", "gelu", "silu"])), norm_first=draw(st.booleans()),
        layer_norm_eps=draw(st.sampled_from([1e-5, 1e-12, 0.0, 0.1, 1])), final_norm=draw(st.booleans()),
        embedding_scale=draw(st.sampled_from([None, 1.0, 0.5, -2.0, 3])),
        positional=draw(st.sampled_from(["sinusoidal", "sinusoidal_concat", "learned"])),
        type_vocab_size=draw(st.integers(0, 3)), embedding_norm=draw(st.booleans()),
        src_vocab_size=draw(st.integers(1, 12)), tgt_vocab_size=V, share_embeddings=draw(st.booleans()),
        tie_output=draw(st.booleans()), output_bias=draw(st.booleans()), max_length=draw(st.integers(1, 12)),
        pad_id=draw(st.integers(0, V - 1)), bos_id=draw(st.integers(0, V - 1)), eos_id=draw(st.integers(0, V - 1)),
    )
    if kw["share_embeddings"] and draw(st.integers(0, 3)):
        kw["src_vocab_size"] = V
    for name in INT_MINIMUM:
        if draw(st.integers(0, bad_rate - 1)) == 0:
            kw[name] = draw(st.sampled_from(BAD_INTS + (INT_MINIMUM[name] - 1, INT32_MAX)))
    for name in BOOL_FIELDS:
        if draw(st.integers(0, bad_rate - 1)) == 0:
            kw[name] = draw(st.sampled_from(BAD_BOOLS))
    if draw(st.integers(0, bad_rate - 1)) == 0:
        kw["activation"] = draw(st.sampled_from(["tanh", "RELU", "", None, 1, "swish"]))
    if draw(st.integers(0, bad_rate - 1)) == 0:
        kw["positional"] = draw(st.sampled_from(["rope", "Learned", None, 0]))
    if draw(st.integers(0, bad_rate - 1)) == 0:
        kw["layer_norm_eps"] = draw(st.sampled_from([-1e-5, math.nan, math.inf, 1e39, 10 ** 400, "1e-5", None,
                                                     True, 3.0e38]))
    if draw(st.integers(0, bad_rate - 1)) == 0:
        kw["embedding_scale"] = draw(st.sampled_from([math.nan, -math.inf, 1e39, -10 ** 39, "2", True, 1e-45, 0]))
    return kw


def weight_bytes(c):
    """float32 bytes of the weights ``expected_weight_shapes`` documents (Python ints)."""
    E, F = c.d_model, c.dim_feedforward
    n = c.src_vocab_size * E + c.type_vocab_size * E
    n += 0 if c.share_embeddings else c.tgt_vocab_size * E
    n += 0 if c.tie_output else c.tgt_vocab_size * E
    n += c.tgt_vocab_size if c.output_bias else 0
    n += 2 * c.max_length * E if c.positional == "learned" else 0
    n += c.num_encoder_layers * (4 * E * E + 2 * E * F + F + 9 * E)
    n += c.num_decoder_layers * (8 * E * E + 2 * E * F + F + 15 * E)
    return 4 * n


def either(types, *names):
    """Problems allowing success or one of these errors."""
    p = Problems()
    p.add(types, *names, optional=True)
    return p


@fuzz(200)
@given(config_kwargs(), st.integers(0, 2 ** 32 - 1), st.data())
def test_fuzz_config_and_model(kw, seed, data):
    problems = config_problems(kw)
    note(f"config {kw!r}")
    config, err = attempt(lambda: pt.TransformerConfig(**kw))
    judge(problems, config, err, what="TransformerConfig")
    if err is not None:
        assert "TransformerConfig" in str(err), f"the error does not name TransformerConfig: {err}"
    if config is None:
        return
    assert pt.TransformerConfig.from_json(config.to_json()) == config
    if weight_bytes(config) > 2 ** 24:
        return  # weights too large to make here (an int32 vocabulary, say): the config alone was the test
    if 8 * config.max_length * config.d_model > 2 ** 24:
        # Small weights, huge position tables (an int32 max_length): the model must be
        # refused before allocating with an error naming the size, or built; in a child
        # (memory, time).
        w = weights_for(config, seed)
        problems = Problems()
        size_outcome(8 * config.max_length * config.d_model, problems, "max_length")
        summary = deadline_outcome(lambda: pt.Transformer(config, w), problems, "", "Transformer(large max_length)")
        note(f"large model: {summary}")
        return
    w = weights_for(config, seed)
    model = pt.Transformer(config, w)
    draw = data.draw
    B = draw(st.integers(0, 3))
    S = draw(st.integers(0, config.max_length))
    T = draw(st.integers(0, config.max_length))
    rng = np.random.default_rng(seed)
    src = rng.integers(0, config.src_vocab_size, (B, S))
    tgt = rng.integers(0, config.tgt_vocab_size, (B, T))
    lengths = None if draw(st.booleans()) else rng.integers(0, S + 1, B)
    memory = expect(Problems(), lambda: model.encode(src, lengths), what="encode")
    if memory is None:  # refused: its buffers would exceed the machine's memory
        return
    expected = reference_encode(config, w, src, lengths)
    assert_model_close(memory, expected, valid_positions(lengths, B, S), f"encode {config}")
    logits = expect(Problems(), lambda: model.decode(tgt, memory, lengths), what="decode")
    if logits is None:
        return
    assert_model_close(logits, reference_decode(config, w, tgt, expected, lengths), np.ones((B, T), bool),
                       f"decode {config}")


# ---------------------------------------------------------------------------
# encode / decode with random ids, lengths and dtypes
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def fixed_model(name):
    """Small models: "a" post-LN, 2+2 layers; "b" pre-LN, learned positions, shared
    tied embeddings, token types, embedding norm; "lively" for generation."""
    if name == "a":
        c = pt.TransformerConfig(d_model=12, nhead=3, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=20,
                                 src_vocab_size=13, tgt_vocab_size=11, max_length=16)
    else:
        c = pt.TransformerConfig(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                                 src_vocab_size=9, tgt_vocab_size=9, max_length=12, norm_first=True,
                                 positional="learned", share_embeddings=True, tie_output=True, type_vocab_size=2,
                                 embedding_norm=True, activation="silu", pad_id=8, bos_id=7, eos_id=0)
    w = weights_for(c, 7)
    return pt.Transformer(c, w), w


ID_DTYPES = (np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64, np.intp)


def id_array(draw, rng, shape, vocab, problems, name, max_length, one_d_ok=False, bad=True):
    """Token ids as an array (some dtype and layout) or list, sometimes wrong."""
    ids = rng.integers(0, vocab, shape)
    kind = draw(st.sampled_from(["ok"] * 10 + ["list"] + (["out_of_range", "negative", "float", "bool", "rank1",
                                                           "rank3", "too_long", "ragged", "object_str", "none"]
                                                          if bad else [])))
    dtype = draw(st.sampled_from(ID_DTYPES))
    if kind in ("ok", "list", "too_long"):
        if kind == "too_long":
            ids = rng.integers(0, vocab, (shape[0], max_length + draw(st.integers(1, 3))))
            problems.add(ValueError, name)
        if kind == "list":
            if shape[0] == 0:  # [] cannot say [0, S]: a 1-d float array
                problems.add(ValueError, name)
            return ids.tolist()
        arr = ids.astype(dtype)
        layout = draw(st.sampled_from(["c", "f", "strided", "big_endian", "reversed"]))
        if layout == "f":
            arr = np.asfortranarray(arr)
        elif layout == "strided" and arr.size:
            buf = np.zeros((arr.shape[0], 2 * arr.shape[1]), arr.dtype)
            buf[:, ::2] = arr
            arr = buf[:, ::2]
        elif layout == "big_endian" and arr.dtype.itemsize > 1:
            arr = arr.astype(arr.dtype.newbyteorder(">"))
        elif layout == "reversed" and arr.size:
            arr = np.ascontiguousarray(arr[::-1])[::-1]
        return arr
    if kind in ("out_of_range", "negative"):
        if ids.size == 0:
            return ids
        bad = draw(st.sampled_from([vocab, vocab + 1, 2 ** 31, 2 ** 40, 2 ** 63 - 1])) if kind == "out_of_range" \
            else draw(st.sampled_from([-1, -2 ** 31, -2 ** 63]))
        ids = ids.astype(np.int64)
        ids.flat[draw(st.integers(0, ids.size - 1))] = bad
        if bad >= 2 ** 63 - 1 or bad < -2 ** 31:
            pass
        problems.add((ValueError, OverflowError), name)
        return ids
    if kind == "float":
        if ids.size == 0:
            return ids.astype(np.float64)  # an empty float array reads as no ids (documented as [])
        problems.add(TypeError, name)
        return ids.astype(np.float32)
    if kind == "bool":
        problems.add(TypeError, name)
        return ids.astype(bool)
    if kind == "rank1":
        if not one_d_ok:
            problems.add(ValueError, name)
        return ids.reshape(-1)
    if kind == "rank3":
        problems.add(ValueError, name)
        return ids.reshape(ids.shape + (1,))
    if kind == "ragged":
        if shape[0] < 2 or shape[1] < 1:
            return ids
        problems.add((ValueError, TypeError), name)
        rows = ids.tolist()
        rows[0] = rows[0][:-1]
        return rows
    if kind == "object_str":
        problems.add(TypeError, name)
        return np.array([["a"] * shape[1]] * shape[0], dtype=object) if ids.size else "abc"
    problems.add(TypeError, name)
    return None


def lengths_arg(draw, rng, B, S, problems, name, bad=True):
    kind = draw(st.sampled_from(["none", "none", "ok", "ok", "ok", "list"] +
                                (["too_long", "negative", "float", "shape", "scalar"] if bad else [])))
    lengths = rng.integers(0, S + 1, B)
    if kind == "none":
        return None, None
    if kind == "ok":
        return lengths.astype(draw(st.sampled_from(ID_DTYPES))), lengths
    if kind == "list":
        return lengths.tolist(), lengths
    if B == 0 and kind in ("too_long", "negative", "float"):
        return lengths.astype(np.float64) if kind == "float" else lengths, lengths  # empty: fine
    problems.add((TypeError, ValueError), name)
    if kind == "too_long":
        return (lengths + S + 1), None
    if kind == "negative":
        return lengths - S - 1, None
    if kind == "float":
        return lengths.astype(np.float64) + 0.5, None
    if kind == "shape":
        return np.append(lengths, 1), None
    return 3, None


@fuzz(200)
@given(st.sampled_from(["a", "b"]), st.integers(0, 2 ** 32 - 1), st.data())
def test_fuzz_encode_decode(name, seed, data):
    draw = data.draw
    model, w = fixed_model(name)
    c = model.config
    rng = np.random.default_rng(seed)
    B, S, T = draw(st.integers(0, 3)), draw(st.integers(0, c.max_length)), draw(st.integers(0, c.max_length))
    problems = Problems()
    src = id_array(draw, rng, (B, S), c.src_vocab_size, problems, "src_ids", c.max_length)
    src_lengths, lengths = lengths_arg(draw, rng, B, S, problems, "src_lengths")
    note(f"model {name}: encode src={src!r} lengths={src_lengths!r}")
    memory = expect(problems, lambda: model.encode(src, src_lengths), what="encode")
    if memory is None:
        return
    src_arr = np.asarray(src, dtype=np.int64).reshape(B, S)
    expected = reference_encode(c, w, src_arr, lengths)
    assert_model_close(memory, expected, valid_positions(lengths, B, S), "encode")

    problems = Problems()
    tgt = id_array(draw, rng, (B, T), c.tgt_vocab_size, problems, "tgt_ids", c.max_length)
    mem_kind = draw(st.sampled_from(["ok"] * 6 + ["float64", "list", "rank2", "batch", "width", "strided"] +
                                    ["nan_padding"] * 4))
    mem = memory
    if mem_kind == "float64":
        mem = memory.astype(np.float64)
        problems.add(TypeError, "memory")
    elif mem_kind == "list":
        mem = memory.tolist()
        problems.add(TypeError, "memory")
    elif mem_kind == "rank2":
        mem = memory.reshape(B, S * c.d_model)
        problems.add(ValueError, "memory")
    elif mem_kind == "batch":
        mem = np.concatenate([memory, memory[:1] if B else np.zeros((1, S, c.d_model), F32)])
        problems.add(ValueError, "memory")
    elif mem_kind == "width":
        mem = np.zeros((B, S, c.d_model + 1), F32)
        problems.add(ValueError, "memory")
    elif mem_kind == "strided" and memory.size:
        mem = strided(memory)
    elif mem_kind == "nan_padding":
        # "values at padding positions are unspecified": whatever they hold (NaN,
        # inf), no position attends to them
        mem = memory.copy()
        # (NaN and inf there: the known bug of scrub_masked_keys)
        mem[~valid_positions(lengths, B, S)] = draw(st.sampled_from([1e30, -1e30, 3e38]))
    return_attention = draw(st.booleans())
    note(f"decode tgt={tgt!r} memory={mem_kind}")
    padded = lengths is not None and bool((np.asarray(lengths) < S).any())
    event(f"decode memory: {mem_kind}{' (padded)' if padded else ''}")
    out = expect(problems, lambda: model.decode(tgt, mem, src_lengths, return_attention=return_attention),
                 what="decode")
    if out is None:
        return
    tgt_arr = np.asarray(tgt, dtype=np.int64).reshape(B, T)
    logits, attention = out if return_attention else (out, None)
    assert_model_close(logits, reference_decode(c, w, tgt_arr, expected, lengths), np.ones((B, T), bool), "decode")
    if attention is not None:
        assert attention.shape == (B, T, S) and attention.dtype == F32
        if c.num_decoder_layers and B and T:
            sums = attention.astype(np.float64).sum(axis=-1)
            has_keys = (np.full(B, S) if lengths is None else np.asarray(lengths)) > 0
            np.testing.assert_allclose(sums[has_keys], 1.0, atol=1e-4)


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def generation_model(name):
    """Models whose outputs depend on the source and end at various lengths: random
    weights plus a permuted target embedding table in the output layer (each token
    points to a next one) and a bias on EOS; "tiny" has a 4-token target vocabulary
    and other special ids."""
    if name == "small":
        c = pt.TransformerConfig(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                 dim_feedforward=24, src_vocab_size=12, tgt_vocab_size=10, max_length=20)
        eos_bias = 2.5
    else:
        c = pt.TransformerConfig(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                                 dim_feedforward=8, src_vocab_size=6, tgt_vocab_size=4, max_length=9, norm_first=True,
                                 pad_id=3, bos_id=3, eos_id=0)
        eos_bias = 1.0
    rng = np.random.default_rng(5)
    w = weights_for(c, 11)
    emb = w["tgt_embed.weight"] / np.linalg.norm(w["tgt_embed.weight"], axis=1, keepdims=True)
    w["generator.weight"] = ((w["generator.weight"] + emb[rng.permutation(c.tgt_vocab_size)]) * 3.0).astype(F32)
    bias = rng.normal(0.0, 1.0, c.tgt_vocab_size)
    bias[c.eos_id] += eos_bias
    w["generator.bias"] = bias.astype(F32)
    return pt.Transformer(c, w)


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def teacher_forced(model, src_row, length, prefixes):
    """float64 log-softmax [n, T, V] of bos + each prefix (padded to one length with the
    causal mask making padding after a position irrelevant), one decode call."""
    c = model.config
    rows = [[c.bos_id] + list(p) for p in prefixes]
    T = max(len(r) for r in rows)
    tgt = np.array([r + [0] * (T - len(r)) for r in rows], dtype=np.int64)
    memory = model.encode(src_row[None, :], None if length is None else [length])
    n = len(rows)
    lengths = None if length is None else np.full(n, length)
    return log_softmax(model.decode(tgt, np.repeat(memory, n, axis=0), lengths))


def greedy_reference(model, src_row, length, start, opts, max_length):
    """The greedy loop over teacher-forced decode logits: masks suppressed ids (and
    EOS before min_length), forces EOS as the max_length-th token with forced_eos.
    Returns (sequence, margin): margin is the smallest best-vs-second gap seen."""
    c = model.config
    suppress = set(opts.get("suppress_tokens") or ())
    min_length, forced_eos = opts.get("min_length", 0), opts.get("forced_eos", False)
    seq, margin = list(start), np.inf
    for g in range(max_length):
        if forced_eos and g == max_length - 1:
            break
        lp = teacher_forced(model, src_row, length, [seq])[0, len(seq)]
        lp[list(suppress)] = -np.inf
        if g < min_length:
            lp[c.eos_id] = -np.inf
        order = np.argsort(-lp, kind="stable")
        if np.isfinite(lp[order[1]]):
            margin = min(margin, float(lp[order[0]] - lp[order[1]]))
        tok = int(order[0])
        if tok == c.eos_id:
            break
        seq.append(tok)
    return seq, margin


def generable(V, eos, suppressed, min_length, max_length, forced_eos):
    """Whether every step has some token it may generate."""
    if forced_eos and max_length == 1:
        return True
    allowed = set(range(V)) - set(suppressed)
    if not allowed:
        return False
    return not (allowed == {eos} and min_length >= 1)


@st.composite
def generation_options(draw, model, B, beam):
    """(options, problems, effective values) drawn from valid and invalid ranges."""
    c = model.config
    V = c.tgt_vocab_size
    opts, p = {}, Problems()
    eff = {}
    # per example: no bad option at all, a few, or many
    bad_weight = draw(st.sampled_from([0, 0, 0, 1, 1, 4]))

    def pick(name, valid, bad=(), either=(), default=None):
        kind = draw(st.sampled_from(["default"] * 4 + ["valid"] * 4 + (["bad"] * bad_weight if bad else []) +
                                    (["either"] if either and bad_weight else [])))
        if kind == "default":
            return default, "default"
        if kind == "valid":
            v = draw(valid)
            opts[name] = v
            return v, "valid"
        if kind == "either":
            v, types = draw(st.sampled_from(either))
            opts[name] = v
            p.add(types, name, optional=True)
            return v, "either"
        v, types = draw(st.sampled_from(bad))
        opts[name] = v
        p.add(types, name)
        return v, "bad"

    TE, VE, OE = TypeError, ValueError, (ValueError, OverflowError)
    # start tokens first: they bound max_length
    start, kind = None, "none"
    if draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(["ok"] * 6 + ["count", "range", "float", "str", "row_str"] * bad_weight))
        rows = [draw(st.lists(st.integers(0, V - 1), max_size=3)) for _ in range(B)]
        if kind == "ok":
            start = [np.array(r, dtype=np.int64) if draw(st.booleans()) else r for r in rows]
            if draw(st.booleans()):
                start = tuple(start)
        elif kind == "count":
            start = rows + [[1]]
            p.add(VE, "start_tokens")
        elif kind == "range":
            start = [r + [draw(st.sampled_from([V, -1, 2 ** 40]))] for r in rows]
            p.add(VE, "start_tokens")
        elif kind == "float":
            start = [r + [1.0] for r in rows]
            p.add(TE, "start_tokens")
        elif kind == "str":
            start = "abc"
            p.add(TE, "start_tokens")
        else:
            start = [["x"]] * B
            p.add((TE, VE), "start_tokens")
        opts["start_tokens"] = start
    try:  # as documented for max_length=None: the room the start tokens leave
        longest = max((len(r) for r in start), default=0) if start is not None else 0
    except TypeError:
        longest = 0

    room = c.max_length - longest
    max_length, mk = pick("max_length", st.integers(1, max(1, min(room, 12))),
                          bad=[(0, VE), (-3, VE), (c.max_length + 1, VE), (2 ** 31, OE), (2 ** 64, OE), (2.0, TE),
                               ("5", TE), (True, TE)] + ([(room + 1, VE)] if longest else []))
    if mk == "default":
        max_length = max(1, min(256, room))
    eff["max_length"] = max_length
    if mk != "bad" and max_length > room:
        p.add(VE, "max_length", "start tokens")
    ml_int = max_length if mk != "bad" else 1
    min_length, nk = pick("min_length", st.integers(0, ml_int),
                          bad=[(-1, VE), (2 ** 40, OE), (1.5, TE), (None, TE), (True, TE), (ml_int + 1, VE)])
    if nk == "default":
        min_length = 0
    eff["min_length"] = min_length if nk != "bad" else 0
    if beam:
        beam_size, bk = pick("beam_size", st.integers(1, 5),
                             bad=[(0, VE), (-1, VE), (2 ** 31 - 1, (ValueError, MemoryError)), (2 ** 31, OE),
                                  (2 ** 64, OE), (2.0, TE), (True, TE)])
        if bk == "default":
            beam_size = 1
        K = beam_size if bk != "bad" else 1
        nh, hk = pick("num_hypotheses", st.integers(1, K),
                      bad=[(0, VE), (K + 1, VE), (2 ** 63, OE), (1.0, TE)])
        eff["num_hypotheses"] = nh if hk in ("valid",) else 1
        eff["beam_size"] = K
        pen, _ = pick("length_penalty", st.sampled_from([1.0, 0.0, -1.0, 2.5, 0.5, 1e30, -1e30, 3.0e38, 2]),
                      bad=[(math.nan, VE), (math.inf, VE), (-math.inf, VE), ("1", TE), (None, TE)],
                      either=[(1e39, (ValueError,)), (1e300, (ValueError,))])
        eff["length_penalty"] = 1.0 if pen is None or isinstance(pen, str) else pen
        ret, _ = pick("return_scores", st.booleans(), bad=[(1, TE), (None, TE)])
        eff["return_scores"] = True if ret is None or not isinstance(ret, bool) else ret
    else:
        beam_size = 1
        eff.update(beam_size=1, num_hypotheses=1, length_penalty=1.0, return_scores=False)
    topk, tk = pick("sampling_topk", st.sampled_from([1, 1, 0, 2, 3, V, V + 5, 2 ** 40]),
                    bad=[(-1, VE), (1.0, TE), (None, TE)])
    eff["sampling_topk"] = 1 if tk in ("default", "bad") else topk
    if eff["beam_size"] > 1 and eff["sampling_topk"] != 1:
        p.add(VE, "sampling", "beam_size")
    pick("sampling_topp", st.sampled_from([1.0, 0.9, 0.5, 1e-9, 1e-300]),
         bad=[(0.0, VE), (-0.1, VE), (1.0000001, VE), (math.nan, VE), ("0.5", TE)])
    pick("sampling_temperature", st.sampled_from([1.0, 0.5, 2.0, 1e-30, 1e-300, 1e30]),
         bad=[(0.0, VE), (-1.0, VE), (math.nan, VE), (math.inf, VE), (None, TE)],
         either=[(1e300, (ValueError,)), (1e39, (ValueError,))])
    seed, sk = pick("seed", st.sampled_from([0, 1, 12345, 2 ** 64 + 5, 2 ** 200, np.uint64(2 ** 63)]),
                    bad=[(-1, VE), (1.5, TE), ("1", TE)])
    eff["seed"] = seed if sk == "valid" else None
    suppress_kind = draw(st.sampled_from(["none"] * 6 + ["some"] * 3 + ["array", "all_but_eos", "eos"] +
                                         ["all", "bad_range", "bad_type", "bad_str"] * bad_weight))
    suppressed = []
    if suppress_kind in ("some", "array"):
        suppressed = draw(st.lists(st.integers(0, V - 1), max_size=V, unique=True))
        opts["suppress_tokens"] = np.array(suppressed, dtype=np.int64) if suppress_kind == "array" else suppressed
    elif suppress_kind == "all":
        suppressed = list(range(V))
        opts["suppress_tokens"] = suppressed
    elif suppress_kind == "all_but_eos":
        suppressed = [t for t in range(V) if t != c.eos_id]
        opts["suppress_tokens"] = tuple(suppressed)
    elif suppress_kind == "eos":
        suppressed = [c.eos_id]
        opts["suppress_tokens"] = suppressed
    elif suppress_kind == "bad_range":
        opts["suppress_tokens"] = [draw(st.sampled_from([V, -1, 2 ** 70]))]
        p.add(VE, "suppress_tokens")
    elif suppress_kind == "bad_type":
        opts["suppress_tokens"] = [1.0]
        p.add(TE, "suppress_tokens")
    elif suppress_kind == "bad_str":
        opts["suppress_tokens"] = "12"
        p.add(TE, "suppress_tokens")
    eff["suppress_tokens"] = suppressed
    forced, fk = pick("forced_eos", st.booleans(), bad=[(1, TE), (None, TE)])
    eff["forced_eos"] = forced if fk == "valid" else False
    if not generable(V, c.eos_id, suppressed, eff["min_length"], ml_int, eff["forced_eos"]):
        p.add(VE, "nothing can be generated", "suppress_tokens")
    eff["start"] = start
    eff["bad_weight"] = bad_weight
    return opts, p, eff


def check_hypotheses(model, src_row, length, result, eff, start, what):
    """Structure, lengths, ids, order and scores of one source's hypotheses; their
    log-probabilities against teacher-forced decode. Returns the sequences."""
    c = model.config
    V, eos = c.tgt_vocab_size, c.eos_id
    seqs = result.sequences
    nh = eff["num_hypotheses"]
    assert 1 <= len(seqs) <= nh, f"{what}: {len(seqs)} hypotheses for num_hypotheses={nh}"
    assert len({tuple(s) for s in seqs}) == len(seqs), f"{what}: repeated hypotheses {seqs}"
    max_length, min_length, forced = eff["max_length"], eff["min_length"], eff["forced_eos"]
    suppressed = set(eff["suppress_tokens"])
    start = list(start or [])
    for s in seqs:
        assert all(type(t) is int for t in s), f"{what}: ids must be ints: {s}"
        assert s[:len(start)] == start, f"{what}: {s} does not begin with the start tokens {start}"
        gen = s[len(start):]
        assert all(0 <= t < V for t in gen), f"{what}: invalid id in {s}"
        assert eos not in gen, f"{what}: EOS inside {s}"
        assert not set(gen) & suppressed, f"{what}: suppressed id in {s} (suppressed {sorted(suppressed)})"
        longest = max_length - 1 if forced else max_length
        assert len(gen) <= longest, f"{what}: {len(gen)} generated tokens > max_length {max_length} ({s})"
        assert len(gen) >= min(min_length, longest), f"{what}: {len(gen)} tokens < min_length {min_length}"
        if eos in suppressed and not forced:
            assert len(gen) == max_length, f"{what}: EOS is suppressed, yet {s} ended early"
    if not eff["return_scores"]:
        assert result.scores is None and result.log_probs is None
        return seqs
    assert len(result.scores) == len(result.log_probs) == len(seqs)
    pen = eff["length_penalty"]
    for s, score, lp in zip(seqs, result.scores, result.log_probs):
        gen = s[len(start):]
        ended = len(gen) < max_length  # by EOS (generated or forced)
        forced_end = forced and len(gen) == max_length - 1
        # the logits that predicted each generated token (and a generated EOS)
        rows = teacher_forced(model, src_row, length, [s if ended and not forced_end else s[:-1]])[0]
        expected = sum(rows[len(start) + t, tok] for t, tok in enumerate(gen))
        if ended and not forced_end:
            expected += rows[len(s), eos]
        assert math.isfinite(lp) and lp <= 1e-4, f"{what}: log_prob {lp} of {s}"
        assert abs(lp - expected) <= 1e-3 * (1 + abs(expected)), \
            f"{what}: log_prob {lp} of {s}, teacher-forced decode gives {expected}"
        g = len(gen) + (1 if ended else 0)
        assert not math.isnan(score), f"{what}: NaN score for {s}"
        with np.errstate(all="ignore"):
            want = float(np.float64(lp) / np.float64(g) ** np.float64(pen)) if g else float(lp)
        if math.isfinite(want) and abs(want) < F32_MAX / 2:
            assert math.isfinite(score), f"{what}: score {score} of {s}; log_prob / length**penalty = {want}"
            assert abs(score - want) <= 1e-3 * (1 + abs(want)), f"{what}: score {score} of {s}, expected {want}"
    assert all(a >= b for a, b in zip(result.scores, result.scores[1:])), \
        f"{what}: scores not sorted: {result.scores}"
    return seqs


@fuzz(220)
@given(st.sampled_from(["small", "small", "tiny"]), st.integers(0, 2 ** 32 - 1), st.data())
def test_fuzz_generate(name, seed, data):
    draw = data.draw
    model = generation_model(name)
    c = model.config
    rng = np.random.default_rng(seed)
    B, S = draw(st.integers(1, 3)), draw(st.integers(0, 6))
    problems = Problems()
    opts, p2, eff = draw(generation_options(model, B, beam=True))
    bad = eff["bad_weight"] > 0
    src = id_array(draw, rng, (B, S), c.src_vocab_size, problems, "src_ids", c.max_length, bad=bad)
    src_lengths, lengths = lengths_arg(draw, rng, B, S, problems, "src_lengths", bad=bad)
    problems.extend(p2)
    note(f"model {name}: generate(src={src!r}, src_lengths={src_lengths!r}, **{opts!r})")
    results = expect(problems, lambda: model.generate(src, src_lengths, **opts), what="generate")
    if results is None:
        return
    assert isinstance(results, list) and len(results) == B
    src_arr = np.asarray(src, np.int64).reshape(B, S)
    start = eff["start"]
    all_seqs = []
    for b, r in enumerate(results):
        assert isinstance(r, pt.GenerationResult)
        L = None if lengths is None else int(lengths[b])
        row_start = None if start is None else [int(t) for t in start[b]]
        all_seqs.append(check_hypotheses(model, src_arr[b], L, r, eff, row_start, f"generate source {b}"))
        if eff["beam_size"] == 1 and eff["sampling_topk"] == 1:
            expected, margin = greedy_reference(model, src_arr[b], L, row_start or [], eff, eff["max_length"])
            if margin > 1e-4:
                assert r.sequences == [expected], \
                    f"greedy source {b}: got {r.sequences}, the greedy loop over decode gives {expected}"
        elif eff["sampling_topk"] > 1 and eff["sampling_topk"] < c.tgt_vocab_size:
            check_top_k(model, src_arr[b], L, row_start or [], r.sequences[0], eff)
    if eff["sampling_topk"] != 1 and eff["seed"] is not None:
        again = model.generate(src, src_lengths, **opts)
        assert [x.sequences for x in again] == all_seqs, "the same seed gave other samples"


def check_top_k(model, src_row, length, start, seq, eff):
    """Each sampled token is among the k most likely ids that may be generated there."""
    c = model.config
    k = eff["sampling_topk"]
    lps = teacher_forced(model, src_row, length, [seq[:-1]])[0]
    suppressed = list(eff["suppress_tokens"])
    for t in range(len(start), len(seq)):
        lp = lps[t].copy()
        lp[suppressed] = -np.inf
        if t - len(start) < eff["min_length"]:
            lp[c.eos_id] = -np.inf
        kth = np.sort(lp)[::-1][k - 1]
        assert lp[seq[t]] >= kth - 1e-4, f"token {seq[t]} at {t} is not among the top {k}: {lp}"


@fuzz(100)
@given(st.sampled_from(["small", "tiny"]), st.integers(0, 2 ** 32 - 1), st.data())
def test_fuzz_generate_tokens(name, seed, data):
    draw = data.draw
    model = generation_model(name)
    c = model.config
    rng = np.random.default_rng(seed)
    S = draw(st.integers(0, 6))
    problems = Problems()
    opts, p2, eff = draw(generation_options(model, 1, beam=False))
    src = id_array(draw, rng, (1, S), c.src_vocab_size, problems, "src_ids", c.max_length, one_d_ok=True,
                   bad=eff["bad_weight"] > 0)
    one_d = draw(st.booleans()) and isinstance(src, np.ndarray) and src.ndim == 2
    if one_d:
        src = src[0]
    problems.extend(p2)
    if "start_tokens" in opts:
        st_ = opts["start_tokens"]
        opts["start_tokens"] = st_[0] if isinstance(st_, (list, tuple)) and len(st_) == 1 else st_
        if isinstance(st_, (list, tuple)) and len(st_) != 1:
            # generate_tokens takes one list: a list of two lists holds lists, not ids
            problems.add((TypeError, ValueError), "start_tokens")
    note(f"model {name}: generate_tokens(src={src!r}, **{opts!r})")
    tokens = expect(problems, lambda: list(model.generate_tokens(src, **opts)), what="generate_tokens")
    if tokens is None:
        return
    src_row = np.asarray(src, np.int64).reshape(-1)
    start = [] if eff["start"] is None else [int(t) for t in eff["start"][0]]
    result = pt.GenerationResult([start + tokens])
    check_hypotheses(model, src_row, None, result, dict(eff, return_scores=False), start, "generate_tokens")
    if eff["sampling_topk"] == 1:
        expected, margin = greedy_reference(model, src_row, None, start, eff, eff["max_length"])
        if margin > 1e-4:
            assert start + tokens == expected, f"generate_tokens: {tokens}, the greedy loop gives {expected}"
    elif 1 < eff["sampling_topk"] < c.tgt_vocab_size:
        check_top_k(model, src_row, None, start, start + tokens, eff)


# ---------------------------------------------------------------------------
# Transformer.load on malformed files
# ---------------------------------------------------------------------------

# Leaves of random JSON. No mid-size ints: a config with, say, max_length 3e8 is
# valid and would make the model compute (and hold) gigabytes of position tables.
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 80), st.floats(), st.text(max_size=8),
                      st.sampled_from([10 ** 400, -2 ** 70, 2 ** 31 - 1, 2 ** 31, 2 ** 40, 2 ** 63, 2 ** 64, "F32",
                                       "BF16", [2, 3], "relu", "gelu"]))
SAFE_VALUES = JSON_LEAF
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=4),
                    max_leaves=12)


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory):
    c = pt.TransformerConfig(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8,
                             src_vocab_size=7, tgt_vocab_size=6, max_length=10)
    model = pt.Transformer(c, weights_for(c, 3))
    path = tmp_path_factory.mktemp("fuzz_load") / "good.safetensors"
    model.save(path, metadata={"vocab": "[1, 2]"})
    return path.read_bytes(), c


def _split(blob):
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _join(header, data, pad=True):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data


@st.composite
def malformed_file(draw, good, config):
    header, data = _split(good)
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "random", "header_len", "header_json",
                                 "entry", "metadata", "config", "config_values", "data_values", "empty",
                                 "deep"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "truncate":
        return kind, good[:draw(st.integers(0, len(good) - 1))]
    if kind == "flip":
        b = bytearray(good)
        for _ in range(draw(st.integers(1, 8))):
            i = int(rng.integers(0, len(b))) if draw(st.booleans()) else int(rng.integers(0, min(len(b), 400)))
            b[i] = int(rng.integers(0, 256))
        return kind, bytes(b)
    if kind == "insert":
        i = draw(st.integers(0, len(good)))
        return kind, good[:i] + draw(st.binary(min_size=1, max_size=16)) + good[i:]
    if kind == "random":
        return kind, draw(st.binary(max_size=300))
    if kind == "empty":
        return kind, b""
    if kind == "header_len":
        n = draw(st.sampled_from([0, 1, 2, 7, len(good) - 8, len(good), 2 ** 31, 2 ** 63, 2 ** 64 - 1,
                                  100_000_001]))
        return kind, n.to_bytes(8, "little") + good[8:]
    if kind == "header_json":
        return kind, _join(draw(JSON), data)
    if kind == "deep":
        return kind, _join(b"[" * draw(st.sampled_from([1000, 100_000])), data)
    if kind == "entry":
        names = sorted(k for k in header if k != "__metadata__")
        name = draw(st.sampled_from(names))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "whole", "delete", "extra"]))
        h = json.loads(json.dumps(header))
        if field == "whole":
            h[name] = draw(JSON)
        elif field == "delete":
            del h[name]
        elif field == "extra":
            h[name + ".copy"] = dict(h[name])
        else:
            h[name][field] = draw(st.one_of(JSON, st.sampled_from(
                ["F16", "BF16", "I32", "F64", "BOOL", "U8", [2 ** 40, 2 ** 40], [-1], [0],
                 [0, 2 ** 63], [0, 0], [8, 4]])))
        return kind, _join(h, data)
    h = json.loads(json.dumps(header))
    if kind == "metadata":
        h["__metadata__"] = draw(JSON)
        return kind, _join(h, data)
    if kind == "config":
        h["__metadata__"]["config"] = draw(st.one_of(JSON.map(json.dumps), st.text(max_size=20),
                                                     st.just("[" * 50_000), st.just("{" * 50_000)))
        return kind, _join(h, data)
    if kind == "config_values":
        cfg = config.to_dict()
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(sorted(cfg) + ["unknown_key"]))
            cfg[key] = draw(SAFE_VALUES)
        h["__metadata__"]["config"] = json.dumps(cfg)
        return kind, _join(h, data)
    # data_values: the header stays, the tensor bytes get NaN / inf / random floats
    arr = np.frombuffer(bytearray(data), np.uint8).copy()
    for _ in range(draw(st.integers(1, 4))):
        i = int(rng.integers(0, max(1, len(arr) // 4))) * 4
        arr[i:i + 4] = np.frombuffer(np.float32(draw(st.sampled_from([np.nan, np.inf, 1e30, -0.0, 3.5]))).tobytes(),
                                     np.uint8)
    return kind, _join(header, arr.tobytes(), pad=False)


@fuzz(250)
@given(st.data())
def test_fuzz_transformer_load(saved_file, data):
    good, config = saved_file
    kind, blob = data.draw(malformed_file(good, config))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        note(f"{kind}: {len(blob)} bytes, starting {blob[:120]!r}")
        try:
            model = pt.Transformer.load(path)
        except pt.WeightsError as e:
            event(f"load {kind}: WeightsError")
            check_message(e, ["problem(s) with the weights"], kind)
            assert e.problems and all(p.strip() for p in e.problems)
            return
        except DOCUMENTED as e:
            event(f"load {kind}: {type(e).__name__}")
            check_message(e, [repr(path), path], kind)  # names the file
            return
        event(f"load {kind}: ok")
        # Loaded: every weight is what an independent reader (safetensors) finds.
        from safetensors.numpy import load_file

        try:
            expected = load_file(path)
        except Exception as e:  # noqa: BLE001 - the reference rejects it: say so
            raise AssertionError(f"{kind}: pt.Transformer.load accepted a file safetensors rejects ({e})") from e
        sd = model.state_dict()
        assert sorted(sd) == sorted(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(sd[name], value.astype(F32), err_msg=name)
        assert model.config.d_model >= 1


def test_load_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        pt.Transformer.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError) as info:
        pt.Transformer.load(tmp_path)
    assert str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------
# from_pretrained on malformed folders
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_bases(tmp_path_factory):
    from hf_folders import bert_folder, marian_folder

    root = tmp_path_factory.mktemp("fuzz_hf")
    rng = np.random.default_rng(17)
    return {"bert": bert_folder(root / "bert", rng), "marian": marian_folder(root / "marian", rng)}


HF_KEYS = {
    "bert": ["hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "hidden_act",
             "vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
             "position_embedding_type", "is_decoder", "add_cross_attention", "model_type", "pad_token_id"],
    "marian": ["d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
               "encoder_ffn_dim", "decoder_ffn_dim", "activation_function", "vocab_size", "decoder_vocab_size",
               "max_position_embeddings", "scale_embedding", "share_encoder_decoder_embeddings", "pad_token_id",
               "eos_token_id", "decoder_start_token_id", "forced_eos_token_id", "normalize_before",
               "add_final_layer_norm", "tie_word_embeddings", "model_type"],
}
BENIGN = {
    "bert": {"hidden_act": ["gelu", "relu", "silu", "swish"], "layer_norm_eps": [1e-6, 1e-3, 0, 0.5],
             "num_attention_heads": [1, 2, 3, 4, 6, 9, 12, 18, 36], "pad_token_id": [0, 5, None],
             "unknown_key": [1, "x", None], "type_vocab_size": [2, None]},
    "marian": {"activation_function": ["swish", "gelu", "relu", "silu"],
               "encoder_attention_heads+decoder_attention_heads": [1, 2, 4, 8, 16, 32],
               "scale_embedding": [True, False], "pad_token_id": [0, 5, 39], "unknown_key": [[], {}]},
}
HF_VALUES = st.one_of(JSON_LEAF, st.sampled_from([0, 1, 2, 3, 4, 6, 9, 12, 36, 40, 64, 2 ** 31, 2 ** 40, -1, 1.5, "gelu",
                                                  "relu", "swish", "silu", "tanh", True, False, None, 1e-12,
                                                  float("nan"), float("inf"), 10 ** 400, "absolute", "relative_key",
                                                  [1], {"a": 1}]))


@fuzz(150)
@given(st.sampled_from(["bert", "bert", "marian"]), st.data())
def test_fuzz_from_pretrained(hf_bases, kind, data):
    draw = data.draw
    base, config, weights = hf_bases[kind]
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "model")
        os.makedirs(folder)
        shutil.copy(os.path.join(base, "model.safetensors"), folder)
        cfg = dict(config)
        how = draw(st.sampled_from(["values"] * 6 + ["benign"] * 4 + ["delete", "json", "bytes", "extra_file"]))
        changed = []
        text = None
        if how == "values":
            for _ in range(draw(st.integers(1, 3))):
                key = draw(st.sampled_from(HF_KEYS[kind] + ["unknown_key"]))
                cfg[key] = draw(HF_VALUES)
                changed.append(key)
        elif how == "benign":  # other values that still fit the weights
            for key, values in BENIGN[kind].items():
                if draw(st.booleans()):
                    value = draw(st.sampled_from(values))
                    for k in key.split("+"):
                        cfg[k] = value
                        changed.append(k)
        elif how == "delete":
            key = draw(st.sampled_from(HF_KEYS[kind]))
            cfg.pop(key, None)
            changed.append(key)
        elif how == "json":
            text = json.dumps(draw(JSON))
        elif how == "bytes":
            text = draw(st.binary(max_size=64))
        if text is None:
            text = json.dumps(cfg)
        cfg_file = os.path.join(folder, "config.json")
        with open(cfg_file, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        if how == "extra_file":
            which = draw(st.sampled_from(["modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                                          "generation_config.json", "model.safetensors.index.json"]))
            os.makedirs(os.path.dirname(os.path.join(folder, which)), exist_ok=True)
            with open(os.path.join(folder, which), "w") as f:
                f.write(draw(st.one_of(JSON.map(json.dumps), st.text(max_size=20))))
            changed.append(which)
        note(f"{kind} {how}: config.json = {text[:300]!r}")
        try:
            model = pt.from_pretrained(folder)
        except pt.WeightsError as e:
            event(f"from_pretrained {kind}: WeightsError")
            check_message(e, ["problem(s) with the weights"], kind)
            return
        except (ValueError, FileNotFoundError, MemoryError) as e:
            event(f"from_pretrained {kind}: {type(e).__name__}")
            check_message(e, ["from_pretrained"], kind)
            # the file, a changed key, or a word of one ("encoder/decoder head counts")
            words = [w for k in changed for w in k.replace(".", "_").replace("/", "_").split("_") if len(w) >= 4]
            check_message(e, [folder, "model_type", "config.json"] + changed + words, kind)
            return
        event(f"from_pretrained {kind}: ok")
        rng = np.random.default_rng(0)
        if kind == "bert":
            from hf_folders import bert_reference

            assert isinstance(model, pt.EncoderModel)
            clean = {k: v for k, v in cfg.items() if v is not None}
            clean.setdefault("hidden_act", "gelu")
            clean.setdefault("layer_norm_eps", 1e-12)
            S = min(7, model.config.max_length)
            ids = rng.integers(0, clean["vocab_size"], (2, S))
            np.testing.assert_allclose(model.encode(ids), bert_reference(clean, weights, ids), atol=2e-4, rtol=0)
        else:
            assert isinstance(model, pt.Transformer)
            np.testing.assert_array_equal(model.state_dict()["src_embed.weight"], weights["model.shared.weight"])
            ids = rng.integers(0, model.config.src_vocab_size, (1, 5))
            out = model.generate(ids, max_length=4)
            assert all(0 <= t < model.config.tgt_vocab_size for t in out[0].sequences[0])


def test_nonfinite_masked_key_does_not_leak():
    """Regression: a NaN/inf in a masked key (or a NaN query with every key masked)
    used to give NaN through NaN + -inf in the fused score mask."""
    q = np.ones((1, 1, 1, 1), F32)
    v = np.array([[[[2.0], [3.0]]]], F32)
    for bad in (np.nan, np.inf, -np.inf):
        k = np.array([[[[1.0], [bad]]]], F32)
        out = pt.ops.attention(q, k, v, key_padding_mask=np.array([[False, True]]))
        np.testing.assert_array_equal(out, np.full((1, 1, 1, 1), 2.0, F32))
    out = pt.ops.attention(np.full((1, 1, 1, 1), np.nan, F32), k, v, key_padding_mask=np.array([[True, True]]))
    np.testing.assert_array_equal(out, np.zeros((1, 1, 1, 1), F32))


@pytest.mark.xfail(strict=True, reason="known bug: a NaN in a masked value reaches the output (0 * NaN in P.V)")
def test_known_bug_nonfinite_at_masked_values():
    q = np.ones((1, 1, 1, 1), F32)
    k = np.array([[[[1.0], [1.0]]]], F32)
    v = np.array([[[[2.0], [np.nan]]]], F32)
    out = pt.ops.attention(q, k, v, key_padding_mask=np.array([[False, True]]))
    np.testing.assert_array_equal(out, np.full((1, 1, 1, 1), 2.0, F32))


def test_visible_keys_scoring_minus_inf_give_nan_like_the_reference():
    """Regression (found by this suite in CI): a row whose only visible keys score -inf
    is exp(-inf - -inf) = NaN in the reference (and torch), not the zeros of a row that
    sees no key; a -inf among finite scores is just a zero weight."""
    q = np.ones((1, 1, 1, 1), F32)
    k = np.full((1, 1, 1, 1), -np.inf, F32)
    v = np.ones((1, 1, 1, 1), F32)
    assert np.isnan(pt.ops.attention(q, k, v)).all()
    assert (pt.ops.attention(q, k, v, key_padding_mask=np.array([[True]])) == 0).all()
    k2 = np.concatenate([k, np.ones((1, 1, 70, 1), F32)], axis=2)
    np.testing.assert_allclose(pt.ops.attention(q, k2, np.ones((1, 1, 71, 1), F32)), np.ones((1, 1, 1, 1)),
                               rtol=1e-6)

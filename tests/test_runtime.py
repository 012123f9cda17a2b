"""runtime_info, ISA selection at import (PYTRANSFORMER_ISA) and thread controls."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile

import pytest

import pytransformer as pt
from pytransformer import _core

KNOWN_ISAS = ["generic", "avx2", "avx512"]


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def is_x86():
    return platform.machine().lower() in ("x86_64", "amd64", "x64")


def run_python(code, **env_changes):
    """Run `code` in a fresh interpreter with the environment changed (None removes a
    variable); returns (stdout, stderr)."""
    env = dict(os.environ)
    for name in ("PYTRANSFORMER_ISA", "PYTRANSFORMER_NUM_THREADS", "OMP_NUM_THREADS"):
        env.pop(name, None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    # Run outside the repository, so the child imports exactly what this process does.
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


INFO_CODE = "import json, pytransformer as pt; print(json.dumps(pt.runtime_info()))"
LOCATION_CODE = "import pytransformer; print(pytransformer.__file__)"

WARN_CODE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pytransformer as pt
print(json.dumps({"info": pt.runtime_info(),
                  "warnings": [[w.category.__name__, str(w.message)] for w in caught]}))
"""


# ---------------------------------------------------------------------------
# runtime_info
# ---------------------------------------------------------------------------


def test_subprocess_imports_the_same_package():
    assert run_python(LOCATION_CODE)[0].strip() == pt.__file__


def test_runtime_info_keys_and_types():
    info = pt.runtime_info()
    assert set(info) >= {"version", "isa", "isa_available", "multithreaded", "num_threads", "physical_cores"}
    assert info["version"] == pt.__version__ and isinstance(info["version"], str)
    assert info["isa"] in KNOWN_ISAS
    assert isinstance(info["isa_available"], list) and info["isa_available"]
    assert all(isinstance(name, str) for name in info["isa_available"])
    assert isinstance(info["multithreaded"], bool)
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert isinstance(info["physical_cores"], int) and info["physical_cores"] >= 1
    assert info["num_threads"] == pt.get_num_threads()


def test_isa_available_is_ordered_best_last():
    available = pt.runtime_info()["isa_available"]
    assert available[0] == "generic"
    assert len(set(available)) == len(available)
    assert all(name in KNOWN_ISAS for name in available)
    assert available == sorted(available, key=KNOWN_ISAS.index)
    assert pt.runtime_info()["isa"] in available


def test_isa_available_matches_cpu():
    available = pt.runtime_info()["isa_available"]
    flags = cpu_flags()
    if "avx2" in available:
        assert is_x86() and {"avx2", "fma"} <= flags
    if "avx512" in available:
        assert is_x86() and {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags


@pytest.mark.skipif(not (is_x86() and {"avx2", "fma"} <= cpu_flags()), reason="needs an x86 CPU with AVX2/FMA")
def test_default_isa_is_best_available():
    info = json.loads(run_python(INFO_CODE)[0])
    assert "avx2" in info["isa_available"]  # the wheel ships AVX2 kernels and this CPU runs them
    assert info["isa"] == info["isa_available"][-1]
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= cpu_flags():
        assert info["isa"] == "avx512"


def test_auto_and_empty_mean_best():
    for value in ["auto", ""]:
        info = json.loads(run_python(INFO_CODE, PYTRANSFORMER_ISA=value)[0])
        assert info["isa"] == info["isa_available"][-1], value


def test_env_generic_forces_portable_kernels():
    out, err = run_python(WARN_CODE, PYTRANSFORMER_ISA="generic")
    result = json.loads(out)
    assert result["info"]["isa"] == "generic"
    assert result["warnings"] == []


@pytest.mark.parametrize("isa", [name for name in KNOWN_ISAS if name in pt.runtime_info()["isa_available"]])
def test_env_selects_each_available_isa(isa):
    result = json.loads(run_python(WARN_CODE, PYTRANSFORMER_ISA=isa)[0])
    assert result["info"]["isa"] == isa
    assert result["warnings"] == []


@pytest.mark.parametrize("value", ["bogus", "AVX2", "sse4"])
def test_env_bogus_warns_and_falls_back(value):
    result = json.loads(run_python(WARN_CODE, PYTRANSFORMER_ISA=value)[0])
    info = result["info"]
    assert info["isa"] == info["isa_available"][-1]
    categories = [category for category, _ in result["warnings"]]
    assert categories == ["RuntimeWarning"], result["warnings"]
    message = result["warnings"][0][1]
    assert value in message and info["isa"] in message


@pytest.mark.skipif("avx512" in pt.runtime_info()["isa_available"], reason="this CPU runs AVX-512")
def test_env_unsupported_known_isa_warns_and_falls_back():
    result = json.loads(run_python(WARN_CODE, PYTRANSFORMER_ISA="avx512")[0])
    assert result["info"]["isa"] == result["info"]["isa_available"][-1]
    assert [category for category, _ in result["warnings"]] == ["RuntimeWarning"]


def test_set_isa_switches_and_restores():
    original = pt.runtime_info()["isa"]
    try:
        for name in pt.runtime_info()["isa_available"]:
            _core._set_isa(name)
            assert pt.runtime_info()["isa"] == name
    finally:
        _core._set_isa(original)
    assert pt.runtime_info()["isa"] == original


def test_isa_env_of_this_process_is_honoured():
    requested = os.environ.get("PYTRANSFORMER_ISA", "")
    if requested in pt.runtime_info()["isa_available"]:
        assert pt.runtime_info()["isa"] == requested
    else:
        assert pt.runtime_info()["isa"] == pt.runtime_info()["isa_available"][-1]


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------

THREADS_CODE = "import pytransformer as pt; print(pt.get_num_threads(), pt.runtime_info()['num_threads'])"


def test_env_num_threads_sets_default():
    for value, expected in [("1", 1), ("3", 3)]:
        out = run_python(THREADS_CODE, PYTRANSFORMER_NUM_THREADS=value)[0].split()
        assert out == [str(expected)] * 2, value


def test_omp_num_threads_is_the_fallback():
    assert run_python(THREADS_CODE, OMP_NUM_THREADS="3")[0].split() == ["3", "3"]
    # PYTRANSFORMER_NUM_THREADS wins over OMP_NUM_THREADS.
    assert run_python(THREADS_CODE, OMP_NUM_THREADS="3", PYTRANSFORMER_NUM_THREADS="1")[0].split() == ["1", "1"]


def test_default_threads_is_physical_cores():
    out = run_python("import json, pytransformer as pt; print(json.dumps(pt.runtime_info()))")[0]
    info = json.loads(out)
    if info["multithreaded"]:
        assert info["num_threads"] == info["physical_cores"]
    else:
        assert info["num_threads"] == 1


def test_set_get_num_threads_round_trip(restore_threads):
    import numpy as np

    for n in [1, 2, 3, 7, np.int64(4)]:
        pt.set_num_threads(n)
        assert pt.get_num_threads() == int(n)
        assert pt.runtime_info()["num_threads"] == int(n)
    pt.set_num_threads(restore_threads)
    assert pt.get_num_threads() == restore_threads


def test_public_api():
    assert set(pt.__all__) >= {"__version__", "ops", "runtime_info", "set_num_threads", "get_num_threads"}
    for name in ["linear", "softmax", "layer_norm", "relu", "gelu", "attention", "multi_head_attention",
                 "positional_encoding"]:
        assert callable(getattr(pt.ops, name)) and name in pt.ops.__all__
        assert getattr(pt.ops, name).__doc__


# ---------------------------------------------------------------------------
# cache blocking of the float32 GEMM (the rule of csrc/kernels/gemm_impl.h)
# ---------------------------------------------------------------------------


def expected_gemm_blocking(l1d, l2, mr, nr):
    """KC: the packed x micro-panel in half of L1d (a multiple of 64 in [64, 256]); NC:
    the KC x NC block of W fills L2; MC: the packed x block in an eighth of L2 (a power
    of two in [1, 64])."""
    kc = min(max(l1d // 2 // (4 * mr) // 64 * 64, 64), 256)
    nc = max(1, l2 // (4 * kc * nr))
    mc = 1
    while mc < 64 and 2 * mc * 4 * mr * kc <= l2 // 8:
        mc *= 2
    return {"kc": kc, "nc_panels": nc, "mc_tiles": mc}


@pytest.mark.parametrize("caches", ["32,1024,16384", "48,2048,4096", "32,512,16384", "16,256,1024", "64,4096,8192"])
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_gemm_blocking_follows_the_detected_caches(caches, isa):
    if isa not in pt.runtime_info()["isa_available"]:
        pytest.skip(f"{isa} is not available on this CPU")
    out, _ = run_python(INFO_CODE, PYTRANSFORMER_CACHE=caches, PYTRANSFORMER_ISA=isa)
    info = json.loads(out)
    l1d, l2, _ = (int(v) * 1024 for v in caches.split(","))
    assert info["caches"] == {"l1d": l1d, "l2": l2, "l3_per_core": int(caches.split(",")[2]) * 1024, "source": "env"}
    blk = info["gemm_blocking"]
    assert {k: blk[k] for k in ("kc", "nc_panels", "mc_tiles")} == expected_gemm_blocking(l1d, l2, blk["mr"], blk["nr"])
    # And the products stay exact whatever the blocking (sums in k order, see gemm_impl.h).
    code = ("import numpy as np, pytransformer as pt; r = np.random.default_rng(0); "
            "x = r.standard_normal((70, 700), dtype=np.float32); w = r.standard_normal((300, 700), dtype=np.float32); "
            "print(pt.ops.linear(x, w).tobytes().hex()[:4000])")
    got, _ = run_python(code, PYTRANSFORMER_CACHE=caches, PYTRANSFORMER_ISA=isa)
    want, _ = run_python(code, PYTRANSFORMER_ISA=isa)
    assert got == want


@pytest.mark.parametrize("isa, caches, want", [
    ("avx512", "32,1024,16384", {"kc": 256, "nc_panels": 32, "mc_tiles": 8, "mr": 12, "nr": 32}),
    ("avx2", "32,512,16384", {"kc": 256, "nc_panels": 32, "mc_tiles": 8, "mr": 6, "nr": 16}),
])
def test_gemm_blocking_on_the_machines_it_was_tuned_on(isa, caches, want):
    # The rule gives the constants measured best there (gemm_impl.h's comment).
    if isa not in pt.runtime_info()["isa_available"]:
        pytest.skip(f"{isa} is not available on this CPU")
    out, _ = run_python(INFO_CODE, PYTRANSFORMER_CACHE=caches, PYTRANSFORMER_ISA=isa)
    assert json.loads(out)["gemm_blocking"] == want

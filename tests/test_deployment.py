"""Deployment behaviour (issue 11, points 4-6): forked children work, Ctrl-C stops
long calls, concurrent callers and a busy machine get correct results, the default
thread count follows the CPU affinity mask.

Each scenario runs in a fresh interpreter with a timeout: a hang or a crash is the
failure these tests look for. Results are compared with the same computation in the
parent (or before the interruption), which the thread count must not change bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import pytransformer as pt

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def run(code: str, timeout: float = 120, env: dict | None = None) -> dict:
    """Runs `code` in a new interpreter; it prints one JSON line last."""
    e = dict(os.environ)
    e.pop("PYTRANSFORMER_NUM_THREADS", None)
    e.update(env or {})
    e["PYTHONPATH"] = os.pathsep.join([HERE, e.get("PYTHONPATH", "")])
    # cwd: not the repository root, whose unbuilt pytransformer/ would shadow the installed one.
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=timeout, env=e, cwd=tempfile.gettempdir())
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


MODEL = """
import json, os, sys, threading, time, signal
import numpy as np
import pytransformer as pt
from model_utils import random_weights
def build(d=64, layers=2, vocab=300, ff=128, max_length=512, seed=0):
    c = pt.TransformerConfig(d_model=d, nhead=4, num_encoder_layers=layers, num_decoder_layers=layers,
                             dim_feedforward=ff, src_vocab_size=vocab, tgt_vocab_size=vocab, max_length=max_length)
    return pt.Transformer(c, random_weights(c, np.random.default_rng(seed)))
"""


# -- 4. fork -------------------------------------------------------------------

def test_os_fork_child_after_parent_used_threads():
    out = run(MODEL + """
pt.set_num_threads(2)
m = build()
ids = np.random.default_rng(1).integers(0, 300, size=(8, 40))
ref_enc = m.encode(ids)
ref_gen = [r.sequences for r in m.generate(ids, max_length=12, beam_size=2)]
x = np.random.default_rng(2).standard_normal((300, 256), dtype=np.float32)
w = np.random.default_rng(3).standard_normal((512, 256), dtype=np.float32)
ref_lin = pt.ops.linear(x, w)
r, wfd = os.pipe()
pid = os.fork()
if pid == 0:
    ok = (np.array_equal(m.encode(ids), ref_enc) and np.array_equal(pt.ops.linear(x, w), ref_lin)
          and [r.sequences for r in m.generate(ids, max_length=12, beam_size=2)] == ref_gen)
    os.write(wfd, json.dumps(dict(ok=bool(ok), threads=pt.get_num_threads())).encode())
    os._exit(0)
os.close(wfd)
_, status = os.waitpid(pid, 0)
child = json.loads(os.read(r, 1000))
print(json.dumps(dict(child, status=status)))
""", timeout=60)
    assert out == {"ok": True, "threads": 2, "status": 0}


def test_multiprocessing_fork_pool_preload_then_fork():
    """gunicorn/celery style: load the model and use it, then fork workers."""
    out = run(MODEL + """
import multiprocessing as mp
pt.set_num_threads(2)
m = build()
ids = np.random.default_rng(1).integers(0, 300, size=(4, 33))
ref = m.encode(ids)
def work(i):
    return bool(np.array_equal(m.encode(ids), ref)), pt.get_num_threads()
ctx = mp.get_context("fork")
with ctx.Pool(2) as pool:
    res = pool.map(work, range(6))
print(json.dumps(dict(ok=all(r[0] for r in res), threads=sorted({r[1] for r in res}))))
""", timeout=90)
    assert out == {"ok": True, "threads": [2]}


def test_fork_while_another_thread_is_inside_encode():
    out = run(MODEL + """
pt.set_num_threads(2)
m = build(d=128, layers=3)
ids = np.random.default_rng(1).integers(0, 300, size=(16, 128))
small = ids[:2, :20]
ref_small = m.encode(small)
stop = False
def busy():
    while not stop:
        m.encode(ids)
t = threading.Thread(target=busy); t.start()
time.sleep(0.3)
results = []
for _ in range(3):
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(m.encode(small), ref_small) and np.array_equal(m.encode(small), ref_small)
        os.write(wfd, b"1" if ok else b"0")
        os._exit(0)
    os.close(wfd)
    _, status = os.waitpid(pid, 0)
    results.append((os.read(r, 1) == b"1", status))
    time.sleep(0.05)
stop = True; t.join()
print(json.dumps(dict(ok=all(a for a, _ in results), status=[s for _, s in results])))
""", timeout=90)
    assert out == {"ok": True, "status": [0, 0, 0]}


# -- 5. Ctrl-C -------------------------------------------------------------------

SIGINT = MODEL + """
# Python's own SIGINT handler, whatever this process inherited: a shell starts
# background jobs with SIGINT ignored, and Python then installs no handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
pt.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
def interrupt_after(call, delay=0.2):
    \"\"\"Seconds from SIGINT to KeyboardInterrupt, or None if the call finished first.\"\"\"
    sent = []
    def fire():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
    t = threading.Timer(delay, fire); t.start()
    try:
        call()
    except KeyboardInterrupt:
        t.join()
        return time.perf_counter() - sent[0]
    t.join()
    return None
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_sigint_stops_long_calls(threads):
    """Each long call gets SIGINT 0.2 s in: KeyboardInterrupt within 0.5 s (median of
    5), the model gives the same results afterwards, and memory does not grow."""
    out = run(SIGINT + """
m = build(d=256, layers=4, vocab=4000, ff=1024)
rng = np.random.default_rng(0)
src = rng.integers(0, 4000, size=(16, 256))
tgt = rng.integers(0, 4000, size=(16, 256))
memory = m.encode(src)
small = src[:2, :16]
ref = (m.encode(small), [r.sequences for r in m.generate(small, max_length=8, beam_size=2)])
x = rng.standard_normal((4096, 4096), dtype=np.float32)
calls = {
    "generate greedy": lambda: m.generate(src[:4], min_length=400, max_length=400),
    "generate beam": lambda: m.generate(src[:4], beam_size=4, min_length=400, max_length=400),
    "encode": lambda: [m.encode(src) for _ in range(50)],
    "decode": lambda: [m.decode(tgt, memory) for _ in range(50)],
    "ops.linear": lambda: [pt.ops.linear(x, x) for _ in range(20)],
}
lat, rss = {}, []
for name, call in calls.items():
    lat[name] = sorted(interrupt_after(call) for _ in range(5))
    rss.append(rss_mb())
same = (np.array_equal(m.encode(small), ref[0])
        and [r.sequences for r in m.generate(small, max_length=8, beam_size=2)] == ref[1])
for _ in range(5):
    interrupt_after(calls["encode"], delay=0.05)
    interrupt_after(calls["generate beam"], delay=0.05)
print(json.dumps(dict(lat=lat, same=bool(same), growth=rss_mb() - rss[-1])))
""".replace('pt.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)', f"pt.set_num_threads({threads})"),
        timeout=240)
    for name, lat in out["lat"].items():
        assert None not in lat, f"{name} finished before the SIGINT: make it longer"
        assert sorted(lat)[2] < 0.5, (name, lat)
        assert max(lat) < 1.5, (name, lat)
    assert out["same"]
    assert out["growth"] < 64, out["growth"]


def test_sigint_with_a_custom_handler_is_left_to_python():
    """A handler that does not raise: the call is not cut short, the handler runs."""
    out = run(SIGINT + """
m = build(d=128, layers=2, vocab=1000)
src = np.random.default_rng(0).integers(0, 1000, size=(16, 128))
seen = []
signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
ref = m.encode(src)
t = threading.Timer(0.01, lambda: os.kill(os.getpid(), signal.SIGINT)); t.start()
outs = [m.encode(src) for _ in range(20)]
t.join()
print(json.dumps(dict(seen=len(seen), same=all(np.array_equal(o, ref) for o in outs))))
""", timeout=120)
    assert out == {"seen": 1, "same": True}


def test_streaming_works_after_an_interrupt():
    out = run(SIGINT + """
m = build(d=256, layers=4, vocab=4000, ff=1024, max_length=512)
src = np.random.default_rng(0).integers(0, 4000, size=(1, 500))
stream = m.generate_tokens(src[0], min_length=2, max_length=2)
# The first next() encodes the 500-token source and runs a step: interrupt it.
lat = interrupt_after(lambda: [m.encode(np.repeat(src, 16, 0)) for _ in range(30)], delay=0.1)
ok = list(m.generate_tokens(src[0, :10], min_length=3, max_length=3))
print(json.dumps(dict(lat=lat, ok=len(ok))))
""", timeout=120)
    assert out["lat"] is not None and out["lat"] < 0.5
    assert out["ok"] == 3


# -- 6. threads -----------------------------------------------------------------

def test_concurrent_callers_get_the_same_results():
    out = run(MODEL + """
pt.set_num_threads(2)
m = build(d=128, layers=2)
rng = np.random.default_rng(4)
batches = [rng.integers(0, 300, size=(3, 30 + i)) for i in range(6)]
refs = [m.encode(b) for b in batches]
bad = []
def worker(k):
    for i in range(20):
        j = (i + k) % len(batches)
        if not np.array_equal(m.encode(batches[j]), refs[j]):
            bad.append(j)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(dict(bad=len(bad))))
""", timeout=120)
    assert out == {"bad": 0}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 CPUs in the affinity mask")
def test_default_threads_follow_the_affinity_mask():
    cpu = min(os.sched_getaffinity(0))
    code = f"""
import os, json
os.sched_setaffinity(0, {{{cpu}}})
import pytransformer as pt
info = pt.runtime_info()
print(json.dumps(dict(threads=info["num_threads"], cores=info["physical_cores"])))
"""
    assert run(code, env={"OMP_NUM_THREADS": ""}) == {"threads": 1, "cores": 1}


def test_runtime_info_reports_the_pool():
    info = pt.runtime_info()
    assert info["multithreaded"] is True
    assert info["cgroup_cpu_quota"] >= 0
    assert 1 <= info["physical_cores"] <= (os.cpu_count() or 1)


@pytest.mark.parametrize("files,quota,cores", [
    ({"cpu.max": "50000 100000\n"}, 0.5, 1),        # cgroup v2, half a CPU
    ({"cpu.max": "max 100000\n"}, 0.0, None),       # v2, no quota
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0, 1),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.0, None),
])
def test_cgroup_quota_caps_the_default(tmp_path, files, quota, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    code = """
import json, os
import pytransformer as pt
info = pt.runtime_info()
print(json.dumps(dict(quota=info["cgroup_cpu_quota"], cores=info["physical_cores"], threads=info["num_threads"],
                      affinity=len(os.sched_getaffinity(0)))))
"""
    out = run(code, env={"PYTRANSFORMER_CGROUP_ROOT": str(tmp_path), "OMP_NUM_THREADS": ""})
    assert out["quota"] == quota
    expected = cores if cores is not None else out["affinity"]
    assert out["cores"] == out["threads"] == min(expected, out["affinity"])

"""A library in a worker process of its own (CTranslate2 must not share this process's
OpenMP runtime with torch).

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import os
import sys
import tempfile
import time

if __package__:  # imported as benchmarks._common (python -m)
    from ._machine import WORKER_PIDS
else:  # benchmarks/ is on sys.path
    from _machine import WORKER_PIDS

# -- a library in a worker process of its own -------------------------------------------


def _serve(conn):
    """The worker's loop (see Worker). Keeps one model and one prepared call."""
    model = call = None
    while True:
        op, a = conn.recv()
        try:
            if op == "exit":
                break
            if op == "load":  # (factory, args): the model, built here
                model = None
                model = a[0](*a[1])
                out = None
            elif op == "prepare":  # (fn, args): the timed call is fn(model, *args)
                call, out = a, None
            elif op == "run":  # (calls, wake): seconds for the calls
                fn, args = call
                if a[1]:
                    fn(model, *args)
                t0 = time.perf_counter()
                for _ in range(a[0]):
                    fn(model, *args)
                out = time.perf_counter() - t0
            elif op == "output":  # (post,): post(result of the prepared call), picklable
                fn, args = call
                out = a[0](fn(model, *args))
            elif op == "memory":  # (): (current RSS, peak RSS) of this process, bytes
                out = _memory()
            elif op == "stderr_of":  # (fn, args): what fn(*args) wrote to the C-level stderr
                out = _stderr_of(a[0], a[1])
            else:
                raise ValueError(f"unknown op {op!r}")
            conn.send(("ok", out))
        except Exception as e:  # noqa: BLE001 - reported to the parent
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _memory():
    """(VmRSS, VmHWM) of this process, bytes. VmHWM, not getrusage's ru_maxrss: the
    latter survives exec, so a spawned worker would report its parent's peak."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(value.split()[0]) * 1024
    return got["VmRSS"], got["VmHWM"]


def _stderr_of(fn, args) -> str:
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            fn(*args)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


class Worker:
    """A library in a process of its own, driven from the interleaved rounds.

    In a process that imported torch, CTranslate2 would bind to the libgomp that torch
    (and pt) use, and its translate thread would start a second OpenMP team: 4 OpenMP
    threads on 2 CPUs make libgomp stop spinning between parallel regions, which slowed
    pt's 2-thread 1x32 encode from ~4.5 to ~8.4 ms on a 2-core machine. The worker is
    spawned (no fork of a process with OpenMP threads) and imports the script's module
    without torch, so CTranslate2 uses the libgomp it bundles.

    Functions passed to it (factory, the timed call, post-processing) must be picklable:
    module-level functions of the script. Samples are timed inside the worker; the pipe
    round trip is not timed. ``sample`` has the (calls, wake) signature of local().
    """

    def __init__(self):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        WORKER_PIDS.append(self.proc.pid)

    def _call(self, op, *a):
        self.conn.send((op, a))
        status, out = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"worker process: {out}")
        return out

    def load(self, factory, *args):
        self._call("load", factory, args)

    def prepare(self, fn, *args):
        self._call("prepare", fn, args)

    def sample(self, number, wake):
        return self._call("run", number, wake)

    def output(self, post):
        return self._call("output", post)

    def memory(self):
        """(current RSS, peak RSS) of the worker process, bytes (Linux)."""
        return self._call("memory")

    def stderr_of(self, fn, *args) -> str:
        return self._call("stderr_of", fn, args)

    def close(self):
        try:
            self.conn.send(("exit", ()))
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.pid in WORKER_PIDS:
            WORKER_PIDS.remove(self.proc.pid)


def _import(name: str):
    import importlib

    importlib.import_module(name)


def memory_probe(module: str, factory, args, call, call_args=()) -> dict:
    """Peak RSS of loading a model and running one call, in a fresh worker process.

    module: the library, imported first (its import is the baseline); factory(*args):
    the model; call(model, *call_args): one timed-shape call. Returns bytes: "base"
    (peak RSS after importing the library), "peak" (after the load and the call) and
    "model" = peak - base."""
    worker = Worker()
    try:
        worker.load(_import, module)
        base = worker.memory()[1]
        worker.load(factory, *args)
        worker.prepare(call, *call_args)
        worker.sample(1, False)
        peak = worker.memory()[1]
    finally:
        worker.close()
    return {"base": base, "peak": peak, "model": peak - base}

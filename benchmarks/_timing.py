"""The interleaved measurement: calibrated samples per implementation in rotating order,
the other processes' CPU time recorded per sample; the rows of a comparison.

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import math
import sys
import time

import numpy as np

if __package__:  # imported as benchmarks._common (python -m)
    from ._machine import loadavg, quiet_before_case
    from ._ct2 import ct2_load
else:  # benchmarks/ is on sys.path
    from _machine import loadavg, quiet_before_case
    from _ct2 import ct2_load

# -- timing ------------------------------------------------------------------------------

WAKE_BELOW = 0.05  # seconds per call: shorter calls get an untimed call before each sample


def local(fn):
    """A sampler: (calls, wake) -> seconds for the calls, after one untimed call if wake."""

    def sample(number, wake):
        if wake:
            fn()  # wake this library's thread pool
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0

    return sample


def calibrate(sample, min_time: float):
    """(calls per sample, seconds per call) after a warm-up."""
    sample(1, False)
    t = sample(1, False)
    if t < WAKE_BELOW:  # cheap: warm up a little more and time again
        t = sample(1, True)
    return max(1, math.ceil(min_time / max(t, 1e-7))), t


def measure(impls: dict, args, loads: dict) -> dict:
    """impls: name -> (sampler, group); loads: group -> OtherLoad. Returns name -> [s per call].

    Every implementation is calibrated, then --repeats rounds take one sample of each,
    in an order that rotates from round to round; a sample during which other processes
    used more than --max-other of the CPU is measured again (within the budgets)."""
    cal = {name: calibrate(sample, args.min_time) for name, (sample, _) in impls.items()}
    samples = {name: [] for name in impls}
    names = list(impls)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            (sample, group), (number, per_call) = impls[name], cal[name]
            load = loads[group]
            for attempt in range(args.retries + 1):
                time.sleep(args.gap if attempt == 0 else 0.5)
                load.start()
                t = sample(number, per_call < WAKE_BELOW)
                # Another process was busy: pause and measure again, within a budget of
                # --repeats re-measurements per row, so a machine that stays busy ends the run.
                if load.stop() <= args.max_other or attempt == args.retries or load.remeasured >= args.repeats:
                    break
                load.remeasured += 1
            load.keep()
            samples[name].append(t / number)
    return samples


def quartiles(xs):
    q = np.percentile(np.asarray(xs), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def summarize(samples: dict) -> dict:
    """name -> {"median": s, "iqr": (p75 - p25) / median, "samples": [...]}."""
    out = {}
    for name, xs in samples.items():
        q1, med, q3 = quartiles(xs)
        out[name] = {"median": med, "iqr": (q3 - q1) / med, "samples": list(xs)}
    return out


def method_line(args, started: float) -> str:
    return (
        f"median of {args.repeats} interleaved rounds (all implementations rotate), "
        f">= {args.min_time * 1e3:.0f} ms per sample, {args.gap * 1e3:.0f} ms gap before each sample "
        f"(+1 untimed call for calls under {WAKE_BELOW * 1e3:.0f} ms); {time.time() - started:.0f} s in all; "
        f"load average at end: {loadavg()}"
    )


def run_rows(args, models, ct2_kind: str, run_one, label) -> list:
    """One row per (thread count, case in args.cases): run_one(*case, threads), after
    loading CTranslate2's ct2_kind ("Translator", "Encoder") for that thread count in
    each of models.ct2_loads ([(worker, model dir, compute type)], empty without
    CTranslate2) and waiting for the machine to quiet down."""
    rows = []
    for threads in args.threads:
        for worker, model_dir, compute_type in models.ct2_loads:
            worker.load(ct2_load, ct2_kind, model_dir, threads, compute_type)
        for case in args.cases:
            quiet_before_case(args)
            rows.append(run_one(*case, threads))
            print(f"  done {label(*case)} threads={threads}", file=sys.stderr, flush=True)
    return rows

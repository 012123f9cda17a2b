#!/usr/bin/env python3
"""pytransformer's linear against numpy (OpenBLAS) and PyTorch, side by side in one run.

Every implementation computes y = x @ W.T with x [M, K] and W stored [N, K], as
nn.Linear does:

    pt     pytransformer.ops.linear(x, w)
    numpy  x @ w.T                               (OpenBLAS sgemm, transposed B)
    torch  torch.nn.functional.linear(xt, wt)    (only if torch imports)

Method: per shape and thread count, each implementation is warmed up and
calibrated so one sample (a few back-to-back calls) lasts at least --min-time.
Then --repeats rounds each take one sample of every implementation, in an order
that rotates from round to round, so slow drifts of a noisy machine hit all of
them alike. Before each sample the script sleeps --gap seconds (OpenBLAS workers
spin ~0.1 s after a call and would steal a core from the next library) and makes
one untimed call to wake the thread pool. The table shows the median time per
call, GFLOP/s = 2*M*N*K / time, and the speed ratios pt/numpy and pt/torch
(> 1: pt is faster). "diff" is max|y - y_numpy| / max|y_numpy|. "other" is the
share of the machine's CPU that other processes used during the timed windows
(from /proc/stat); a sample during which they used more than --max-other is
measured again after a pause (up to --retries times per sample and --repeats
times per row; column "re"), and rows where
they still used over 10% are marked "!" and are not to be trusted.

Usage:
    python benchmarks/compare_gemm.py                    # threads 1 and 2, all shapes
    python benchmarks/compare_gemm.py --quick --markdown
    python benchmarks/compare_gemm.py --threads 2 --repeats 30 --shapes 128,512,512
"""

from __future__ import annotations

import os

# Time OpenBLAS as it configures itself: forced core types or cache sizes from the
# environment would make the numpy column describe another machine. Only this
# process is affected.
_POPPED_ENV = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.pop(k, None) is not None]

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - a usage error, reported plainly
    sys.exit("compare_gemm.py needs threadpoolctl to set numpy's threads: pip install threadpoolctl")

import pytransformer as pt  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

SHAPES = [
    (128, 512, 512),
    (128, 512, 2048),
    (128, 2048, 512),
    (1024, 512, 512),
    (1, 512, 512),
    (1, 512, 2048),
    (16, 512, 32000),
]


# -- machine description -------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start: "
        + " ".join(f"{v:.2f}" for v in os.getloadavg()),
        f"Python {platform.python_version()}, {platform.platform()}",
        f"pytransformer {pt.__version__}: {pt.runtime_info()}",
    ]
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "")]
    blas = blas or [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    for i in blas[:1]:
        lines.append(
            f"numpy {np.__version__}: {i.get('internal_api')} {i.get('version')}, core type "
            f"{i.get('architecture')}, threading {i.get('threading_layer')} "
            f"({os.path.basename(i.get('filepath', ''))})"
        )
    if not blas:
        lines.append(f"numpy {np.__version__}: BLAS not found by threadpoolctl")
    if torch is not None:
        cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
        lines.append(
            f"torch {torch.__version__}: CPU capability {cap}, MKL {torch.backends.mkl.is_available()}, "
            f"oneDNN {torch.backends.mkldnn.is_available()}"
        )
    else:
        lines.append("torch: not importable (install torch==2.13.0 for the torch column)")
    if _POPPED_ENV:
        lines.append("removed from this process's environment: " + ", ".join(_POPPED_ENV))
    return lines


# -- CPU accounting: how much did other processes run while we timed? --------------


def _machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait
    return sum(fields[:8]) - fields[3] - fields[4]


def _own_ticks() -> int:
    with open("/proc/self/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime + stime, all threads


class OtherLoad:
    """Other processes' share of the machine's CPU over timed windows (Linux only).

    /proc/stat counts in ticks (1/100 s), so one short window is a coarse reading;
    summed over a row's windows it is a fair one.
    """

    def __init__(self):
        self.available = os.path.exists("/proc/stat")
        self.hz = os.sysconf("SC_CLK_TCK") if self.available else 100
        self.ncpu = os.cpu_count() or 1
        self.other = 0
        self.wall = 0.0
        self.remeasured = 0

    def start(self):
        if self.available:
            self._m, self._o, self._t = _machine_busy_ticks(), _own_ticks(), time.perf_counter()

    def stop(self) -> float:
        """Ends a window and returns other processes' share of the CPU during it."""
        if not self.available:
            return 0.0
        self._window = ((_machine_busy_ticks() - self._m) - (_own_ticks() - self._o), time.perf_counter() - self._t)
        return max(0.0, self._window[0] / self.hz / (self._window[1] * self.ncpu))

    def keep(self):
        """Counts the last window in the row's total."""
        if self.available:
            self.other += self._window[0]
            self.wall += self._window[1]

    def share(self) -> float:
        if not self.available or self.wall <= 0:
            return float("nan")
        return max(0.0, self.other / self.hz / (self.wall * self.ncpu))


# -- timing ------------------------------------------------------------------------------


def calibrate(fn, min_time: float) -> int:
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    t = time.perf_counter() - t0
    return max(1, math.ceil(min_time / max(t, 1e-7)))


def measure(impls: dict, args, load: OtherLoad) -> dict:
    numbers = {name: calibrate(fn, args.min_time) for name, fn in impls.items()}
    samples = {name: [] for name in impls}
    names = list(impls)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn, number = impls[name], numbers[name]
            for attempt in range(args.retries + 1):
                time.sleep(args.gap if attempt == 0 else 0.5)
                fn()  # wake this library's thread pool
                load.start()
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                t = time.perf_counter() - t0
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


def run_case(m, k, n, threads, args, torch_ok):
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    w *= np.float32(k**-0.5)

    impls = {"pt": lambda: pt.ops.linear(x, w), "numpy": lambda: x @ w.T}
    if torch_ok:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        impls["torch"] = lambda: F.linear(xt, wt)

    ref = x @ w.T
    scale = float(np.max(np.abs(ref))) or 1.0
    diff = {"pt": float(np.max(np.abs(pt.ops.linear(x, w) - ref))) / scale}
    if torch_ok:
        with torch.inference_mode():
            diff["torch"] = float(np.max(np.abs(impls["torch"]().numpy() - ref))) / scale

    load = OtherLoad()
    pt.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        if torch_ok:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                samples = measure(impls, args, load)
        else:
            samples = measure(impls, args, load)

    flop = 2.0 * m * n * k
    row = {"shape": (m, k, n), "threads": threads, "diff": diff, "other": load.share(), "remeasured": load.remeasured}
    for name, xs in samples.items():
        q1, med, q3 = quartiles(xs)
        row[name] = {"median": med, "gflops": flop / med / 1e9, "iqr": (q3 - q1) / med}
    return row


# -- output ------------------------------------------------------------------------------


def fmt_ms(t: float) -> str:
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def table(rows, torch_ok):
    head = ["M,K,N", "thr", "pt ms", "pt GF/s", "numpy ms", "numpy GF/s"]
    if torch_ok:
        head += ["torch ms", "torch GF/s"]
    head += ["pt/numpy"] + (["pt/torch"] if torch_ok else [])
    head += ["diff pt"] + (["diff torch"] if torch_ok else []) + ["spread", "other", "re"]
    body = []
    for r in rows:
        impls = ["pt", "numpy"] + (["torch"] if torch_ok else [])
        cells = [",".join(map(str, r["shape"])), str(r["threads"])]
        for name in impls:
            cells += [fmt_ms(r[name]["median"]), f"{r[name]['gflops']:.1f}"]
        cells.append(f"{r['numpy']['median'] / r['pt']['median']:.2f}x")
        if torch_ok:
            cells.append(f"{r['torch']['median'] / r['pt']['median']:.2f}x")
        cells.append(f"{r['diff']['pt']:.1e}")
        if torch_ok:
            cells.append(f"{r['diff']['torch']:.1e}")
        cells.append(f"{100 * max(r[name]['iqr'] for name in impls):.0f}%")
        other = r["other"]
        cells.append("?" if math.isnan(other) else f"{100 * other:.0f}%" + (" !" if other > 0.10 else ""))
        cells.append(str(r["remeasured"]))
        body.append(cells)
    return head, body


def print_text(head, body):
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def print_markdown(head, body):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 2 else "--:" for i in range(len(head))) + "|")
    for row in body:
        print("| " + " | ".join(row) + " |")


def parse_shape(s: str):
    try:
        m, k, n = (int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be M,K,N, got {s!r}") from None
    return m, k, n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="rounds, one sample of each library per round (default 15, --quick 5)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per sample (default 0.05, --quick 0.02)")
    p.add_argument("--gap", type=float, default=0.15, help="sleep before each sample, seconds (default 0.15)")
    p.add_argument("--max-other", type=float, default=0.25,
                   help="re-measure a sample when other processes used more than this share "
                   "of the CPU (default 0.25)")
    p.add_argument("--retries", type=int, default=3,
                   help="re-measurements per sample at most (default 3; at most --repeats per row)")
    p.add_argument("--shapes", type=parse_shape, nargs="+", default=SHAPES, metavar="M,K,N")
    p.add_argument("--quick", action="store_true", help="fewer and shorter samples (a smoke run, noisier)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--no-torch", action="store_true", help="leave torch out even if it imports")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.min_time is None:
        args.min_time = 0.02 if args.quick else 0.05
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        p.error("--repeats and --threads must be >= 1")
    torch_ok = torch is not None and not args.no_torch

    info = machine_lines()
    started = time.time()
    rows = []
    for threads in args.threads:
        for m, k, n in args.shapes:
            rows.append(run_case(m, k, n, threads, args, torch_ok))
            print(f"  done {m},{k},{n} threads={threads}", file=sys.stderr, flush=True)
    head, body = table(rows, torch_ok)

    method = (
        f"median of {args.repeats} interleaved rounds, >= {args.min_time * 1e3:.0f} ms per sample, "
        f"{args.gap * 1e3:.0f} ms gap + 1 untimed call before each sample; "
        f"{time.time() - started:.0f} s in all; load average at end: "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    legend = (
        "pt/numpy, pt/torch: speed ratio (other's time / pt's time; > 1 = pt faster). "
        "diff: max|y - y_numpy| / max|y_numpy|. spread: largest (p75 - p25) / median of the row. "
        "other: CPU share of other processes in the kept timing windows (! = over 10%, untrustworthy). "
        "re: samples measured again because another process was busy."
    )
    if args.markdown:
        print("y = x @ W.T, W [N,K] (nn.Linear layout), float32.\n")
        for line in info + [method]:
            print(f"- {line}")
        print()
        print_markdown(head, body)
        print(f"\n{legend}")
    else:
        print("y = x @ W.T, W [N,K] (nn.Linear layout), float32")
        for line in info + [method]:
            print(line)
        print()
        print_text(head, body)
        print()
        print(legend)


if __name__ == "__main__":
    main()

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
one untimed call to wake the thread pool (for calls under 50 ms: every shape here).
The timing loop is benchmarks/_common.py's, shared with the other comparisons. The table shows the median time per
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
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

if __package__:  # imported as benchmarks.compare_gemm
    from . import _common as bc
else:  # run as a script: benchmarks/ is on sys.path
    import _common as bc

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


def machine_lines() -> list[str]:
    lines = bc.base_machine_lines()
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
        lines.append(bc.torch_line(torch))
    else:
        lines.append("torch: not importable (install torch==2.13.0 for the torch column)")
    if _POPPED_ENV:
        lines.append("removed from this process's environment: " + ", ".join(_POPPED_ENV))
    return lines


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

    load = bc.OtherLoad()
    timed = {name: (bc.local(fn), "all") for name, fn in impls.items()}
    pt.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        if torch_ok:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                samples = bc.measure(timed, args, {"all": load})
        else:
            samples = bc.measure(timed, args, {"all": load})

    flop = 2.0 * m * n * k
    row = {"shape": (m, k, n), "threads": threads, "diff": diff, "load": load}
    for name, stats in bc.summarize(samples).items():
        row[name] = dict(stats, gflops=flop / stats["median"] / 1e9)
    return row


# -- output ------------------------------------------------------------------------------


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
            cells += [bc.fmt_ms(r[name]["median"]), f"{r[name]['gflops']:.1f}"]
        cells.append(f"{r['numpy']['median'] / r['pt']['median']:.2f}x")
        if torch_ok:
            cells.append(f"{r['torch']['median'] / r['pt']['median']:.2f}x")
        cells.append(f"{r['diff']['pt']:.1e}")
        if torch_ok:
            cells.append(f"{r['diff']['torch']:.1e}")
        cells.append(f"{100 * max(r[name]['iqr'] for name in impls):.0f}%")
        cells += bc.fmt_load(r["load"])
        body.append(cells)
    return head, body


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
        f"{time.time() - started:.0f} s in all; load average at end: {bc.loadavg()}"
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
        bc.print_markdown(head, body)
        print(f"\n{legend}")
    else:
        print("y = x @ W.T, W [N,K] (nn.Linear layout), float32")
        for line in info + [method]:
            print(line)
        print()
        bc.print_text(head, body)
        print()
        print(legend)


if __name__ == "__main__":
    main()

"""Command-line arguments shared by the comparison scripts, and the cached work folder.

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile


# -- arguments ---------------------------------------------------------------------------


def add_timing_args(p: argparse.ArgumentParser, repeats=(7, 3), min_time=(0.1, 0.03), wait_quiet=(60.0, 10.0)):
    """The options every compare script shares; (default, --quick default) pairs."""
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"rounds, one sample of each implementation per round (default {repeats[0]}, "
                   f"--quick {repeats[1]})")
    p.add_argument("--min-time", type=float, default=None,
                   help=f"seconds per sample (default {min_time[0]:g}, --quick {min_time[1]:g})")
    p.add_argument("--gap", type=float, default=0.15, help="sleep before each sample, seconds (default 0.15)")
    p.add_argument("--max-other", type=float, default=0.25,
                   help="re-measure a sample when other processes used more than this share of the CPU "
                   "(default 0.25)")
    p.add_argument("--retries", type=int, default=3,
                   help="re-measurements per sample at most (default 3; at most --repeats per row and table)")
    p.add_argument("--wait-quiet", type=float, default=None,
                   help="before each case, wait up to this many seconds until other processes use < 10%% of "
                   f"the CPU (default {wait_quiet[0]:g}, --quick {wait_quiet[1]:g}; 0: do not wait)")
    p.add_argument("--workdir", default=None,
                   help="keep converted / exported peer models here and reuse them in later runs "
                   "(default: a temporary folder, removed at exit)")
    p.add_argument("--quick", action="store_true", help="fewer and shorter samples (a smoke run, noisier)")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.set_defaults(_timing_defaults=(repeats, min_time, wait_quiet))


def resolve_timing_args(p: argparse.ArgumentParser, args) -> None:
    repeats, min_time, wait_quiet = args._timing_defaults
    q = 1 if args.quick else 0
    if args.repeats is None:
        args.repeats = repeats[q]
    if args.min_time is None:
        args.min_time = min_time[q]
    if args.wait_quiet is None:
        args.wait_quiet = wait_quiet[q]
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        p.error("--repeats and --threads must be >= 1")


def compute_types_type(s: str):
    """--compute-types: float32 and/or int8, comma-separated."""
    got = [t.strip() for t in s.split(",") if t.strip()]
    if not got or any(t not in ("float32", "int8") for t in got):
        raise argparse.ArgumentTypeError(f"compute types are float32 and/or int8, comma-separated; got {s!r}")
    return got


def peers_type(choices):
    """argparse type: comma-separated names out of choices ('none': no peers)."""

    def parse(s: str):
        names = [x.strip() for x in s.split(",") if x.strip() and x.strip() != "none"]
        bad = [x for x in names if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown peer(s) {bad}; choose from {','.join(choices)} (or 'none')")
        return names

    return parse


class Workdir:
    """--workdir, or a temporary folder removed by close()."""

    def __init__(self, path, prefix):
        self.tmp = None
        if path is None:
            self.tmp = path = tempfile.mkdtemp(prefix=prefix)
        else:
            os.makedirs(path, exist_ok=True)
        self.path = path

    def close(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cached(out_dir: str, stamp: dict, build, marker: str = "bench.stamp") -> bool:
    """Runs build(out_dir) unless out_dir holds a marker written with the same stamp.
    Returns True when the cached copy was reused."""
    text = json.dumps(stamp, sort_keys=True, default=str)
    marker = os.path.join(out_dir, marker)
    try:
        with open(marker) as f:
            if f.read() == text:
                return True
    except OSError:
        pass
    shutil.rmtree(out_dir, ignore_errors=True)
    build(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(marker, "w") as f:
        f.write(text)
    return False

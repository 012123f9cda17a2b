"""Shared helpers of the side-by-side scripts compare_model.py, compare_generate.py and
compare_embed.py: machine description, CPU accounting of other processes, the
interleaved measurement, tables, argument handling, a worker process for libraries
that must not share this process's OpenMP runtime (CTranslate2), and the
Transformer-base Marian model the peers run.

Imports nothing beyond the standard library and numpy at module level (the worker
process imports this module and must not load torch). Not a benchmark for asv: it
defines no time_* attributes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

# Quiet, offline Hugging Face libraries: every model is built locally or read from a folder.
for _k, _v in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
               ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)

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


_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "PYTRANSFORMER_", "CT2_", "DNNL_", "ONEDNN_")


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def base_machine_lines() -> list[str]:
    """CPU, Python / numpy / platform and pytransformer's runtime."""
    import pytransformer as pt

    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start: {loadavg()}",
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.platform()}",
        f"pytransformer {pt.__version__}: {pt.runtime_info()}",
    ]


def torch_line(torch) -> str:
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return (f"torch {torch.__version__}: CPU capability {cap}, MKL {torch.backends.mkl.is_available()}, "
            f"oneDNN {torch.backends.mkldnn.is_available()}")


_ENV_AT_START = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def env_line() -> str:
    """The threading / BLAS variables set when the script started, and any that imported
    libraries set since (e.g. KMP_DUPLICATE_LIB_OK)."""
    env = sorted(_ENV_AT_START)
    line = "environment: " + (", ".join(f"{k}={_ENV_AT_START[k]}" for k in env) if env else
                              "no OMP_/GOMP_/KMP_/MKL_/OPENBLAS_/PYTRANSFORMER_/CT2_/DNNL_ variables set")
    later = sorted(k for k in os.environ if k.startswith(_ENV_PREFIXES) and os.environ[k] != _ENV_AT_START.get(k))
    if later:
        line += "; set by imported libraries: " + ", ".join(f"{k}={os.environ[k]}" for k in later)
    return line


# -- CPU accounting: how much did other processes run while we timed? --------------


def _machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait
    return sum(fields[:8]) - fields[3] - fields[4]


# Worker processes of this script (CTranslate2's): their CPU time is ours, not "other".
WORKER_PIDS: list = []


def _process_ticks(pid) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:  # a worker that has exited
        return 0
    return int(rest[11]) + int(rest[12])  # utime + stime, all threads


def _own_ticks() -> int:
    return _process_ticks("self") + sum(_process_ticks(pid) for pid in WORKER_PIDS)


class OtherLoad:
    """Other processes' share of the machine's CPU over timed windows (Linux only)."""

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
        if self.available:
            self.other += self._window[0]
            self.wall += self._window[1]

    def share(self) -> float:
        if not self.available or self.wall <= 0:
            return float("nan")
        return max(0.0, self.other / self.hz / (self.wall * self.ncpu))


def wait_for_quiet(max_wait: float, window: float = 0.5) -> float:
    """Waits (up to max_wait s) until other processes use < 10% of the CPU over a window."""
    load = OtherLoad()
    if not load.available or max_wait <= 0:
        return 0.0
    t0 = time.perf_counter()
    while True:
        load.start()
        time.sleep(window)
        if load.stop() < 0.10 or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0


def quiet_before_case(args) -> None:
    waited = wait_for_quiet(args.wait_quiet)
    if waited > 2:
        print(f"  waited {waited:.0f} s for other processes to quiet down", file=sys.stderr, flush=True)


def run_rows(args, models, ct2_kind: str, run_one, label) -> list:
    """One row per (thread count, case in args.cases): run_one(*case, threads), after
    loading CTranslate2's ct2_kind ("Translator", "Encoder") for that thread count in
    models' worker (when models.ct2 is set) and waiting for the machine to quiet down."""
    rows = []
    for threads in args.threads:
        if models.ct2 is not None:
            models.ct2_worker.load(ct2_load, ct2_kind, models.ct2_dir, threads)
        for case in args.cases:
            quiet_before_case(args)
            rows.append(run_one(*case, threads))
            print(f"  done {label(*case)} threads={threads}", file=sys.stderr, flush=True)
    return rows


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


# -- output ------------------------------------------------------------------------------


def fmt_ms(t: float) -> str:
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def fmt_rate(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def fmt_load(load) -> list[str]:
    other = load.share()
    return ["?" if math.isnan(other) else f"{100 * other:.0f}%" + (" !" if other > 0.10 else ""),
            str(load.remeasured)]


def table(rows, group, names, ratios, extra, cols, case=None):
    """Wide table, one row per case and thread count.

    rows: dicts with "threads", "loads" (group -> OtherLoad) and per implementation name
    a dict with at least "median" and "iqr". names: implementations present; cols:
    [(header suffix, fn(entry) -> str)] per implementation; ratios: [(a, b)] printed as
    b's time / a's time (> 1: a faster); extra: [(header, fn(row) -> str)];
    case: fn(row) -> the case label (default "BxL" of row["case"])."""
    case = case or (lambda r: f"{r['case'][0]}x{r['case'][1]}")
    head = ["case", "thr"]
    for n in names:
        head += [f"{n} {suffix}" for suffix, _ in cols]
    head += [f"{a}/{b}" for a, b in ratios] + [h for h, _ in extra] + ["spread", "other", "re"]
    body = []
    for r in rows:
        cells = [case(r), str(r["threads"])]
        for n in names:
            cells += [f(r[n]) for _, f in cols]
        cells += [f"{r[b]['median'] / r[a]['median']:.2f}x" for a, b in ratios]
        cells += [f(r) for _, f in extra]
        cells.append(f"{100 * max(r[n]['iqr'] for n in names):.0f}%")
        cells += fmt_load(r["loads"][group])
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


def print_report(args, header_lines, tables, legend_lines):
    """tables: [(title, (head, body), legend)]; header and legend lines in text or markdown."""
    if args.markdown:
        for line in header_lines:
            print(f"- {line}")
        for title, tab, legend in tables:
            print(f"\n**{title}**\n")
            print_markdown(*tab)
            if legend:
                print(f"\n{legend}")
        for line in legend_lines:
            print(f"\n{line}")
    else:
        for line in header_lines:
            print(line)
        for title, tab, legend in tables:
            print(f"\n{title}")
            print_text(*tab)
            if legend:
                print(f"\n{legend}")
        for line in legend_lines:
            print(f"\n{line}")


SPREAD_LEGEND = (
    "spread: largest (p75 - p25) / median in the row. other: CPU share of other processes in the kept timing "
    "windows of the row (! = over 10%, untrustworthy). re: samples measured again because another process "
    "was busy."
)

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
            elif op == "stderr_of":  # (fn, args): what fn(*args) wrote to the C-level stderr
                out = _stderr_of(a[0], a[1])
            else:
                raise ValueError(f"unknown op {op!r}")
            conn.send(("ok", out))
        except Exception as e:  # noqa: BLE001 - reported to the parent
            conn.send(("error", f"{type(e).__name__}: {e}"))


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


# -- CTranslate2 (functions that run in the worker) --------------------------------------


def ct2_load(kind: str, model_dir: str, threads: int):
    """ctranslate2.<kind> (Translator, Encoder) on the CPU, float32, intra_threads = threads."""
    import ctranslate2

    return getattr(ctranslate2, kind)(model_dir, device="cpu", compute_type="float32", intra_threads=threads,
                                      inter_threads=1)


def _ct2_load_logged(kind: str, model_dir: str):
    import ctranslate2

    ctranslate2.set_log_level(logging.INFO)
    try:
        ct2_load(kind, model_dir, 1)
    finally:
        ctranslate2.set_log_level(logging.WARNING)


def ct2_backend(worker: Worker, kind: str, model_dir: str) -> str:
    """CTranslate2's log of its ISA and SGEMM backend, from a model load in the worker."""
    keep = []
    for line in worker.stderr_of(_ct2_load_logged, kind, model_dir).splitlines():
        msg = line.split("] ")[-1].strip().lstrip("- ").strip()
        if msg.startswith(("Selected ISA", "Use Intel MKL", "SGEMM backend")):
            keep.append(msg)
    return ", ".join(keep)


def ct2_convert(model_dir: str, out_dir: str) -> None:
    """The converter behind the ct2-transformers-converter command line, float32."""
    from ctranslate2.converters import TransformersConverter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TransformersConverter(model_dir).convert(out_dir, force=True)


# -- the Transformer-base Marian model of the peers --------------------------------------

# Transformer-base.
D_MODEL, NHEAD, LAYERS, FFN, VOCAB = 512, 8, 6, 2048, 32000
MAX_POS = 512  # positions in the Marian model (as in the performance anchors: 61,046,784 parameters)
SEED = 1234


def marian_config(transformers, **overrides):
    """MarianConfig of Transformer-base: shared + tied embeddings, scale_embedding,
    sinusoidal positions, ReLU, post-LN, no dropout."""
    kw = dict(
        vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=LAYERS, decoder_layers=LAYERS,
        encoder_attention_heads=NHEAD, decoder_attention_heads=NHEAD, encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN, activation_function="relu", scale_embedding=True,
        max_position_embeddings=MAX_POS, share_encoder_decoder_embeddings=True,
        # Marian's ids: </s> = 0, <unk> = 1, <pad> = last (also the decoder start).
        pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1, eos_token_id=0,
        # The default forced_eos_token_id=0 would force </s> as the last token.
        forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    kw.update(overrides)
    return transformers.MarianConfig(**kw)


def marian_token(i: int) -> str:
    """The token string of id i in the word-level vocabulary of save_marian_folder."""
    return "</s>" if i == 0 else "<unk>" if i == 1 else "<pad>" if i == VOCAB - 1 else f"w{i}"


def save_marian_folder(transformers, model, folder: str) -> None:
    """save_pretrained plus the tokenizer ct2-transformers-converter insists on: a
    32000-entry word-level tokenizer.json (ids 0 </s>, 1 <unk>, 31999 <pad>, else w<id>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({marian_token(i): i for i in range(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                                pad_token="<pad>")
    fast.save_pretrained(folder)


def marian_ct2(transformers, model, workdir: str, name: str, stamp: dict) -> tuple[str, bool]:
    """Converts the Marian model for CTranslate2 (float32) into workdir/name, or reuses
    the conversion there when it was made with the same stamp (seed, config, versions).
    Returns (model dir, reused)."""
    import ctranslate2

    hf_dir = os.path.join(workdir, name + "-hf")

    def build(out_dir):
        save_marian_folder(transformers, model, hf_dir)
        try:
            ct2_convert(hf_dir, out_dir)
        finally:
            shutil.rmtree(hf_dir, ignore_errors=True)

    ct2_dir = os.path.join(workdir, name)
    full = dict(stamp, ctranslate2=ctranslate2.__version__, config=model.config.to_dict())
    return ct2_dir, cached(ct2_dir, full, build)

"""Machine description and CPU accounting: the CPU, the environment, the load, how much
other processes ran while we timed, waiting for a quiet machine.

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

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

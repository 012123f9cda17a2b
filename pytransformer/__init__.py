"""pytransformer: fast, embeddable CPU inference for Transformer models.

C++ kernels (a fork-safe thread pool + SIMD, chosen at import from the CPU's features)
behind a numpy API. See ``pytransformer.ops`` for the functional ops.
"""

from __future__ import annotations

import warnings as _warnings

try:
    from . import _core
except ImportError:
    import importlib.machinery as _machinery
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if any(_os.path.exists(_os.path.join(_here, "_core" + s)) for s in _machinery.EXTENSION_SUFFIXES):
        raise  # built, but it does not load: the original error says why
    raise ImportError(
        f"pytransformer's C++ extension (_core) is not built in {_here}. If that is the source tree, "
        "Python found it first on sys.path (the current directory comes first for `python -c` and "
        "`python -m`): install with `pip install .`, then use the `pytransformer` command or run Python "
        "from another directory; to build inside the source tree, see 'Building for development' in "
        "README.md.") from None
from . import ops
from .config import EncoderConfig, TransformerConfig
from .encoder import EncoderModel, Pooling
from .model import GenerationResult, Transformer
from .pretrained import from_pretrained
from .text import TextTranslator, Translation, load_demo
from .weights import WeightsError
from .whisper import Segment, TranscriptionInfo, WhisperModel

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ops",
    "runtime_info",
    "set_num_threads",
    "get_num_threads",
    "Transformer",
    "TransformerConfig",
    "EncoderConfig",
    "GenerationResult",
    "WhisperModel",
    "Segment",
    "TranscriptionInfo",
    "EncoderModel",
    "Pooling",
    "from_pretrained",
    "TextTranslator",
    "Translation",
    "load_demo",
    "WeightsError",
]

_isa_warning = _core._isa_request_warning()
if _isa_warning:
    _warnings.warn(_isa_warning, RuntimeWarning, stacklevel=2)


def runtime_info() -> dict:
    """What this process runs with.

    Returns a dict with ``version``, ``isa`` (the kernel set in use: ``"avx512"``,
    ``"avx2"`` or ``"generic"``), ``isa_available`` (every set this CPU and build can
    run), ``multithreaded`` (parallel regions may use several threads), ``threading``
    (the thread pool), ``cgroup_cpu_quota`` (CPUs of this process's cgroup quota, 0 when
    none), ``num_threads`` and ``physical_cores`` (the cores this process may use).
    """
    info = {"version": __version__}
    info.update(_core._runtime_info())
    return info


def set_num_threads(n: int) -> None:
    """Set the number of threads every op and model call uses (n >= 1).

    The default is the number of physical cores, or ``PYTRANSFORMER_NUM_THREADS`` /
    ``OMP_NUM_THREADS`` when set. Results are bitwise identical for any count.
    """
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    n = n.__index__()
    if not 1 <= n <= 1024:
        raise ValueError(f"set_num_threads: n must be in [1, 1024], got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads ops and models use."""
    return _core.get_num_threads()

"""Shared helpers of the side-by-side comparison scripts (compare_model.py,
compare_generate.py, compare_embed.py, compare_gemm.py, compare_contention.py), one
module per job, all re-exported here (the scripts use ``bc.name``):

* ``_machine``: the machine description (CPU, environment, load), CPU accounting of
  other processes, waiting for a quiet machine;
* ``_timing``: the interleaved measurement and the rows of a comparison;
* ``_report``: number formats, tables, the text/markdown report;
* ``_args``: the shared command-line arguments and the cached work folder;
* ``_worker``: a library in a worker process of its own (CTranslate2);
* ``_ct2``: the CTranslate2 functions that run in that worker, model conversion;
* ``_marian``: the Transformer-base Marian model the peers run;
* ``_onnx``: ONNX export, dynamic int8 quantization and sessions of ONNX Runtime.

Imports nothing beyond the standard library and numpy at module level (the worker
process imports this module and must not load torch). Not a benchmark for asv: it
defines no time_* attributes.
"""

# flake8: noqa: F401,F403
if __package__:  # imported as benchmarks._common (python -m)
    from ._args import *
    from ._ct2 import *
    from ._machine import *
    from ._machine import WORKER_PIDS
    from ._marian import *
    from ._onnx import *
    from ._report import *
    from ._timing import *
    from ._worker import *
else:  # run as a script: benchmarks/ is on sys.path
    from _args import *
    from _ct2 import *
    from _machine import *
    from _machine import WORKER_PIDS
    from _marian import *
    from _onnx import *
    from _report import *
    from _timing import *
    from _worker import *

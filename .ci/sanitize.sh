#!/usr/bin/env bash
# CI: the C++ extension under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Builds pytransformer._core with -fsanitize=address,undefined into a build dir of its
# own, puts it beside a copy of pytransformer/ in a temporary package dir (the normal
# build, the development symlink and any installed copy are left alone; PYTHONPATH
# makes the tests import the copy), and runs the kernel, model, generation, error and
# fuzz tests with the gcc sanitizer runtimes preloaded into Python. Any sanitizer
# report fails the script: the runtimes abort on the first one, and as a second guard
# the reports (ASan's are written to files, so subprocesses of the tests are covered
# too) and the test output are searched for "AddressSanitizer" and "runtime error:".
#
# Run it inside a virtualenv that has numpy, safetensors, pytest and hypothesis (what
# `pip install ".[test]"` brings); pybind11, cmake, ninja and pytest-xdist are
# pip-installed when missing. About 9 minutes on 2 cores (build ~3, tests ~5.5).
#
# Env: PT_ASAN_DIR=DIR   keep the build and package dirs there (reused by the next run;
#                        default: a temp dir, removed at exit)
#      CXX=...           the compiler (default g++; its libasan/libubsan are preloaded)
#      PT_ASAN_PYTEST_ARGS="..."  extra pytest arguments (e.g. -k, or a single file)
#      PT_ASAN_WORKERS=N  test processes (default 2, pytest-xdist; 1: no xdist)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
start=$(date +%s)
step() { printf '\n=== sanitize: %s (%ds)\n' "$*" "$(( $(date +%s) - start ))"; }

if [[ -n "${PT_ASAN_DIR:-}" ]]; then
  work=$(mkdir -p "$PT_ASAN_DIR" && cd "$PT_ASAN_DIR" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/pytransformer-asan.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
build="$work/build"
pkg="$work/pkg"
reports="$work/reports"

step "build tools"
python -c 'import pybind11' 2>/dev/null || python -m pip install pybind11
command -v cmake > /dev/null || python -m pip install cmake
command -v ninja > /dev/null || python -m pip install ninja
# Two test processes (pytest-xdist): the sanitized tests are CPU-bound and mostly
# single-threaded, and take about 9 minutes in one process on 2 cores.
workers=${PT_ASAN_WORKERS:-2}
if [[ "$workers" -gt 1 ]] && ! python -c 'import xdist' 2> /dev/null; then
  python -m pip install pytest-xdist || workers=1
fi
hash -r
python -c 'import numpy, safetensors, pytest, hypothesis' || {
  echo "sanitize: numpy, safetensors, pytest and hypothesis must be installed (pip install \".[test]\")" >&2
  exit 1
}

cxx=${CXX:-g++}
libasan=$("$cxx" -print-file-name=libasan.so)
libubsan=$("$cxx" -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
  # -print-file-name echoes the bare name back when it does not find the library.
  [[ "$lib" == /* && -e "$lib" ]] || { echo "sanitize: $cxx has no $lib (install its sanitizer runtimes)" >&2; exit 1; }
done

step "configure + build _core with -fsanitize=address,undefined in $build"
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# CMakeLists.txt adds -O3 per target (target_compile_options), after CMAKE_CXX_FLAGS on
# the command line, so an -O1 in CMAKE_CXX_FLAGS would lose. A compiler launcher that
# appends -O1 to every compile makes the last -O the sanitizer-friendly one (clearer
# stack traces, a much faster build of the SIMD kernels).
mkdir -p "$build"
cat > "$build/append-O1.sh" <<'EOF'
#!/bin/sh
exec "$@" -O1
EOF
chmod +x "$build/append-O1.sh"
isa_args=()
if ! grep -q -w avx512f /proc/cpuinfo 2> /dev/null; then
  # This CPU cannot run the AVX-512 kernels, so the tests never reach them: skip their
  # (slowest) translation unit. CMakeLists' check_cxx_compiler_flag keeps a value that
  # is already in the cache.
  isa_args+=(-DPT_CXX_HAS_AVX512=OFF)
fi
CXX="$cxx" cmake -S "$root" -B "$build" -G Ninja "${isa_args[@]}" \
  -DCMAKE_BUILD_TYPE=Debug \
  -DPython_EXECUTABLE="$(command -v python)" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
  -DCMAKE_CXX_COMPILER_LAUNCHER="$build/append-O1.sh" \
  -DCMAKE_CXX_FLAGS="$san -O1 -g" \
  -DCMAKE_SHARED_LINKER_FLAGS="$san" \
  -DCMAKE_MODULE_LINKER_FLAGS="$san" > "$build/configure.log" || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target _core
so=$(find "$build" -maxdepth 1 -name '_core*.so' | head -n 1)
[[ -n "$so" ]] || { echo "sanitize: the build made no _core module" >&2; exit 1; }

step "package dir $pkg (a copy of pytransformer/ + the sanitized _core)"
rm -rf "$pkg"
mkdir -p "$pkg"
cp -R "$root/pytransformer" "$pkg/"
rm -f "$pkg/pytransformer/"_core*.so   # the development symlink, if any, points at the normal build
find "$pkg" -name __pycache__ -type d -prune -exec rm -rf {} +
cp "$so" "$pkg/pytransformer/"

# The sanitizer runtimes must come first in the process (Python itself is not built
# with them), hence LD_PRELOAD. detect_leaks=0: CPython keeps interned objects, module
# state and caches alive until exit by design, so LeakSanitizer would report thousands
# of "leaks" that are not bugs; every other ASan check stays on. Reports go to files
# under $reports (pid-suffixed), so a report from a subprocess of a test is seen too.
rm -rf "$reports"
mkdir -p "$reports"
export LD_PRELOAD="$libasan $libubsan${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export PYTHONPATH="$pkg"
export PYTHONDONTWRITEBYTECODE=1
export HF_HUB_OFFLINE=1
# The fuzz suite runs fewer examples under the sanitizers (each is ~5x slower), and
# does not shrink a failing example (the normal test run does that).
export PT_FUZZ_SCALE="${PT_FUZZ_SCALE:-0.5}" PT_FUZZ_SHRINK="${PT_FUZZ_SHRINK:-0}"

report_check() {
  # Sanitizer report files, or the words of a report in the output: a failure.
  local log=$1 found=0
  if compgen -G "$reports/*" > /dev/null; then
    echo "sanitize: sanitizer reports:"
    for f in "$reports"/*; do echo "--- $f"; cat "$f"; done
    found=1
  fi
  if grep -a -q -E 'AddressSanitizer|runtime error:' "$log" "$reports"/* 2>/dev/null; then
    echo "sanitize: the output holds a sanitizer report:"
    grep -a -n -E 'AddressSanitizer|runtime error:' "$log" | head -n 20 || true
    found=1
  fi
  return "$found"
}

# From here on Python runs outside the repository: the current directory comes first
# on sys.path for `python -` and `python -m`, and the root's unbuilt pytransformer/
# would shadow the sanitized package.
cd "$work"
step "import check"
python - "$pkg" <<'EOF'
import sys
import pytransformer as pt
from pytransformer import _core
assert _core.__file__.startswith(sys.argv[1]), f"imported {_core.__file__}, not the sanitized build"
print("sanitized", _core.__file__, pt.runtime_info())
EOF

# torch (for the few tests that compare against it) loads with the sanitizer runtimes
# preloaded: it is not instrumented itself, and ASan only intercepts its allocations.
# Should a torch build ever fail to import that way, its tests skip (importorskip)
# rather than fail: PT_ASAN_NO_TORCH=1 hides it.
if env -u LD_PRELOAD python -c 'import torch' 2> /dev/null &&
   ! python -c 'import torch' > "$work/torch-import.log" 2>&1; then
  echo "sanitize: torch does not import with the sanitizers preloaded; its tests skip:"
  tail -n 5 "$work/torch-import.log"
  rm -f "$reports"/*   # a report from torch's own import is not ours
  export PT_ASAN_NO_TORCH=1
fi

tests=("$root"/tests/test_kernels_*.py "$root"/tests/test_model.py "$root"/tests/test_generate.py
       "$root"/tests/test_errors.py "$root"/tests/test_hostile_generation.py "$root"/tests/test_fuzz.py
       "$root"/tests/test_threads.py)
for t in "$root"/tests/test_loading_hostile.py "$root"/tests/test_pretrained_errors.py "$root"/tests/test_config.py \
         "$root"/tests/test_weights.py "$root"/tests/test_family_torch.py "$root"/tests/test_model_int8.py \
         "$root"/tests/test_pretrained_whisper.py; do
  [[ -e "$t" ]] && tests+=("$t")
done
# --capture=sys: pytest captures Python's sys.stdout/sys.stderr only, so what the
# runtimes write to fd 2 reaches the log at once. With the default fd capture, the
# report of a test process that the runtime kills is lost with the process. (gcc's
# UBSan, linked with ASan, writes its reports to stderr whatever log_path says.)
pytest_args=(-x -q -p no:cacheprovider --durations=25 --capture=sys)
[[ "$workers" -le 1 ]] || pytest_args+=(-n "$workers")
if [[ -n "${PT_ASAN_NO_TORCH:-}" ]]; then
  # A conftest-free way to make "import torch" fail inside the test process: a shim
  # package dir first on sys.path whose torch raises ImportError.
  mkdir -p "$work/no-torch/torch"
  echo 'raise ImportError("torch is disabled under the sanitizers (it does not import there)")' \
    > "$work/no-torch/torch/__init__.py"
  export PYTHONPATH="$work/no-torch:$PYTHONPATH"
fi

step "pytest under ASan + UBSan: ${tests[*]}"
log="$work/pytest.log"
set +e
# shellcheck disable=SC2086
python -m pytest "${pytest_args[@]}" ${PT_ASAN_PYTEST_ARGS:-} "${tests[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if ! report_check "$log"; then
  [[ $rc -ne 0 ]] || rc=1
fi

step "done: exit code $rc"
exit "$rc"

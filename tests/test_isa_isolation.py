"""The portable part of the module must never execute AVX instructions.

Each instruction set's kernels are compiled in their own translation unit with
their own -m flags, inside their own C++ namespace (pt::kernels::avx2,
pt::kernels::avx512). If an inline function or template were compiled with AVX
flags and merged by the linker into code that runs everywhere, the library would
crash with SIGILL on an older CPU, which this machine cannot show by running it.
So we disassemble the compiled module and check which functions touch which
registers: ymm only inside avx2/avx512 code, zmm and opmask registers only inside
avx512 code.
"""

import re
import shutil
import subprocess

import pytest

import pytransformer


def _module_path():
    return pytransformer._core.__file__


def _functions(path):
    """Yield (demangled function name, list of instruction lines)."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", path],
        check=True, capture_output=True, text=True,
    ).stdout
    name, body = None, []
    header = re.compile(r"^[0-9a-f]+ <(.*)>:$")
    for line in out.splitlines():
        m = header.match(line)
        if m:
            if name is not None:
                yield name, body
            name, body = m.group(1), []
        elif name is not None and line.startswith(" "):
            body.append(line)
    if name is not None:
        yield name, body


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_avx_instructions_only_in_isa_namespaces():
    ymm = re.compile(r"%ymm\d+")
    avx512_only = re.compile(r"%zmm\d+|%k[0-7]\b|\{%k[0-7]\}")
    offenders = []
    counted = {"avx2": 0, "avx512": 0}
    uses = {"avx2": 0, "avx512": 0}  # ISA functions in which the patterns match
    for name, body in _functions(_module_path()):
        text = "\n".join(body)
        in_avx512 = "avx512::" in name
        in_avx2 = "avx2::" in name
        if in_avx512:
            counted["avx512"] += 1
            uses["avx512"] += bool(avx512_only.search(text))
        elif in_avx2:
            counted["avx2"] += 1
            uses["avx2"] += bool(ymm.search(text))
        if avx512_only.search(text) and not in_avx512:
            offenders.append(("AVX-512", name))
        elif ymm.search(text) and not (in_avx2 or in_avx512):
            offenders.append(("AVX", name))
    assert not offenders, "AVX code outside the ISA-specific kernels:\n" + "\n".join(
        f"  {kind}: {name}" for kind, name in offenders[:20]
    )
    # The check must have seen the ISA kernels (the module is not stripped).
    built = pytransformer.runtime_info()["isa_available"]
    for isa in ("avx2", "avx512"):
        if isa in built:
            assert counted[isa] > 0, f"no {isa} functions found: is the module stripped?"
            assert uses[isa] > 0, f"the {isa} kernels show no {isa} registers: the check is blind"

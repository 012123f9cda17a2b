"""Shared fixtures: every instruction set this CPU runs, a seeded generator, and
thread count restoration."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core

ISAS = list(pt.runtime_info()["isa_available"])


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test once per kernel set (generic, avx2, avx512 as available), restoring
    the process-wide choice afterwards."""
    original = pt.runtime_info()["isa"]
    _core._set_isa(request.param)
    try:
        yield request.param
    finally:
        _core._set_isa(original)


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture
def restore_threads():
    """Restore the thread count a test changes."""
    original = pt.get_num_threads()
    try:
        yield original
    finally:
        pt.set_num_threads(original)

"""pt.ops.positional_encoding against the paper's formula (section 3.5).

The positions are not ISA-dispatched (one portable implementation), so these tests
run once, not per ISA.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pytransformer as pt
import reference as ref
from helpers import assert_close

RTOL = 1e-5  # relative to the values' scale, 1 (sines and cosines)


@pytest.mark.parametrize("d_model", [1, 2, 3, 7, 16, 17, 64, 257, 512])
@pytest.mark.parametrize("length", [1, 3, 7, 17, 64, 257, 1000])
def test_matches_formula(length, d_model):
    out = pt.ops.positional_encoding(length, d_model)
    assert out.shape == (length, d_model) and out.dtype == np.float32 and out.flags.c_contiguous
    assert_close(out, ref.positional_encoding(length, d_model), RTOL, 1.0)


def test_explicit_values():
    pe = pt.ops.positional_encoding(50, 6).astype(np.float64)
    for p in [0, 1, 2, 10, 49]:
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert math.isclose(pe[p, 2 * i], math.sin(angle), rel_tol=1e-6, abs_tol=1e-7)
            assert math.isclose(pe[p, 2 * i + 1], math.cos(angle), rel_tol=1e-6, abs_tol=1e-7)


def test_first_row_and_columns():
    pe = pt.ops.positional_encoding(100, 32)
    np.testing.assert_array_equal(pe[0, 0::2], 0.0)
    np.testing.assert_array_equal(pe[0, 1::2], 1.0)
    p = np.arange(100, dtype=np.float64)
    assert_close(pe[:, 0], np.sin(p), RTOL, 1.0)
    assert_close(pe[:, 1], np.cos(p), RTOL, 1.0)
    assert np.all(np.abs(pe) <= 1.0)


def test_prefix_consistency():
    # A longer table starts with the shorter one.
    np.testing.assert_array_equal(pt.ops.positional_encoding(300, 24)[:40], pt.ops.positional_encoding(40, 24))


def test_odd_d_model_last_column_is_sine():
    pe = pt.ops.positional_encoding(20, 5).astype(np.float64)
    p = np.arange(20)
    assert_close(pe[:, 4].astype(np.float32), np.sin(p / 10000 ** (4 / 5)), RTOL, 1.0)


def test_numpy_integer_arguments():
    np.testing.assert_array_equal(pt.ops.positional_encoding(np.int64(9), np.int32(8)),
                                  pt.ops.positional_encoding(9, 8))


@pytest.mark.parametrize("length,d_model", [(0, 8), (5, 0), (0, 0)])
def test_empty(length, d_model):
    out = pt.ops.positional_encoding(length, d_model)
    assert out.shape == (length, d_model) and out.dtype == np.float32

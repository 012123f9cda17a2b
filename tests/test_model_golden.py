"""PyTorch parity without torch: committed golden fixtures (tests/golden, written by
make_golden.py with the textbook nn.Transformer model of torch_models.py).

Each case is a small random model in pytransformer's file format plus the inputs and
PyTorch's memory and logits. The model must load and reproduce them within 1e-4
absolute (memory at real positions only) on every ISA.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import pytransformer as pt
from model_utils import assert_close_valid, reference_decode, reference_encode

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
CASES = ["post_ln_relu", "pre_ln_gelu_shared_tied", "no_final_norm_odd"]
ATOL = 1e-4


def load_case(name):
    with np.load(os.path.join(GOLDEN_DIR, name + ".npz"), allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    return os.path.join(GOLDEN_DIR, name + ".safetensors"), data


def test_fixtures_present():
    found = sorted(f[: -len(".npz")] for f in os.listdir(GOLDEN_DIR) if f.endswith(".npz"))
    assert found == sorted(CASES), "tests/golden out of sync with CASES (rerun make_golden.py)"
    total = sum(os.path.getsize(os.path.join(GOLDEN_DIR, f)) for f in os.listdir(GOLDEN_DIR))
    assert total < 1_000_000, f"golden fixtures take {total} bytes: keep them small"


@pytest.mark.parametrize("case", CASES)
def test_golden(isa, case):
    path, g = load_case(case)
    model = pt.Transformer.load(path)
    lengths = g["src_lengths"]
    memory = model.encode(g["src_ids"], lengths)
    assert memory.dtype == np.float32 and memory.shape == g["memory"].shape
    assert_close_valid(memory, g["memory"], lengths, ATOL, f"{case} memory ({isa}, torch {g['torch_version']})")
    logits = model.decode(g["tgt_ids"], memory, lengths)
    assert logits.dtype == np.float32 and logits.shape == g["logits"].shape
    assert_close_valid(logits, g["logits"], None, ATOL, f"{case} logits ({isa}, torch {g['torch_version']})")
    # decode alone, from PyTorch's memory
    assert_close_valid(model.decode(g["tgt_ids"], g["memory"], lengths), g["logits"], None, ATOL,
                       f"{case} logits from torch's memory ({isa})")


@pytest.mark.parametrize("case", CASES)
def test_golden_fixture_matches_float64_reference(case):
    """The fixtures themselves: PyTorch's outputs agree with the float64 numpy
    reference on the stored weights (a corrupted or stale fixture fails here)."""
    from safetensors import safe_open

    path, g = load_case(case)
    with safe_open(path, framework="numpy") as f:
        config = pt.TransformerConfig.from_json(f.metadata()["config"])
        weights = {k: f.get_tensor(k) for k in f.keys()}
    lengths = g["src_lengths"]
    memory = reference_encode(config, weights, g["src_ids"], lengths)
    assert_close_valid(g["memory"], memory, lengths, ATOL, f"{case}: fixture memory vs float64 reference")
    logits = reference_decode(config, weights, g["tgt_ids"], memory, lengths)
    assert_close_valid(g["logits"], logits, None, ATOL, f"{case}: fixture logits vs float64 reference")

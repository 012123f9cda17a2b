"""Write the golden fixtures of test_model_golden.py (run with torch installed):

    cd tests && python make_golden.py        # or: python tests/make_golden.py

For each case, a small random textbook PyTorch model (torch_models.TorchTransformer)
is saved as ``golden/<case>.safetensors`` in pytransformer's own format
(``pt.Transformer(config, weights).save``), and ``golden/<case>.npz`` holds the
inputs and PyTorch's outputs: src_ids, src_lengths, tgt_ids, memory, logits (and the
torch version that made them). Keep the cases small: the files are committed.
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pytransformer as pt  # noqa: E402
from model_utils import padded_ids  # noqa: E402
from torch_models import TorchTransformer  # noqa: E402

GOLDEN_DIR = os.path.join(HERE, "golden")

CASES = {
    # the paper's layout: post-LN, ReLU, separate tables, output bias
    "post_ln_relu": dict(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=24,
                         src_vocab_size=23, tgt_vocab_size=29, max_length=16),
    # pre-LN, GELU, one table for everything (shared + tied output with a bias), custom scale and eps
    "pre_ln_gelu_shared_tied": dict(d_model=12, nhead=3, num_encoder_layers=1, num_decoder_layers=2,
                                    dim_feedforward=20, activation="gelu", norm_first=True, layer_norm_eps=1e-6,
                                    embedding_scale=2.0, src_vocab_size=19, tgt_vocab_size=19,
                                    share_embeddings=True, tie_output=True, max_length=16),
    # odd width, no final norms, no output bias, pad id 3
    "no_final_norm_odd": dict(d_model=10, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=14,
                              norm_first=True, final_norm=False, output_bias=False, src_vocab_size=17,
                              tgt_vocab_size=13, pad_id=3, max_length=16),
}


def make_case(name, kwargs, seed):
    import torch

    config = pt.TransformerConfig(**kwargs)
    tm = TorchTransformer(config, seed=seed)
    rng = np.random.default_rng(seed)
    lengths = np.array([7, 3, 5, 1])
    src = padded_ids(rng, lengths, 7, config.src_vocab_size, config.pad_id)
    tgt = rng.integers(0, config.tgt_vocab_size, size=(4, 5))
    memory = tm.encode(src, lengths)
    logits = tm.decode(tgt, memory, lengths)
    pt.Transformer(config, tm.pt_weights()).save(os.path.join(GOLDEN_DIR, name + ".safetensors"))
    np.savez_compressed(os.path.join(GOLDEN_DIR, name + ".npz"), src_ids=src, src_lengths=lengths, tgt_ids=tgt,
                        memory=memory, logits=logits, torch_version=np.array(torch.__version__))


def main():
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    for seed, (name, kwargs) in enumerate(CASES.items()):
        make_case(name, kwargs, seed=100 + seed)
    total = sum(os.path.getsize(os.path.join(GOLDEN_DIR, f)) for f in os.listdir(GOLDEN_DIR))
    print(f"wrote {len(CASES)} cases to {GOLDEN_DIR} ({total} bytes)")


if __name__ == "__main__":
    main()

"""asv benchmarks: the Transformer-base model (pt.Transformer) end to end.

Transformer-base: d_model 512, 8 heads, 6+6 layers, FFN 2048 ReLU, post-LN, vocabulary
32000 (shared source/target embeddings, output layer tied to them, with a bias),
float32, random weights (cost does not depend on the values).

- ``Encode``: ``model.encode(src_ids)`` at batch x length 1x32, 1x128 and 32x64.
- ``Decode``: teacher-forced ``model.decode(tgt_ids, memory)`` for targets of 32
  tokens at batch 1 and 16 against a 32-token source (memory encoded in ``setup``):
  causal self-attention, cross-attention and the 32000-way output layer for every
  target position.

Each with 1 and 2 threads (``pt.set_num_threads`` in ``setup``). Building the model
takes about a second, so ``setup_cache`` builds it once per run and saves it to a
safetensors file, and every benchmark process loads that file in ``setup``.
``benchmarks/compare_model.py`` times the encoder against PyTorch and CTranslate2.
"""

import os

import numpy as np

import pytransformer as pt

THREADS = [1, 2]
VOCAB = 32000
SRC_LEN = 32


def _config():
    return pt.TransformerConfig(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                                dim_feedforward=2048, activation="relu", src_vocab_size=VOCAB,
                                tgt_vocab_size=VOCAB, share_embeddings=True, tie_output=True)


def _ids(rng, batch, length, eos):
    ids = rng.integers(3, VOCAB, (batch, length))
    ids[:, -1] = eos
    return ids


class _Model:
    # 32x64 encode and 16x32 decode take a few hundred ms per call on one thread.
    timeout = 180
    # At most 10 samples and about 6 s per benchmark: keeps the suite quick.
    repeat = (1, 10, 6.0)
    warmup_time = 0.2

    def setup_cache(self):
        config = _config()
        rng = np.random.default_rng(0)
        weights = {}
        for name, shape in pt.weights.expected_weight_shapes(config).items():
            w = rng.standard_normal(shape, dtype=np.float32)
            if name.endswith("embed.weight"):
                w *= np.float32(512**-0.5)
            elif len(shape) == 2:
                w *= np.float32(shape[1] ** -0.5)
            elif ".norm" in name and name.endswith(".weight"):
                w = 1.0 + 0.1 * w
            else:
                w *= np.float32(0.1)
            weights[name] = w
        path = os.path.abspath("transformer_base.safetensors")
        pt.Transformer(config, weights).save(path)
        return path

    def _load(self, path, threads):
        pt.set_num_threads(threads)
        self.model = pt.Transformer.load(path)
        self.rng = np.random.default_rng(1)


class Encode(_Model):
    """encode(src_ids [B, S]) -> memory [B, S, 512]."""

    params = ([(1, 32), (1, 128), (32, 64)], THREADS)
    param_names = ["B,S", "threads"]

    def setup(self, path, bs, threads):
        self._load(path, threads)
        self.src = _ids(self.rng, *bs, self.model.config.eos_id)

    def time_encode(self, path, bs, threads):
        self.model.encode(self.src)


class Decode(_Model):
    """Teacher-forced decode(tgt_ids [B, T], memory [B, 32, 512]) -> logits [B, T, 32000]."""

    params = ([(1, 32), (16, 32)], THREADS)
    param_names = ["B,T", "threads"]

    def setup(self, path, bt, threads):
        self._load(path, threads)
        b, t = bt
        self.memory = self.model.encode(_ids(self.rng, b, SRC_LEN, self.model.config.eos_id))
        self.tgt = self.rng.integers(3, VOCAB, (b, t))
        self.tgt[:, 0] = self.model.config.bos_id

    def time_decode(self, path, bt, threads):
        self.model.decode(self.tgt, self.memory)

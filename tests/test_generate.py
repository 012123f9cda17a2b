"""Transformer.generate / generate_tokens without torch: greedy search and beam search
against the numpy reference searches of reference_search.py (full recomputation
through ``model.decode``, no cache), sampling (reproducibility, independence of the
other sources, top-k / top-p / temperature checked statistically), streaming, option
errors, thread invariance, every ISA.

Plain random weights make a model repeat one token forever, which tests nothing about
search. The models here ("lively" models) add to random weights a random permutation
of the target embedding table in the output projection (each token points to a next
one), a random generator bias, and an extra bias on ``eos_id`` chosen so that about
half the greedy outputs end before ~16 tokens: outputs depend on the source and the
position, and hypotheses end at different lengths; the ``spec`` fixture checks this.
Models are built inside each test, after the ``isa`` fixture switched kernels.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import gc
import math

import numpy as np
import pytest

import pytransformer as pt
import reference_search as rs
from model_utils import random_weights

TOL = 1e-4        # scores and log-probabilities vs the float64 reference over float32 logits
MAX_LEN = 16      # default max_length of the tests


@pytest.fixture(autouse=True)
def one_thread(restore_threads):
    """One thread by default: these tiny models gain nothing from more, and on a busy
    machine OpenMP's waiting threads cost milliseconds per call. The thread tests set
    1 and 2 threads themselves."""
    pt.set_num_threads(1)


# ---------------------------------------------------------------------------
# Lively test models
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    norm_first: bool
    layers: int
    eos_bias: float
    d_model: int = 32
    vocab: int = 32
    bos_id: int = 1
    eos_id: int = 2

    def __str__(self):
        return self.name


SPECS = [
    Spec("post_ln_1", seed=1, norm_first=False, layers=1, eos_bias=3.0),
    Spec("post_ln_2", seed=27, norm_first=False, layers=2, eos_bias=7.0),
    Spec("pre_ln_1", seed=4, norm_first=True, layers=1, eos_bias=6.0),
    Spec("pre_ln_2", seed=10, norm_first=True, layers=2, eos_bias=6.5),
    # other special ids (bos 4, eos 7), d_model 48, 45 target tokens
    Spec("post_ln_wide", seed=4, norm_first=False, layers=1, eos_bias=4.0, d_model=48, vocab=45, bos_id=4, eos_id=7),
    Spec("pre_ln_wide", seed=3, norm_first=True, layers=2, eos_bias=5.5, d_model=48, vocab=45, bos_id=4, eos_id=7),
]
SPEC_BY_NAME = {s.name: s for s in SPECS}


@functools.lru_cache(maxsize=None)
def lively_weights(spec):
    rng = np.random.default_rng(spec.seed)
    config = pt.TransformerConfig(
        d_model=spec.d_model, nhead=2, num_encoder_layers=spec.layers, num_decoder_layers=spec.layers,
        dim_feedforward=2 * spec.d_model, src_vocab_size=spec.vocab + 3, tgt_vocab_size=spec.vocab, max_length=48,
        norm_first=spec.norm_first, pad_id=0, bos_id=spec.bos_id, eos_id=spec.eos_id)
    w = random_weights(config, rng)
    emb = w["tgt_embed.weight"]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    perm = rng.permutation(spec.vocab)
    w["generator.weight"] = ((w["generator.weight"] + emb[perm]) * 3.0).astype(np.float32)
    bias = rng.normal(0.0, 1.0, spec.vocab)
    bias[spec.eos_id] += spec.eos_bias
    w["generator.bias"] = bias.astype(np.float32)
    return config, w


def build(spec):
    """A new model (binds the ISA active now)."""
    config, w = lively_weights(spec)
    return pt.Transformer(config, w)


def sources(spec, lengths=(10, 3, 7, 1, 10, 5), S=10, seed=2024):
    """Padded source batch (int64 [B, S], lengths [B]) of the spec's vocabulary."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    ids = rng.integers(3, spec.vocab + 3, size=(len(lengths), S))
    ids[np.arange(S)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def start_tokens_for(spec, B):
    """Forced prefixes of various lengths, including the ids of BOS and EOS (forced
    tokens are plain tokens: an EOS among them does not end the hypothesis)."""
    pool = [[], [5], [9, 10, 11], [spec.eos_id], [spec.bos_id, 6], [12, spec.eos_id, 13, 14]]
    return [pool[b % len(pool)] for b in range(B)]


@functools.lru_cache(maxsize=None)
def _check_lively(spec):
    model = build(spec)
    src, lengths = sources(spec)
    greedy = rs.greedy_search(model, src, lengths, max_length=MAX_LEN)
    seqs = [r.hypotheses[0].sequence for r in greedy]
    gen = [r.hypotheses[0].generated for r in greedy]
    ended = [len(s) < g for s, g in zip(seqs, gen)]  # EOS counted in g, not in s
    assert len({tuple(s) for s in seqs}) >= 4, f"{spec}: greedy outputs barely depend on the source: {seqs}"
    assert 1 <= sum(ended) < len(seqs), f"{spec}: EOS never or always ends greedy search early: {seqs}"
    assert len(set(gen)) >= 3, f"{spec}: greedy outputs all about one length: {gen}"
    assert np.mean([len(set(s)) for s in seqs if s]) >= 3, f"{spec}: greedy outputs repeat one token: {seqs}"
    beam = rs.beam_search(model, src, lengths, beam_size=4, num_hypotheses=4, max_length=MAX_LEN)
    assert any(len({h.generated for h in r.hypotheses}) > 1 for r in beam), \
        f"{spec}: beam hypotheses all of one length"
    assert len({r.steps for r in beam}) > 1, f"{spec}: beam search stops at the same step for every source"
    assert any(r.steps < MAX_LEN for r in beam), f"{spec}: beam search never stops before max_length"
    assert sum(r.hypotheses[0].sequence != s for r, s in zip(beam, seqs)) >= 1, f"{spec}: beam search = greedy"
    return True


@pytest.fixture(params=SPECS, ids=str)
def spec(request):
    """A lively model spec, checked once: outputs differ across sources, end at
    different lengths, beam search differs from greedy and stops early for some sources."""
    _check_lively(request.param)
    return request.param


STAT_SPECS = ["post_ln_1", "pre_ln_1", "post_ln_wide"]


@pytest.fixture(params=STAT_SPECS)
def stat_spec(request):
    """The specs of the statistical sampling tests (a subset, for time)."""
    spec = SPEC_BY_NAME[request.param]
    _check_lively(spec)
    return spec


# ---------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------


def assert_matches(results, refs, what):
    assert isinstance(results, list) and len(results) == len(refs), (what, len(results), len(refs))
    for b, (res, ref) in enumerate(zip(results, refs)):
        assert isinstance(res, pt.GenerationResult), type(res)
        expected = [h.sequence for h in ref.hypotheses]
        assert res.sequences == expected, (
            f"{what}: source {b}: got {res.sequences}, expected {expected} "
            f"(reference decision margin {ref.margin:.2e}; scores got {res.scores}, "
            f"expected {[h.score for h in ref.hypotheses]})")
        for seq in res.sequences:
            assert all(type(t) is int for t in seq), f"{what}: tokens must be ints: {seq}"
        np.testing.assert_allclose(res.log_probs, [h.log_prob for h in ref.hypotheses], rtol=0, atol=TOL,
                                   err_msg=f"{what}: source {b}: log_probs")
        np.testing.assert_allclose(res.scores, [h.score for h in ref.hypotheses], rtol=0, atol=TOL,
                                   err_msg=f"{what}: source {b}: scores")


def same_results(a, b):
    return [(r.sequences, r.scores, r.log_probs) for r in a] == [(r.sequences, r.scores, r.log_probs) for r in b]


# ---------------------------------------------------------------------------
# Greedy search vs the reference
# ---------------------------------------------------------------------------

GREEDY_CASES = {
    "padded": dict(),
    "no_lengths": dict(no_lengths=True),
    "start_tokens": dict(start=True),
    "min_length": dict(min_length=5, max_length=12),
    "min_eq_max": dict(min_length=7, max_length=7),
    "max_length_1": dict(max_length=1),
    "start_min_penalty": dict(start=True, min_length=3, length_penalty=2.0),
    "empty_source_row": dict(lengths=(10, 0, 4, 10)),
    "long": dict(max_length=40),
}


@pytest.mark.parametrize("case", list(GREEDY_CASES))
def test_greedy_matches_reference(spec, case):
    """The cached incremental decoder emits exactly the tokens of greedy search by full
    recomputation through model.decode; log_probs and scores within 1e-4."""
    opts = dict(GREEDY_CASES[case])
    model = build(spec)
    src, lengths = sources(spec, opts.pop("lengths", (10, 3, 7, 1, 10, 5)))
    if opts.pop("no_lengths", False):
        lengths = None
    start = start_tokens_for(spec, len(src)) if opts.pop("start", False) else None
    kw = dict(max_length=MAX_LEN)
    kw.update(opts)
    out = model.generate(src, lengths, start_tokens=start, **kw)
    ref = rs.greedy_search(model, src, lengths, start_tokens=start, **kw)
    assert_matches(out, ref, f"greedy {spec} {case}")
    for r, res in zip(ref, out):
        assert len(res.sequences) == 1
        if "min_length" in kw:
            assert r.hypotheses[0].generated >= kw["min_length"]


def test_greedy_scores_are_normalised_log_probs(spec):
    model = build(spec)
    src, lengths = sources(spec)
    for penalty in (0.0, 0.6, 1.0, 2.0):
        for res in model.generate(src, lengths, max_length=MAX_LEN, length_penalty=penalty):
            lp, score = res.log_probs[0], res.scores[0]
            # generated length: the tokens, plus EOS when it ended early
            n = len(res.sequences[0]) + (len(res.sequences[0]) < MAX_LEN)
            assert lp < 0 and math.isfinite(lp)
            assert score == pytest.approx(lp / n ** penalty, rel=1e-6, abs=1e-6)


def test_min_length_equal_max_length_forces_the_length(spec):
    model = build(spec)
    src, lengths = sources(spec)
    eos = spec.eos_id
    for beam in (1, 3):
        for res in model.generate(src, lengths, max_length=9, min_length=9, beam_size=beam, num_hypotheses=beam):
            for seq in res.sequences:
                assert len(seq) == 9 and eos not in seq, (beam, seq)


def test_return_scores_false(spec):
    model = build(spec)
    src, lengths = sources(spec)
    for kw in (dict(), dict(beam_size=3, num_hypotheses=2), dict(sampling_topk=0, seed=3)):
        with_scores = model.generate(src, lengths, max_length=MAX_LEN, **kw)
        without = model.generate(src, lengths, max_length=MAX_LEN, return_scores=False, **kw)
        for a, b in zip(with_scores, without):
            assert b.sequences == a.sequences and b.scores is None and b.log_probs is None


def test_greedy_ties_take_the_first_eligible_token():
    """Greedy picks the lowest id among the largest logits, skipping EOS before
    min_length and suppressed tokens; +0.0 and -0.0 tie. The output weight is zero,
    so every step's logits are exactly the output bias (the argmax is independent of
    the decoder). Both paths of the chooser: every token allowed, and suppress_tokens."""
    spec = SPEC_BY_NAME["post_ln_wide"]  # eos 7, 45 target tokens
    config, cached = lively_weights(spec)
    w = dict(cached)  # lively_weights is cached: leave its dict as it is
    w["generator.weight"] = np.zeros_like(w["generator.weight"])

    def greedy(bias, **kw):
        w["generator.bias"] = np.asarray(bias, dtype=np.float32)
        model = pt.Transformer(config, w)
        src, lengths = sources(spec, lengths=(4, 2))
        return [r.sequences[0] for r in model.generate(src, lengths, max_length=3, **kw)]

    bias = np.full(spec.vocab, -1.0)
    bias[[7, 12, 30]] = 5.0  # EOS and two later tokens share the maximum
    assert greedy(bias) == [[], []]  # EOS comes first: stop at once
    assert greedy(bias, min_length=3) == [[12, 12, 12]] * 2  # EOS blocked: the next tie
    assert greedy(bias, min_length=3, suppress_tokens=[12]) == [[30, 30, 30]] * 2
    assert greedy(bias, suppress_tokens=[7, 12, 30]) == [[0, 0, 0]] * 2  # all -1: the first eligible
    bias[:] = -1.0
    bias[9], bias[40], bias[44] = -0.0, 0.0, -0.0  # the maximum is zero: the first zero wins
    assert greedy(bias) == [[9, 9, 9]] * 2
    assert greedy(bias, suppress_tokens=[9]) == [[40, 40, 40]] * 2
    bias[3] = 1e-45  # a denormal above every zero
    assert greedy(bias) == [[3, 3, 3]] * 2


def test_empty_batch():
    model = build(SPECS[0])
    assert model.generate(np.zeros((0, 5), np.int64), max_length=4) == []
    assert model.generate(np.zeros((0, 5), np.int64), max_length=4, beam_size=3) == []
    assert model.generate(np.zeros((0, 0), np.int64), np.zeros(0, np.int64), max_length=4, sampling_topk=0) == []


def test_accepted_source_forms():
    spec = SPECS[0]
    model = build(spec)
    src, _ = sources(spec, (10, 10, 10))
    expected = model.generate(src, max_length=MAX_LEN)
    for variant in (src.tolist(), src.astype(np.int32), src.astype(np.uint16), np.asfortranarray(src),
                    src[:, ::-1].copy()[:, ::-1]):
        assert same_results(model.generate(variant, max_length=MAX_LEN), expected)
    assert same_results(model.generate(src, [10, 10, 10], max_length=MAX_LEN), expected)
    assert same_results(model.generate(src, np.array([10, 10, 10], np.int32), max_length=MAX_LEN), expected)


def test_max_length_up_to_the_model_limit():
    spec = SPECS[0]
    model = build(spec)
    src, lengths = sources(spec, (10, 4))
    config = model.config
    out = model.generate(src, lengths, max_length=config.max_length, min_length=config.max_length)
    assert [len(r.sequences[0]) for r in out] == [config.max_length] * 2
    start = [[5, 6], [7]]
    out = model.generate(src, lengths, max_length=config.max_length - 2, min_length=config.max_length - 2,
                         start_tokens=start, beam_size=2)
    assert [len(r.sequences[0]) for r in out] == [config.max_length, config.max_length - 1]
    assert [r.sequences[0][:len(p)] for r, p in zip(out, start)] == start


# ---------------------------------------------------------------------------
# Beam search vs the reference (Hugging Face semantics)
# ---------------------------------------------------------------------------

BEAM_CASES = [
    dict(length_penalty=1.0),
    dict(length_penalty=0.0),
    dict(length_penalty=0.6),
    dict(length_penalty=2.0),
    dict(length_penalty=-0.5),
    dict(min_length=4),
    dict(start=True, length_penalty=0.6),
    dict(start=True, min_length=2, length_penalty=2.0),
    dict(max_length=1),
    dict(min_length=6, max_length=6),
    dict(max_length=30, length_penalty=2.0),
]


@pytest.mark.parametrize("beam_size", [1, 2, 3, 4, 5])
def test_beam_search_matches_reference(spec, beam_size):
    """Every hypothesis (num_hypotheses = beam_size), its score and log_prob, for padded
    batches of sources that stop at different steps, over length penalties, min_length,
    start tokens and max_length."""
    model = build(spec)
    src, lengths = sources(spec)
    for case in BEAM_CASES:
        opts = dict(case)
        start = start_tokens_for(spec, len(src)) if opts.pop("start", False) else None
        kw = dict(max_length=MAX_LEN, beam_size=beam_size, num_hypotheses=beam_size)
        kw.update(opts)
        out = model.generate(src, lengths, start_tokens=start, **kw)
        ref = rs.beam_search(model, src, lengths, start_tokens=start, **kw)
        assert_matches(out, ref, f"beam {spec} {case} K={beam_size}")
        for res in out:
            assert len(res.sequences) == beam_size
            assert res.scores == sorted(res.scores, reverse=True), f"{case}: hypotheses not best first"


def test_every_isa(isa, spec):
    """Greedy search, beam search and streaming against the reference with each kernel
    set (the model built after the switch)."""
    model = build(spec)
    src, lengths = sources(spec)
    start = start_tokens_for(spec, len(src))
    runs = [dict(), dict(start_tokens=start, min_length=3), dict(beam_size=3, num_hypotheses=3, length_penalty=0.6),
            dict(beam_size=4, num_hypotheses=2, start_tokens=start, min_length=2, length_penalty=2.0)]
    for kw in runs:
        kw = dict(kw, max_length=MAX_LEN)
        out = model.generate(src, lengths, **kw)
        if kw.get("beam_size", 1) > 1:
            ref = rs.beam_search(model, src, lengths, **kw)
        else:
            ref = rs.greedy_search(model, src, lengths, **kw)
        assert_matches(out, ref, f"{spec} {kw} ({isa})")
    row = src[2, :lengths[2]]
    assert list(model.generate_tokens(row, max_length=MAX_LEN)) == \
        rs.greedy_search(model, row[None, :], max_length=MAX_LEN)[0].hypotheses[0].sequence


@pytest.mark.parametrize("spec_name", ["post_ln_1", "pre_ln_2"])
def test_beam_search_one_source_at_a_time(spec_name):
    """Sources leave the batch when done: each source's result equals the reference and
    its result alone (batch compaction does not mix beams up)."""
    spec = SPEC_BY_NAME[spec_name]
    model = build(spec)
    src, lengths = sources(spec, (10, 1, 8, 2, 10, 6, 3, 9))
    kw = dict(max_length=MAX_LEN, beam_size=4, num_hypotheses=4, length_penalty=0.6)
    out = model.generate(src, lengths, **kw)
    ref = rs.beam_search(model, src, lengths, **kw)
    assert len({r.steps for r in ref}) >= 3, "the sources should stop at different steps"
    assert_matches(out, ref, f"beam {spec}")
    for b in range(len(src)):
        alone = model.generate(src[b:b + 1, :lengths[b]], **kw)[0]
        assert alone.sequences == out[b].sequences, f"source {b}"
        np.testing.assert_allclose(alone.scores, out[b].scores, rtol=0, atol=1e-5)


def test_num_hypotheses_are_the_best_first(spec):
    model = build(spec)
    src, lengths = sources(spec)
    full = model.generate(src, lengths, max_length=MAX_LEN, beam_size=5, num_hypotheses=5)
    for n in (1, 2, 4):
        part = model.generate(src, lengths, max_length=MAX_LEN, beam_size=5, num_hypotheses=n)
        for a, b in zip(part, full):
            assert a.sequences == b.sequences[:n] and a.scores == b.scores[:n] and a.log_probs == b.log_probs[:n]


def test_beam_size_1_is_greedy(spec):
    model = build(spec)
    src, lengths = sources(spec)
    start = start_tokens_for(spec, len(src))
    for kw in (dict(), dict(min_length=3, length_penalty=0.6, start_tokens=start)):
        greedy = model.generate(src, lengths, max_length=MAX_LEN, **kw)
        beam1 = model.generate(src, lengths, max_length=MAX_LEN, beam_size=1, num_hypotheses=1, **kw)
        assert [r.sequences for r in beam1] == [r.sequences for r in greedy]
        for a, b in zip(beam1, greedy):
            np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------

SAMPLING_OPTIONS = [
    dict(sampling_topk=0),
    dict(sampling_topk=5, sampling_temperature=0.8),
    dict(sampling_topk=0, sampling_topp=0.9, sampling_temperature=1.3),
    dict(sampling_topk=8, sampling_topp=0.7, min_length=3),
]


@pytest.mark.parametrize("opts", SAMPLING_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sampling_is_reproducible(spec, opts):
    model = build(spec)
    src, lengths = sources(spec)
    start = start_tokens_for(spec, len(src))
    a = model.generate(src, lengths, max_length=MAX_LEN, seed=1234, start_tokens=start, **opts)
    b = model.generate(src, lengths, max_length=MAX_LEN, seed=1234, start_tokens=start, **opts)
    assert same_results(a, b)
    others = [model.generate(src, lengths, max_length=MAX_LEN, seed=s, start_tokens=start, **opts)
              for s in (1, 2, 3)]
    assert any(not same_results(a, o) for o in others), "different seeds give the same samples"
    # numpy integer seeds and seeds >= 2**63 are fine
    c = model.generate(src, lengths, max_length=MAX_LEN, seed=np.int64(1234), start_tokens=start, **opts)
    assert same_results(a, c)
    model.generate(src, lengths, max_length=MAX_LEN, seed=2 ** 64 + 5, **opts)


def test_sampling_without_seed_varies():
    spec = SPECS[0]
    model = build(spec)
    src, lengths = sources(spec)
    outs = {tuple(tuple(r.sequences[0]) for r in model.generate(src, lengths, max_length=MAX_LEN, sampling_topk=0))
            for _ in range(4)}
    assert len(outs) > 1


def test_sampled_log_probs_are_the_model_log_probs(spec):
    """log_probs of a sample = the sum of its tokens' log-softmax at temperature 1 (EOS
    included), whatever the sampling temperature; scores = log_prob / length**penalty."""
    model = build(spec)
    src, lengths = sources(spec)
    memory = model.encode(src, lengths)
    for opts in (dict(sampling_topk=0), dict(sampling_topk=0, sampling_temperature=2.5, length_penalty=0.6),
                 dict(sampling_topk=4, sampling_temperature=0.5, length_penalty=1.5)):
        out = model.generate(src, lengths, max_length=MAX_LEN, seed=77, **opts)
        for b, res in enumerate(out):
            seq = res.sequences[0]
            ended = len(seq) < MAX_LEN
            targets = seq + [spec.eos_id] if ended else seq
            tgt = np.array([[spec.bos_id] + targets[:-1]])
            lp = rs.log_softmax(model.decode(tgt, memory[b:b + 1], lengths[b:b + 1])[0])
            expected = float(lp[np.arange(len(targets)), targets].sum())
            assert res.log_probs[0] == pytest.approx(expected, abs=TOL), (opts, b)
            n = len(targets)
            assert res.scores[0] == pytest.approx(expected / n ** opts.get("length_penalty", 1.0), abs=TOL)
            assert spec.eos_id not in seq


@pytest.mark.parametrize("opts", [dict(), dict(sampling_temperature=0.3), dict(sampling_temperature=3.0),
                                  dict(sampling_topp=0.5), dict(sampling_topp=0.2, sampling_temperature=5.0)])
def test_sampling_topk_1_is_greedy(spec, opts):
    model = build(spec)
    src, lengths = sources(spec)
    greedy = model.generate(src, lengths, max_length=MAX_LEN)
    for seed in (0, 99):
        out = model.generate(src, lengths, max_length=MAX_LEN, sampling_topk=1, seed=seed, **opts)
        assert same_results(out, greedy)


def test_sample_does_not_depend_on_other_sources(spec):
    """A source's sample depends on the seed and its place in the batch, not on the other
    sources (their content, length, when they finish, how many follow)."""
    model = build(spec)
    src, lengths = sources(spec)
    opts = dict(max_length=MAX_LEN, sampling_topk=0, sampling_temperature=1.2, seed=2024)
    base = model.generate(src, lengths, **opts)
    other_src, other_lengths = sources(spec, (2, 10, 1, 6, 10, 9), seed=99)
    for keep in ([0], [2, 4], [1, 3, 5]):
        mixed, mixed_lengths = other_src.copy(), other_lengths.copy()
        mixed[keep], mixed_lengths[keep] = src[keep], lengths[keep]
        out = model.generate(mixed, mixed_lengths, **opts)
        for b in keep:
            assert (out[b].sequences, out[b].log_probs) == (base[b].sequences, base[b].log_probs), f"source {b}"
    # fewer sources after it
    for n in (1, 3):
        out = model.generate(src[:n], lengths[:n], **opts)
        assert same_results(out, base[:n])


def _first_token_counts(model, spec, src_row, length, n, prefix=(), **opts):
    """Counts of the first generated token over n independent samples (n copies of
    one source: one stream each)."""
    src = np.repeat(src_row[None, :], n, axis=0)
    lengths = np.full(n, length)
    start = [list(prefix)] * n if prefix else None
    out = model.generate(src, lengths, max_length=1, start_tokens=start, return_scores=False, **opts)
    toks = [r.sequences[0][len(prefix)] if len(r.sequences[0]) > len(prefix) else spec.eos_id for r in out]
    return np.bincount(toks, minlength=spec.vocab)


def _next_probs(model, spec, src_row, length, prefix=(), temperature=1.0):
    memory = model.encode(src_row[None, :], [length])
    logits = model.decode(np.array([[spec.bos_id, *prefix]]), memory, [length])[0, -1].astype(np.float64)
    p = np.exp((logits - logits.max()) / temperature)
    return p / p.sum(), logits


def _chi2_limit(df, z=5.0):
    """Upper quantile of chi-square(df) at ~z standard deviations (Wilson-Hilferty)."""
    return df * (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3


def assert_distribution(counts, probs, what):
    """Tokens outside the support never drawn; the counts fit the probabilities
    (chi-square, bins with expected count < 5 pooled, a ~5-sigma limit)."""
    n = counts.sum()
    outside = np.flatnonzero((probs == 0) & (counts > 0))
    assert outside.size == 0, f"{what}: drew tokens outside the support: {outside.tolist()}"
    expected = probs * n
    big = expected >= 5
    obs = list(counts[big])
    exp = list(expected[big])
    rest = expected[~big & (probs > 0)].sum()
    if rest > 0:
        obs.append(counts[~big & (probs > 0)].sum())
        exp.append(rest)
    obs, exp = np.array(obs, np.float64), np.array(exp, np.float64)
    df = len(exp) - 1
    if df == 0:
        return
    stat = float(((obs - exp) ** 2 / exp).sum())
    assert stat < _chi2_limit(df), (f"{what}: chi-square {stat:.1f} > {_chi2_limit(df):.1f} (df {df}); "
                                    f"observed {obs.astype(int).tolist()}, expected {np.round(exp, 1).tolist()}")


N_SAMPLES = 3000


def _source_row(spec, which=0):
    src, lengths = sources(spec)
    return src[which], int(lengths[which])


@pytest.mark.parametrize("k", [2, 3, 6])
def test_topk_restricts_the_support(stat_spec, k):
    spec = stat_spec
    """With sampling_topk=k the first token is always one of the k most likely ones,
    drawn in proportion to their probabilities."""
    model = build(spec)
    row, length = _source_row(spec)
    probs, logits = _next_probs(model, spec, row, length)
    top = np.argsort(-logits)[:k]
    restricted = np.zeros_like(probs)
    restricted[top] = probs[top] / probs[top].sum()
    counts = _first_token_counts(model, spec, row, length, N_SAMPLES, sampling_topk=k, seed=11)
    assert set(np.flatnonzero(counts)) <= set(top.tolist()), f"tokens outside the top {k}"
    assert_distribution(counts, restricted, f"top-{k}")


def test_topk_with_temperature_and_start_tokens(stat_spec):
    spec = stat_spec
    model = build(spec)
    row, length = _source_row(spec, 2)
    prefix = (5, 9)
    temperature = 1.7
    probs, logits = _next_probs(model, spec, row, length, prefix, temperature)
    top = np.argsort(-logits)[:5]
    restricted = np.zeros_like(probs)
    restricted[top] = probs[top] / probs[top].sum()
    counts = _first_token_counts(model, spec, row, length, N_SAMPLES, prefix, sampling_topk=5,
                                 sampling_temperature=temperature, seed=5)
    assert_distribution(counts, restricted, "top-5 at temperature 1.7 after start tokens")


@pytest.mark.parametrize("size", [1, 2, 4])
def test_topp_keeps_the_nucleus(stat_spec, size):
    spec = stat_spec
    """sampling_topp: the smallest set of most likely tokens whose probability reaches
    topp (topp set half-way between the masses of `size`-1 and `size` tokens)."""
    model = build(spec)
    rows = [_source_row(spec, b) for b in range(6)]
    entropy = [-(p * np.log(p)).sum() for p, _ in (_next_probs(model, spec, r, n) for r, n in rows)]
    row, length = rows[int(np.argmax(entropy))]
    probs, _ = _next_probs(model, spec, row, length)
    order = np.argsort(-probs)
    cum = np.cumsum(probs[order])
    lower = cum[size - 2] if size > 1 else 0.0
    topp = float((lower + cum[size - 1]) / 2)
    assert cum[size - 1] - topp > 1e-3 and topp - lower > 1e-3, "nucleus boundary too close to call"
    nucleus = order[:size]
    restricted = np.zeros_like(probs)
    restricted[nucleus] = probs[nucleus] / probs[nucleus].sum()
    for opts in (dict(sampling_topk=0), dict(sampling_topk=spec.vocab + 1)):  # k >= vocab: no top-k
        counts = _first_token_counts(model, spec, row, length, N_SAMPLES, sampling_topp=topp, seed=21, **opts)
        assert set(np.flatnonzero(counts)) <= set(nucleus.tolist()), f"tokens outside the nucleus ({opts})"
        assert_distribution(counts, restricted, f"top-p {topp:.4f} ({opts})")


def test_topp_after_topk(stat_spec):
    spec = stat_spec
    """top-p applies to the renormalised top-k distribution."""
    model = build(spec)
    row, length = _source_row(spec, 3)
    probs, _ = _next_probs(model, spec, row, length)
    order = np.argsort(-probs)
    k = 6
    pk = probs[order[:k]] / probs[order[:k]].sum()
    cum = np.cumsum(pk)
    size = int(np.searchsorted(cum, 0.8)) + 1  # nucleus of topp just above cum[size-2]
    size = max(size, 2)
    topp = float((cum[size - 2] + cum[size - 1]) / 2)
    restricted = np.zeros_like(probs)
    restricted[order[:size]] = pk[:size] / pk[:size].sum()
    counts = _first_token_counts(model, spec, row, length, N_SAMPLES, sampling_topk=k, sampling_topp=topp, seed=4)
    assert_distribution(counts, restricted, f"top-{k} then top-p {topp:.4f}")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_distribution(stat_spec, temperature):
    spec = stat_spec
    """sampling_topk=0: the whole vocabulary, drawn from softmax(logits / temperature)."""
    model = build(spec)
    row, length = _source_row(spec, 4)
    probs, _ = _next_probs(model, spec, row, length, temperature=temperature)
    counts = _first_token_counts(model, spec, row, length, N_SAMPLES, sampling_topk=0,
                                 sampling_temperature=temperature, seed=8)
    assert_distribution(counts, probs, f"temperature {temperature}")


@pytest.mark.parametrize("temperature", [1e-3, 1e-6, 1e-20, 1e-38, 1e-40])
def test_very_low_temperature_is_greedy(temperature):
    """Any temperature > 0 is accepted; a tiny one makes sampling greedy (the best
    token's weight dominates), also for temperatures whose inverse overflows float32."""
    spec = SPECS[0]
    model = build(spec)
    src, lengths = sources(spec)
    greedy = model.generate(src, lengths, max_length=MAX_LEN)
    for opts in (dict(sampling_topk=0), dict(sampling_topk=4), dict(sampling_topk=0, sampling_topp=0.9)):
        out = model.generate(src, lengths, max_length=MAX_LEN, sampling_temperature=temperature, seed=3, **opts)
        assert [r.sequences for r in out] == [r.sequences for r in greedy], (temperature, opts)


def test_very_high_temperature_is_uniform():
    spec = SPECS[2]
    model = build(spec)
    row, length = _source_row(spec)
    counts = _first_token_counts(model, spec, row, length, N_SAMPLES, sampling_topk=0, sampling_temperature=1e30,
                                 seed=1)
    assert_distribution(counts, np.full(spec.vocab, 1.0 / spec.vocab), "temperature 1e30")


def test_sampling_min_length_blocks_eos(stat_spec):
    spec = stat_spec
    """Before min_length, EOS is removed before top-k: the k most likely other tokens."""
    model = build(spec)
    src, lengths = sources(spec)
    # a source and prefix where EOS is among the 3 most likely next tokens
    memory = model.encode(src, lengths)
    found = None
    for b in range(len(src)):
        for prefix in ([], [5], [9, 10], [12, 13, 14]):
            logits = model.decode(np.array([[spec.bos_id, *prefix]]), memory[b:b + 1], lengths[b:b + 1])[0, -1]
            if spec.eos_id in np.argsort(-logits)[:3]:
                found = (b, prefix, logits.astype(np.float64))
                break
        if found:
            break
    assert found, "no source puts EOS in its top 3"
    b, prefix, logits = found
    allowed = [int(t) for t in np.argsort(-logits) if t != spec.eos_id][:3]
    counts = _first_token_counts(model, spec, src[b], int(lengths[b]), 1000, prefix, sampling_topk=3, min_length=1,
                                 seed=6)
    assert counts[spec.eos_id] == 0 and set(np.flatnonzero(counts)) <= set(allowed), (allowed, counts)
    assert (counts[allowed] > 0).all()
    # whole sequences: no EOS before min_length
    out = model.generate(src, lengths, max_length=12, min_length=8, sampling_topk=0, seed=3)
    assert all(len(r.sequences[0]) >= 8 for r in out)


# ---------------------------------------------------------------------------
# generate_tokens (streaming)
# ---------------------------------------------------------------------------


def test_generate_tokens_yields_the_greedy_sequence(spec):
    model = build(spec)
    src, lengths = sources(spec)
    start = start_tokens_for(spec, len(src))
    for b in range(len(src)):
        row = src[b, :lengths[b]]
        for kw in (dict(max_length=MAX_LEN), dict(max_length=10, min_length=6), dict(max_length=1)):
            expected = model.generate(row[None, :], **kw)[0].sequences[0]
            it = model.generate_tokens(row, **kw)
            got = []
            for tok in it:
                assert type(tok) is int
                got.append(tok)
            assert got == expected, (b, kw)
            assert list(model.generate_tokens(row.tolist(), **kw)) == expected
            assert list(model.generate_tokens(row[None, :], **kw)) == expected
        prefix = start[b]
        expected = model.generate(row[None, :], max_length=MAX_LEN, start_tokens=[prefix])[0].sequences[0]
        assert expected[:len(prefix)] == prefix
        got = list(model.generate_tokens(row, max_length=MAX_LEN, start_tokens=prefix))
        assert got == expected[len(prefix):], b
        # the reference, too
        ref = rs.greedy_search(model, row[None, :], max_length=MAX_LEN, start_tokens=[prefix])[0]
        assert got == ref.hypotheses[0].sequence[len(prefix):]


def test_generate_tokens_can_be_abandoned(spec):
    model = build(spec)
    src, lengths = sources(spec, (10, 10))
    expected = [model.generate(src[b:b + 1], max_length=40, min_length=40)[0].sequences[0] for b in range(2)]
    # interleaved streams, abandoned after a few tokens
    a = model.generate_tokens(src[0], max_length=40, min_length=40)
    b = model.generate_tokens(src[1], max_length=40, min_length=40)
    got_a, got_b = [], []
    for _ in range(3):
        got_a.append(next(a))
        got_b.append(next(b))
    assert got_a == expected[0][:3] and got_b == expected[1][:3]
    del a
    gc.collect()
    got_b += list(b)
    assert got_b == expected[1]
    with pytest.raises(StopIteration):
        next(b)
    # never started, and stopped with close()
    c = model.generate_tokens(src[0], max_length=40)
    del c
    d = model.generate_tokens(src[0], max_length=40, min_length=40)
    assert next(d) == expected[0][0]
    d.close()
    with pytest.raises(StopIteration):
        next(d)
    gc.collect()
    assert model.generate(src, max_length=40, min_length=40)[1].sequences[0] == expected[1]


def test_generate_tokens_sampling_with_seed(spec):
    model = build(spec)
    src, lengths = sources(spec)
    row = src[2, :lengths[2]]
    for opts in (dict(sampling_topk=0), dict(sampling_topk=5, sampling_topp=0.8, sampling_temperature=1.5,
                                             start_tokens=[5, 6], min_length=2)):
        a = list(model.generate_tokens(row, max_length=MAX_LEN, seed=31, **opts))
        assert a == list(model.generate_tokens(row, max_length=MAX_LEN, seed=31, **opts))
        gen_opts = dict(opts)
        start = gen_opts.pop("start_tokens", None)
        res = model.generate(row[None, :], max_length=MAX_LEN, seed=31, start_tokens=None if start is None else [start],
                             **gen_opts)[0]
        assert a == res.sequences[0][len(start or []):], opts
        others = [list(model.generate_tokens(row, max_length=MAX_LEN, seed=s, **opts)) for s in (1, 2, 3, 4)]
        assert any(o != a for o in others)


def test_generate_tokens_errors():
    spec = SPECS[0]
    model = build(spec)
    src, _ = sources(spec, (10, 10))
    with pytest.raises(ValueError, match="one source"):
        model.generate_tokens(src)
    with pytest.raises(ValueError):
        model.generate_tokens(src[None])
    with pytest.raises(ValueError, match="src_ids"):
        model.generate_tokens([0, 1, 999])
    with pytest.raises(TypeError):
        model.generate_tokens(src[0].astype(np.float32))
    with pytest.raises(ValueError, match="max_length"):
        model.generate_tokens(src[0], max_length=0)
    with pytest.raises(ValueError, match="min_length"):
        model.generate_tokens(src[0], max_length=3, min_length=4)
    with pytest.raises(ValueError, match="sampling_topp"):
        model.generate_tokens(src[0], max_length=3, sampling_topp=0.0)
    with pytest.raises(ValueError, match="sampling_temperature"):
        model.generate_tokens(src[0], max_length=3, sampling_temperature=0.0)
    with pytest.raises(ValueError, match="max_length"):
        model.generate_tokens(src[0], max_length=47, start_tokens=[5, 6])
    with pytest.raises(ValueError, match="start_tokens"):
        model.generate_tokens(src[0], max_length=3, start_tokens=[5, spec.vocab])
    with pytest.raises(TypeError):
        model.generate_tokens(src[0], max_length=3.0)
    with pytest.raises(TypeError):
        model.generate_tokens(src[0], max_length=3, beam_size=2)


# ---------------------------------------------------------------------------
# Option errors
# ---------------------------------------------------------------------------

ERRORS = [
    (dict(beam_size=0), ValueError, "beam_size"),
    (dict(beam_size=-2), ValueError, "beam_size"),
    (dict(beam_size=2, num_hypotheses=3), ValueError, "num_hypotheses"),
    (dict(num_hypotheses=2), ValueError, "num_hypotheses"),
    (dict(num_hypotheses=0), ValueError, "num_hypotheses"),
    (dict(sampling_topp=0.0), ValueError, "sampling_topp"),
    (dict(sampling_topp=-0.1), ValueError, "sampling_topp"),
    (dict(sampling_topp=1.5), ValueError, "sampling_topp"),
    (dict(sampling_topp=float("nan")), ValueError, "sampling_topp"),
    (dict(sampling_topp=float("inf")), ValueError, "sampling_topp"),
    (dict(sampling_temperature=0.0), ValueError, "sampling_temperature"),
    (dict(sampling_temperature=-1.0), ValueError, "sampling_temperature"),
    (dict(sampling_temperature=float("nan")), ValueError, "sampling_temperature"),
    (dict(sampling_temperature=float("inf")), ValueError, "sampling_temperature"),
    (dict(max_length=0), ValueError, "max_length"),
    (dict(max_length=-1), ValueError, "max_length"),
    (dict(max_length=4, min_length=5), ValueError, "min_length"),
    (dict(min_length=-1), ValueError, "min_length"),
    (dict(sampling_topk=-1), ValueError, "sampling_topk"),
    (dict(beam_size=2, sampling_topk=0), ValueError, "sampling"),
    (dict(beam_size=3, sampling_topk=5), ValueError, "sampling"),
    (dict(length_penalty=float("nan")), ValueError, "length_penalty"),
    (dict(length_penalty=float("inf")), ValueError, "length_penalty"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(max_length=49), ValueError, "max_length"),  # the model's max_length is 48
    (dict(max_length=46, start_tokens=[[], [5, 6, 7]]), ValueError, "max_length"),
    (dict(start_tokens=[[5]]), ValueError, "start_tokens"),
    (dict(start_tokens=[[5], [6], [7]]), ValueError, "start_tokens"),
    (dict(start_tokens=[[5], [-1]]), ValueError, "start_tokens"),
    (dict(start_tokens=[[5], [32]]), ValueError, "start_tokens"),  # vocabulary 32
    (dict(start_tokens=[[5], [1.0]]), TypeError, "start_tokens"),
    (dict(start_tokens=[[5], [True]]), TypeError, "start_tokens"),
    (dict(start_tokens=[[5], "ab"]), TypeError, "start_tokens"),
    (dict(start_tokens="ab"), TypeError, "start_tokens"),
    (dict(start_tokens=5), TypeError, "start_tokens"),
    (dict(max_length=5.0), TypeError, "max_length"),
    (dict(max_length="5"), TypeError, "max_length"),
    (dict(min_length=1.5), TypeError, "min_length"),
    (dict(beam_size=2.0), TypeError, "beam_size"),
    (dict(beam_size=True), TypeError, "beam_size"),
    (dict(num_hypotheses=np.float64(1)), TypeError, "num_hypotheses"),
    (dict(sampling_topk=1.0), TypeError, "sampling_topk"),
    (dict(sampling_topp="0.5"), TypeError, "sampling_topp"),
    (dict(sampling_temperature=None), TypeError, "sampling_temperature"),
    (dict(length_penalty="1"), TypeError, "length_penalty"),
    (dict(length_penalty=True), TypeError, "length_penalty"),
    (dict(seed=1.0), TypeError, "seed"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(return_scores=1), TypeError, "return_scores"),
    (dict(return_scores=None), TypeError, "return_scores"),
]


@pytest.mark.parametrize("kwargs,exc,match", ERRORS, ids=[f"{i}-{list(e[0])}" for i, e in enumerate(ERRORS)])
def test_bad_options(kwargs, exc, match):
    spec = SPECS[0]
    model = build(spec)
    src, lengths = sources(spec, (10, 4))
    kw = dict(max_length=8)
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        model.generate(src, lengths, **kw)


def test_boundary_options_are_accepted():
    """Options at the edge of their range (and numpy scalars) work, and mean what
    the plain values mean."""
    spec = SPECS[0]
    model = build(spec)
    src, lengths = sources(spec, (10, 4))
    V = model.config.tgt_vocab_size

    def seqs(**kw):
        out = [r.sequences for r in model.generate(src, lengths, **kw)]
        assert len(out) == 2 and all(0 <= t < V for hyps in out for s in hyps for t in s)
        return out

    longest = seqs(max_length=48)   # every position the model has
    assert all(len(h[0]) <= 48 for h in longest)
    prefixed = seqs(max_length=45, start_tokens=[[], [5, 6, 7]])
    assert prefixed[0][0] == longest[0][0][:45]   # no prefix: greedy, cut at 45
    assert prefixed[1][0][:3] == [5, 6, 7]
    exact = seqs(max_length=3, min_length=3, sampling_topk=0, sampling_topp=1.0, seed=0)
    assert all(len(h[0]) == 3 for h in exact)   # min_length == max_length: exactly 3, no EOS
    # An almost-zero temperature and a tiny nucleus are greedy search.
    greedy = seqs(max_length=3)
    assert seqs(max_length=3, sampling_topk=100, sampling_temperature=1e-3, seed=np.uint64(5)) == greedy
    assert seqs(max_length=3, sampling_topk=0, sampling_topp=1e-6, seed=1) == greedy
    beams = seqs(max_length=3, beam_size=2, sampling_topk=1, length_penalty=np.float32(0.5))
    assert beams == seqs(max_length=3, beam_size=2, length_penalty=0.5)
    two = seqs(max_length=np.int64(3), beam_size=np.int32(2), num_hypotheses=np.int16(2))
    assert two == seqs(max_length=3, beam_size=2, num_hypotheses=2) and all(1 <= len(h) <= 2 for h in two)
    as_array = seqs(max_length=3, start_tokens=np.array([[5, 6], [7, 8]]))
    assert [h[0][:2] for h in as_array] == [[5, 6], [7, 8]]
    mixed = seqs(max_length=3, start_tokens=([np.int64(5)], (6, 7)))
    assert mixed == seqs(max_length=3, start_tokens=[[5], [6, 7]])


BAD_SOURCES = [
    ("float ids", dict(src_ids=np.zeros((2, 3), np.float32)), TypeError),
    ("not an array", dict(src_ids="abc"), TypeError),
    ("1-D", dict(src_ids=np.zeros(3, np.int64)), ValueError),
    ("3-D", dict(src_ids=np.zeros((1, 2, 3), np.int64)), ValueError),
    ("ragged", dict(src_ids=[[3, 4], [5]]), ValueError),
    ("id too large", dict(src_ids=np.array([[3, 35]])), ValueError),
    ("negative id", dict(src_ids=np.array([[3, -1]])), ValueError),
    ("too long", dict(src_ids=np.zeros((1, 49), np.int64)), ValueError),
    ("lengths shape", dict(src_ids=np.zeros((2, 3), np.int64), src_lengths=[3]), ValueError),
    ("lengths too large", dict(src_ids=np.zeros((2, 3), np.int64), src_lengths=[3, 4]), ValueError),
    ("negative length", dict(src_ids=np.zeros((2, 3), np.int64), src_lengths=[3, -1]), ValueError),
    ("float lengths", dict(src_ids=np.zeros((2, 3), np.int64), src_lengths=[3.0, 1.0]), TypeError),
]


@pytest.mark.parametrize("what,args,exc", BAD_SOURCES, ids=[b[0] for b in BAD_SOURCES])
def test_bad_sources_as_for_encode(what, args, exc):
    model = build(SPECS[0])
    with pytest.raises(exc):
        model.encode(**args)
    with pytest.raises(exc):
        model.generate(**args, max_length=4)
    with pytest.raises(exc):
        model.generate(**args, max_length=4, beam_size=2)


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------


def test_identical_for_1_and_2_threads(isa, restore_threads):
    spec = SPEC_BY_NAME["pre_ln_wide"]
    model = build(spec)
    src, lengths = sources(spec, (10, 3, 7, 1, 10, 5, 8, 9, 2, 10, 6, 4))
    start = start_tokens_for(spec, len(src))
    runs = [dict(start_tokens=start, min_length=2), dict(beam_size=4, num_hypotheses=4, length_penalty=0.6),
            dict(sampling_topk=6, sampling_topp=0.8, seed=6)]
    pt.set_num_threads(1)
    one = [model.generate(src, lengths, max_length=MAX_LEN, **kw) for kw in runs]
    stream1 = list(model.generate_tokens(src[0], max_length=MAX_LEN, sampling_topk=0, seed=9))
    pt.set_num_threads(2)
    two = [model.generate(src, lengths, max_length=MAX_LEN, **kw) for kw in runs]
    stream2 = list(model.generate_tokens(src[0], max_length=MAX_LEN, sampling_topk=0, seed=9))
    for kw, a, b in zip(runs, one, two):
        assert same_results(a, b), f"1 vs 2 threads differ for {kw}"
    assert stream1 == stream2


def test_concurrent_generate_from_python_threads():
    """One model, several Python threads generating at once: each result equals the
    serial one exactly."""
    spec = SPECS[3]
    model = build(spec)
    src, lengths = sources(spec)
    jobs = [dict(), dict(beam_size=4, num_hypotheses=2), dict(sampling_topk=0, seed=1),
            dict(beam_size=2, length_penalty=0.6), dict(sampling_topk=3, seed=2), dict(min_length=5)]

    def run(kw):
        if kw.get("stream"):
            return list(model.generate_tokens(src[0], max_length=MAX_LEN))
        return model.generate(src, lengths, max_length=MAX_LEN, **kw)

    jobs.append(dict(stream=True))
    serial = [run(kw) for kw in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            for kw, a, b in zip(jobs, serial, pool.map(run, jobs)):
                if kw.get("stream"):
                    assert a == b
                else:
                    assert same_results(a, b), kw


def test_generation_defaults_live_in_one_place():
    """generate and generate_tokens take their defaults from model.GENERATION_DEFAULTS, and the
    C++ options have none (every one must be given)."""
    import inspect

    from pytransformer import _core
    from pytransformer.model import GENERATION_DEFAULTS

    for fn in (pt.Transformer.generate, pt.Transformer.generate_tokens):
        params = inspect.signature(fn).parameters
        shared = [k for k in GENERATION_DEFAULTS if k in params]
        assert len(shared) >= 5, fn
        assert {k: params[k].default for k in shared} == {k: GENERATION_DEFAULTS[k] for k in shared}, fn
    with pytest.raises(TypeError):
        _core.GenerationOptions(max_length=5)
    o = _core.GenerationOptions(max_length=5, min_length=1, beam_size=2, length_penalty=0.5, num_hypotheses=2,
                                sampling_topk=1, sampling_topp=1.0, sampling_temperature=1.0, seed=2**64 - 1,
                                return_scores=False, suppress_tokens=[3, 4], forced_eos=True, forced_bos=None,
                                early_stopping=True)
    assert (o.max_length, o.min_length, o.beam_size, o.length_penalty, o.num_hypotheses, o.seed) == (
        5, 1, 2, 0.5, 2, 2**64 - 1)
    assert (o.return_scores, o.suppress_tokens, o.forced_eos, o.forced_bos, o.early_stopping) == (
        False, [3, 4], True, None, True)

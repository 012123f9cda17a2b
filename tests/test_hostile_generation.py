"""Generation and the C++ boundary under hostile options (issue 11, points 1-3):
no step may pick an invalid id, beam search returns only real hypotheses, absurd
sizes are refused before anything is allocated, and Python ints too large for C++
raise errors naming the argument.

Results that are produced are checked against the teacher-forced decoder (an
independent path: full recomputation through ``decode``), not against themselves.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core
from model_utils import random_weights, small_config


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(11)
    c = small_config(tgt_vocab_size=9, max_length=40)
    return pt.Transformer(c, random_weights(c, rng))


@pytest.fixture(scope="module")
def src():
    return np.random.default_rng(3).integers(3, 37, size=(2, 7))


def _log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _teacher_forced_log_prob(model, src_row, seq, finished_with_eos):
    """Sum of log-softmax of the generated tokens (EOS included when it ended the
    sequence), from one full decode of bos + seq."""
    c = model.config
    memory = model.encode(src_row[None, :])
    tgt = np.array([[c.bos_id] + list(seq)])
    lp = _log_softmax(model.decode(tgt, memory)[0])
    total = sum(lp[t, tok] for t, tok in enumerate(seq))
    if finished_with_eos:
        total += lp[len(seq), c.eos_id]
    return total


# -- 1. no step without a token ----------------------------------------------

ALL_BUT = {
    "everything suppressed": lambda c: dict(suppress_tokens=list(range(c.tgt_vocab_size)), max_length=5),
    "all but EOS suppressed, min_length 3": lambda c: dict(
        suppress_tokens=[t for t in range(c.tgt_vocab_size) if t != c.eos_id], min_length=3, max_length=5),
    "everything but EOS suppressed, EOS suppressed too, min_length 1": lambda c: dict(
        suppress_tokens=list(range(c.tgt_vocab_size)), min_length=1, max_length=4),
}


@pytest.mark.parametrize("case", sorted(ALL_BUT))
@pytest.mark.parametrize("mode", ["greedy", "sampling", "beam"])
def test_nothing_generable_is_a_value_error(model, src, case, mode):
    opts = ALL_BUT[case](model.config)
    if mode == "sampling":
        opts.update(sampling_topk=0, seed=1)
    if mode == "beam":
        opts.update(beam_size=3)
    with pytest.raises(ValueError, match="nothing can be generated"):
        model.generate(src, **opts)


@pytest.mark.parametrize("case", sorted(ALL_BUT))
def test_generate_tokens_refuses_before_yielding(model, src, case):
    with pytest.raises(ValueError, match="nothing can be generated"):
        model.generate_tokens(src[0], **ALL_BUT[case](model.config))


def test_core_refuses_nothing_generable_directly(model, src):
    """The C++ layer refuses on its own, whatever Python passes it."""
    c = model.config
    opts = dict(max_length=5, min_length=0, beam_size=1, length_penalty=1.0, num_hypotheses=1, sampling_topk=1,
                sampling_topp=1.0, sampling_temperature=1.0, seed=0, return_scores=True,
                suppress_tokens=list(range(c.tgt_vocab_size)), forced_eos=False, forced_bos=None,
                early_stopping=False)
    ids = np.ascontiguousarray(src, dtype=np.int32)
    for beam in (1, 3):
        with pytest.raises(ValueError, match="nothing can be generated"):
            model._model.generate(ids, None, None, _core.GenerationOptions(**dict(opts, beam_size=beam)))
    with pytest.raises(ValueError, match="nothing can be generated"):
        model._model.stream(ids[:1], None, _core.GenerationOptions(**opts))
    only_eos = dict(opts, suppress_tokens=[t for t in range(c.tgt_vocab_size) if t != c.eos_id], min_length=2)
    with pytest.raises(ValueError, match="min_length"):
        model._model.generate(ids, None, None, _core.GenerationOptions(**only_eos))


def test_forced_eos_alone_is_fine(model, src):
    """max_length 1 with forced_eos: the only step is a forced EOS, so suppressing
    everything still leaves something to generate."""
    c = model.config
    out = model.generate(src, max_length=1, forced_eos=True, suppress_tokens=list(range(c.tgt_vocab_size)))
    assert [r.sequences for r in out] == [[[]], [[]]]
    assert [r.log_probs for r in out] == [[0.0], [0.0]]


@pytest.mark.parametrize("key", ["bos_id", "eos_id", "pad_id"])
def test_core_refuses_special_ids_outside_the_vocabulary(key):
    c = small_config(tgt_vocab_size=9)
    weights = random_weights(c, np.random.default_rng(0))
    d = c._core_dict()
    for bad in (9, 10**6):
        with pytest.raises(ValueError, match=key):
            _core.TransformerModel(dict(d, **{key: bad}), weights)
    with pytest.raises((ValueError, OverflowError), match=key):
        _core.TransformerModel(dict(d, **{key: 2**70}), weights)


# -- 2. beam search returns real hypotheses only -------------------------------

@pytest.mark.parametrize("keep", [1, 2, 3])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -50.0, 50.0, 1e30, -1e30])
def test_beam_returns_only_real_hypotheses(model, src, keep, length_penalty):
    """With only `keep` non-suppressed tokens (EOS among them) and 4 beams there are
    fewer continuations than candidates: every returned hypothesis is a finished one
    with a finite score, no EOS and no suppressed token inside, and its log_prob is
    what the teacher-forced decoder gives."""
    c = model.config
    allowed = [c.eos_id] + [t for t in range(c.tgt_vocab_size) if t != c.eos_id][: keep - 1]
    suppress = [t for t in range(c.tgt_vocab_size) if t not in allowed]
    out = model.generate(src, beam_size=4, num_hypotheses=4, max_length=6, suppress_tokens=suppress,
                         length_penalty=length_penalty)
    for b, r in enumerate(out):
        assert 1 <= len(r.sequences) <= 4
        assert len(r.scores) == len(r.log_probs) == len(r.sequences)
        assert len({tuple(s) for s in r.sequences}) == len(r.sequences), "duplicate hypotheses"
        for seq, score, lp in zip(r.sequences, r.scores, r.log_probs):
            assert np.isfinite(lp) and lp > -1e6, (seq, lp)
            assert not np.isnan(score)
            assert c.eos_id not in seq and not set(seq) & set(suppress), seq
            ended = len(seq) < 6
            ref = _teacher_forced_log_prob(model, src[b], seq, finished_with_eos=ended)
            assert abs(lp - ref) < 1e-4, (seq, lp, ref)
    if keep == 1:  # only EOS: the one hypothesis is the empty sequence
        assert all(r.sequences == [[]] for r in out)


def test_beam_hypotheses_sorted_by_score(model, src):
    out = model.generate(src, beam_size=5, num_hypotheses=5, max_length=8)
    for r in out:
        assert r.scores == sorted(r.scores, reverse=True)
        assert len(r.sequences) == 5


# -- 3. bounded sizes -----------------------------------------------------------

@pytest.mark.parametrize("beam_size", [10**6, 2**31 - 1])
def test_absurd_beam_size_is_refused_quickly(model, src, beam_size):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="beam_size") as e:
        model.generate(src, beam_size=beam_size, num_hypotheses=1, max_length=30)
    assert "memory" in str(e.value)
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("name,value", [("beam_size", 2**62), ("beam_size", 2**70), ("max_length", 2**70),
                                        ("max_length", 10**9), ("min_length", 2**70),
                                        ("num_hypotheses", 2**70)])
def test_huge_ints_name_the_option(model, src, name, value):
    kw = {name: value}
    if name == "num_hypotheses":
        kw["beam_size"] = 4
    if name == "min_length":
        kw["max_length"] = 10
    with pytest.raises(ValueError, match=name):
        model.generate(src, **kw)


def test_core_huge_options_name_the_option(model, src):
    ids = np.ascontiguousarray(src, dtype=np.int32)
    base = dict(max_length=5, min_length=0, beam_size=1, length_penalty=1.0, num_hypotheses=1, sampling_topk=1,
                sampling_topp=1.0, sampling_temperature=1.0, seed=0, return_scores=True, suppress_tokens=[],
                forced_eos=False, forced_bos=None, early_stopping=False)
    for key, value in [("beam_size", 2**62), ("beam_size", 2**70), ("max_length", 2**70), ("seed", 2**70),
                       ("seed", -1), ("num_hypotheses", -1), ("length_penalty", 10**400), ("length_penalty", 1e39),
                       ("suppress_tokens", [2**70]), ("forced_bos", 2**40)]:
        with pytest.raises(ValueError, match=f"^{key}"):   # the message starts with the option's name
            _core.GenerationOptions(**dict(base, **{key: value}))
    for key, value in [("max_length", 5.0), ("return_scores", 1), ("suppress_tokens", "abc"),
                       ("suppress_tokens", [1.0]), ("length_penalty", "1"), ("early_stopping", None)]:
        with pytest.raises(TypeError, match=f"^{key}"):
            _core.GenerationOptions(**dict(base, **{key: value}))
    # Ids within the C++ types but outside this model's vocabulary: refused by the model.
    for key, value in [("suppress_tokens", [model.config.tgt_vocab_size]), ("forced_bos", 10**6)]:
        with pytest.raises(ValueError, match=key):
            model._model.generate(ids, None, None, _core.GenerationOptions(**dict(base, **{key: value})))
    # A beam size that fits the C++ types but not the machine.
    with pytest.raises(ValueError, match="memory"):
        model._model.generate(ids, None, None,
                              _core.GenerationOptions(**dict(base, beam_size=2**30, num_hypotheses=1, max_length=30)))


@pytest.mark.parametrize("call,match", [
    (lambda: pt.ops.positional_encoding(2**63, 1), "length"),
    (lambda: pt.ops.positional_encoding(1, 2**70), "d_model"),
    (lambda: pt.ops.positional_encoding(10**9, 10**6), "memory"),
    (lambda: pt.ops.layer_norm(np.ones((2, 3), np.float32), None, None, eps=10**400), "eps"),
    (lambda: pt.ops.multi_head_attention(np.ones((1, 2, 4), np.float32), np.ones((1, 2, 4), np.float32),
                                         np.ones((1, 2, 4), np.float32), np.ones((12, 4), np.float32), None,
                                         np.ones((4, 4), np.float32), None, num_heads=2**70), "num_heads"),
])
def test_ops_huge_ints_name_the_argument(call, match):
    with pytest.raises((ValueError, OverflowError), match=match) as e:
        call()
    assert "Unable to cast" not in str(e.value)


def test_config_huge_values_name_the_field():
    for field, value in [("nhead", 2**70), ("max_length", 2**70), ("layer_norm_eps", 10**400)]:
        with pytest.raises((ValueError, OverflowError), match=field):
            small_config(**{field: value})


def test_core_config_huge_values_name_the_key():
    c = small_config()
    weights = random_weights(c, np.random.default_rng(0))
    d = c._core_dict()
    for key, value in [("nhead", 2**70), ("max_length", 2**70), ("d_model", 2**40), ("layer_norm_eps", 10**400),
                       ("num_encoder_layers", -1)]:
        with pytest.raises((ValueError, OverflowError, TypeError), match=key) as e:
            _core.TransformerModel(dict(d, **{key: value}), weights)
        assert "Unable to cast" not in str(e.value)


def test_default_max_length_fits_the_model(model, src):
    """No max_length: 256, or what the model's positions leave after the start tokens
    (this model has 40), instead of an error."""
    c = model.config
    assert model.generate(src, min_length=40, beam_size=2)[0].sequences[0].__len__() == 40
    a = model.generate(src, start_tokens=[[3, 4, 5], [6]], sampling_topk=0, seed=5)
    b = model.generate(src, start_tokens=[[3, 4, 5], [6]], sampling_topk=0, seed=5, max_length=c.max_length - 3)
    assert a == b
    assert len(list(model.generate_tokens(src[0], start_tokens=[3, 4], min_length=38))) == 38


def test_constructors_refuse_configs_beyond_memory():
    """Transformer(config, weights) and EncoderModel check the config's tables against
    the machine's memory before walking the weights (a 2**31-layer config would
    otherwise enumerate billions of names first)."""
    huge = small_config(max_length=2**31 - 1, d_model=2**20, nhead=1)
    for cls in (pt.Transformer, pt.EncoderModel):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="max_length") as e:
            cls(huge, {})
        assert "memory" in str(e.value) and time.perf_counter() - t0 < 1.0
    layers = small_config(num_encoder_layers=2**31 - 1)
    with pytest.raises(ValueError, match="num_encoder_layers"):
        pt.Transformer(layers, {})


def test_decode_accepts_big_endian_and_strided_memory(model, src):
    """The README's input rule: any byte order and layout is accepted (copied)."""
    tgt = np.array([[1, 4, 5], [1, 6, 7]])
    memory = model.encode(src)
    ref = model.decode(tgt, memory)
    be = memory.astype(">f4")
    assert np.array_equal(model.decode(tgt, be), ref)
    wide = np.zeros(memory.shape[:2] + (2 * memory.shape[2],), np.float32)
    wide[..., ::2] = memory
    assert np.array_equal(model.decode(tgt, wide[..., ::2]), ref)
    with pytest.raises(TypeError, match="float32"):
        model.decode(tgt, memory.astype(np.float64))

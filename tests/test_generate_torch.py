"""Generation against PyTorch: a textbook greedy loop and a beam search written with
torch ops (the semantics of Hugging Face transformers' ``_beam_search`` with
``early_stopping=False``, batched the same way: running / finished beams per source,
2K candidates, only the top K can finish, -1e9 for impossible choices, the early-stop
heuristic), both by full recomputation over the textbook ``TorchTransformer`` of
torch_models.py, against ``Transformer.generate`` on the same weights.

The torch models get the "lively" treatment of test_generate.py (a permutation of
the target embeddings added to the output projection, random output biases, an EOS
bias) so that outputs depend on the source and hypotheses end at different lengths.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import pytransformer as pt

torch = pytest.importorskip("torch")

from torch_models import TorchTransformer  # noqa: E402

MAX_LEN = 16
LOGP_TOL = 1e-3   # sums of ~16 log-probabilities, each within ~1e-4 of torch's


@dataclasses.dataclass(frozen=True)
class TorchSpec:
    name: str
    seed: int
    eos_bias: float
    overrides: tuple = ()

    def config(self):
        kw = dict(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                  src_vocab_size=40, tgt_vocab_size=36, max_length=48, pad_id=0, bos_id=1, eos_id=2)
        kw.update(dict(self.overrides))
        return pt.TransformerConfig(**kw)


TORCH_SPECS = [
    TorchSpec("post_ln_relu_2+1", seed=7, eos_bias=4.0, overrides=(("num_decoder_layers", 1),)),
    TorchSpec("pre_ln_gelu", seed=1, eos_bias=6.0, overrides=(("norm_first", True), ("activation", "gelu"))),
    TorchSpec("post_ln_d48_1+2_eos9", seed=2, eos_bias=0.0,
              overrides=(("d_model", 48), ("nhead", 2), ("num_encoder_layers", 1), ("bos_id", 5), ("eos_id", 9))),
]


def make_models(spec):
    """(TorchTransformer, pt.Transformer) with the same lively weights."""
    config = spec.config()
    tm = TorchTransformer(config, seed=spec.seed)
    g = torch.Generator().manual_seed(spec.seed + 100)
    V = config.tgt_vocab_size
    with torch.no_grad():
        emb = tm.tgt_embed.weight
        emb = emb / emb.norm(dim=1, keepdim=True)
        perm = torch.randperm(V, generator=g)
        tm.generator.weight.copy_(3.0 * (tm.generator.weight + emb[perm]))
        bias = torch.randn(V, generator=g)
        bias[config.eos_id] += spec.eos_bias
        tm.generator.bias.copy_(bias)
    return tm, pt.Transformer(config, tm.pt_weights())


def sources(config, lengths=(9, 4, 7, 1, 9, 6), S=9):
    rng = np.random.default_rng(77)
    lengths = np.asarray(lengths, dtype=np.int64)
    ids = rng.integers(3, config.src_vocab_size, size=(len(lengths), S))
    ids[np.arange(S)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def next_log_probs(tm, tgt, memory, lengths):
    """torch log-softmax of the last position's logits, targets [R, T] (torch int64)."""
    logits = torch.from_numpy(tm.decode(tgt.numpy(), memory, lengths))[:, -1, :]
    return torch.log_softmax(logits, dim=-1)


# ---------------------------------------------------------------------------
# Textbook greedy loop
# ---------------------------------------------------------------------------


def torch_greedy(tm, src, lengths, max_length, min_length=0):
    c = tm.config
    memory = tm.encode(src, lengths)
    B = src.shape[0]
    ys = torch.full((B, 1), c.bos_id, dtype=torch.int64)
    done = torch.zeros(B, dtype=torch.bool)
    log_probs = torch.zeros(B, dtype=torch.float64)
    outputs = [[] for _ in range(B)]
    for step in range(max_length):
        logp = next_log_probs(tm, ys, memory, lengths)
        if step < min_length:
            logp[:, c.eos_id] = -float("inf")
        nxt = logp.argmax(dim=-1)
        log_probs += torch.where(done, 0.0, logp.gather(1, nxt[:, None])[:, 0].double())
        for b in range(B):
            if not done[b] and nxt[b] != c.eos_id:
                outputs[b].append(int(nxt[b]))
        done |= nxt == c.eos_id
        if bool(done.all()):
            break
        ys = torch.cat([ys, torch.where(done, c.pad_id, nxt)[:, None]], dim=1)
    return outputs, log_probs.tolist()


# ---------------------------------------------------------------------------
# Beam search with Hugging Face's semantics (batched, torch ops)
# ---------------------------------------------------------------------------


def torch_beam_search(tm, src, lengths, num_beams, max_length, length_penalty=1.0, min_length=0,
                      start_tokens=None):
    """Hugging Face's _beam_search (early_stopping=False) over TorchTransformer.decode;
    the prompt is [bos] + start tokens (one length for all sources). Returns per source
    the num_beams finished (sequence without BOS/EOS, score, log_prob), best first."""
    c = tm.config
    B, K = src.shape[0], num_beams
    memory = np.repeat(tm.encode(src, lengths), K, axis=0)
    mem_lengths = np.repeat(lengths, K)
    prompt = torch.tensor([[c.bos_id] + list(start_tokens or [])] * B, dtype=torch.int64)
    prompt_len = prompt.shape[1]
    total = prompt_len + max_length
    beams_to_keep = 2 * K
    top_num_beam_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(beams_to_keep - K, dtype=torch.bool)])

    running = torch.full((B, K, total), -1, dtype=torch.int64)
    running[:, :, :prompt_len] = prompt[:, None, :]
    sequences = running.clone()
    running_scores = torch.zeros(B, K)
    running_scores[:, 1:] = -1e9
    beam_scores = torch.full((B, K), -1e9)
    beam_logp = torch.zeros(B, K)
    is_sent_finished = torch.zeros(B, K, dtype=torch.bool)
    unsatisfied = torch.ones(B, 1, dtype=torch.bool)
    cur_len = prompt_len

    def gather(t, idx):
        while idx.dim() < t.dim():
            idx = idx.unsqueeze(-1)
        return torch.take_along_dim(t, idx, dim=1)

    while True:
        flat = running[:, :, :cur_len].reshape(B * K, cur_len)
        log_probs = next_log_probs(tm, flat, memory, mem_lengths)
        if cur_len - prompt_len < min_length:
            log_probs[:, c.eos_id] = -float("inf")
        V = log_probs.shape[-1]
        log_probs = log_probs.reshape(B, K, V) + running_scores[:, :, None]
        log_probs = log_probs.reshape(B, K * V)

        # top 2K continuations over all beams
        topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)
        topk_beams = topk_indices // V
        topk_ids = topk_indices % V
        topk_running = gather(running, topk_beams).clone()
        topk_running[:, :, cur_len] = topk_ids
        hits = (topk_ids == c.eos_id) | (cur_len + 1 >= total)

        # running beams for the next step
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
        next_idx = torch.topk(topk_running_log_probs, k=K)[1]
        next_running = gather(topk_running, next_idx)
        next_running_scores = gather(topk_running_log_probs, next_idx)

        # finished beams
        just_finished = hits & top_num_beam_mask[None, :]
        fin = topk_log_probs / ((cur_len + 1 - prompt_len) ** length_penalty)
        fin = fin + (~unsatisfied).to(torch.float32) * -1.0e9
        fin = fin + (~just_finished) * -1.0e9
        merged_seq = torch.cat([sequences, topk_running], dim=1)
        merged_scores = torch.cat([beam_scores, fin], dim=1)
        merged_logp = torch.cat([beam_logp, topk_log_probs], dim=1)
        merged_finished = torch.cat([is_sent_finished, just_finished], dim=1)
        keep = torch.topk(merged_scores, k=K)[1]
        sequences = gather(merged_seq, keep)
        beam_scores = gather(merged_scores, keep)
        beam_logp = gather(merged_logp, keep)
        is_sent_finished = gather(merged_finished, keep)

        running, running_scores = next_running, next_running_scores
        cur_len += 1
        best_possible = running_scores[:, :1] / ((cur_len - prompt_len) ** length_penalty)
        worst = torch.where(is_sent_finished, beam_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        unsatisfied = unsatisfied & (best_possible > worst).any(dim=-1, keepdim=True)
        if not bool(unsatisfied.any()) or bool(hits.all()):
            break

    out = []
    for b in range(B):
        hyps = []
        for k in range(K):
            gen = sequences[b, k, prompt_len:].tolist()
            gen = gen[:gen.index(-1)] if -1 in gen else gen
            if gen and gen[-1] == c.eos_id:
                gen = gen[:-1]
            hyps.append((list(start_tokens or []) + gen, float(beam_scores[b, k]), float(beam_logp[b, k])))
        out.append(hyps)
    return out


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def one_thread(restore_threads):
    """One thread on both sides: tiny models, and no OpenMP / intra-op waits on a busy machine."""
    torch_threads = torch.get_num_threads()
    pt.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)


_MODELS = {}


@pytest.fixture(params=TORCH_SPECS, ids=lambda s: s.name)
def models(request, one_thread):
    spec = request.param
    if spec not in _MODELS:
        _MODELS[spec] = make_models(spec)
    tm, model = _MODELS[spec]
    src, lengths = sources(model.config)
    greedy, _ = torch_greedy(tm, src, lengths, MAX_LEN)
    # the models must be worth searching: outputs differ and end at different lengths
    assert len({tuple(s) for s in greedy}) >= 4, greedy
    assert len({len(s) for s in greedy}) >= 3 and min(len(s) for s in greedy) < MAX_LEN, greedy
    return tm, model


@pytest.mark.parametrize("min_length", [0, 4])
def test_greedy_matches_torch(models, min_length):
    tm, model = models
    src, lengths = sources(model.config)
    expected, expected_lp = torch_greedy(tm, src, lengths, MAX_LEN, min_length)
    out = model.generate(src, lengths, max_length=MAX_LEN, min_length=min_length)
    assert [r.sequences[0] for r in out] == expected
    np.testing.assert_allclose([r.log_probs[0] for r in out], expected_lp, rtol=0, atol=LOGP_TOL)
    # streaming, one source at a time
    for b in range(len(src)):
        assert list(model.generate_tokens(src[b, :lengths[b]], max_length=MAX_LEN, min_length=min_length)) == \
            expected[b]


@pytest.mark.parametrize("opts", [dict(), dict(length_penalty=0.6), dict(length_penalty=2.0, min_length=3),
                                  dict(length_penalty=0.0), dict(start_tokens=[7, 3])],
                         ids=["lp1", "lp0.6", "lp2_min3", "lp0", "start"])
def test_beam_search_matches_torch(models, opts):
    tm, model = models
    src, lengths = sources(model.config)
    K = 4
    kw = dict(opts)
    start = kw.pop("start_tokens", None)
    expected = torch_beam_search(tm, src, lengths, K, MAX_LEN, start_tokens=start, **kw)
    out = model.generate(src, lengths, max_length=MAX_LEN, beam_size=K, num_hypotheses=K,
                         start_tokens=None if start is None else [start] * len(src), **kw)
    for b, (res, exp) in enumerate(zip(out, expected)):
        assert res.sequences == [e[0] for e in exp], (
            f"source {b}: got {res.sequences} {res.scores}, torch {[e[0] for e in exp]} {[e[1] for e in exp]}")
        np.testing.assert_allclose(res.scores, [e[1] for e in exp], rtol=0, atol=LOGP_TOL, err_msg=f"source {b}")
        np.testing.assert_allclose(res.log_probs, [e[2] for e in exp], rtol=0, atol=LOGP_TOL, err_msg=f"source {b}")

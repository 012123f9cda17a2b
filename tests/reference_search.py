"""Plain numpy reference searches over ``Transformer.decode`` (full recomputation:
every step decodes the whole target prefix again, no cache), written from the
documented semantics of ``Transformer.generate``:

* targets start with ``config.bos_id``; the ``start_tokens`` (if any) are forced
  right after it and are part of the returned sequence but not of the generated
  length;
* generation stops at ``config.eos_id`` (not returned) or after ``max_length``
  generated tokens;
* ``min_length``: while fewer than ``min_length`` tokens were generated, the
  log-probability of ``eos_id`` is set to -inf (after log-softmax);
* ``log_prob`` = sum of the generated tokens' log-softmax (temperature 1), EOS
  included; ``score = log_prob / generated_length ** length_penalty``.

Beam search follows Hugging Face transformers' ``_beam_search`` with
``early_stopping=False`` (transformers/generation/utils.py: ``_get_top_k_continuations``,
``_get_running_beams_for_next_iteration``, ``_update_finished_beams``,
``_check_early_stop_heuristic``), one source at a time: 2K candidates per step (the
best ``running_score + log_prob`` over all K beams and all tokens), only the top K
of them can finish (EOS or max_length), K finished slots initialised to -1e9, a
finished candidate's score is normalised by (generated length including the new
token) ** length_penalty, running beams are the K best candidates after adding -1e9
to the finished ones, and the source stops once its best running beam, divided by
(current generated length) ** length_penalty, cannot beat the worst finished slot
(or every candidate finished). Beams 1..K-1 start at -1e9 so that the first step
only expands beam 0 (what HF does).

Sampling has no reference: random streams are not reproducible across
implementations.

Every function also returns ``margin``: the smallest gap between two values whose
order decided the result (greedy: best vs second-best log-probability; beam: adjacent
candidate scores around the selection boundaries, adjacent finished scores, the
stopping comparison). A mismatch with the library where ``margin`` is ~1e-6 is a
near tie (float32 rounding), not a semantic difference.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

IMPOSSIBLE = -1.0e9  # Hugging Face's "cannot be chosen" score


@dataclasses.dataclass
class RefHypothesis:
    sequence: List[int]  # start tokens + generated tokens, no BOS, no final EOS
    log_prob: float
    score: float
    generated: int       # generated tokens, EOS included


@dataclasses.dataclass
class RefResult:
    hypotheses: List[RefHypothesis]
    margin: float
    steps: int  # decoder steps run for this source (forced start tokens included)


def log_softmax(logits):
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _sources(model, src_ids, src_lengths, start_tokens):
    """(memory of one source [1, S, E], its lengths [1] or None, its prefix) per source."""
    src_ids = np.asarray(src_ids)
    memory = model.encode(src_ids, src_lengths)
    out = []
    for b in range(src_ids.shape[0]):
        lengths = None if src_lengths is None else np.asarray(src_lengths)[b:b + 1]
        prefix = [] if start_tokens is None else [int(t) for t in start_tokens[b]]
        out.append((memory[b:b + 1], lengths, prefix))
    return out


def _next_log_probs(model, prefixes, memory, lengths):
    """float64 log-softmax of the last position for each target prefix (all of one length)."""
    n = len(prefixes)
    tgt = np.asarray(prefixes, dtype=np.int64).reshape(n, -1)
    mem = np.repeat(memory, n, axis=0)
    lens = None if lengths is None else np.repeat(lengths, n)
    logits = model.decode(tgt, mem, lens)[:, -1, :]
    return log_softmax(logits)


def _gap(values):
    """Smallest difference between adjacent finite values (sorted descending)."""
    v = np.sort(np.asarray([x for x in values if np.isfinite(x) and x > IMPOSSIBLE / 2], dtype=np.float64))[::-1]
    if v.size < 2:
        return np.inf
    return float(np.min(v[:-1] - v[1:]))


def greedy_search(model, src_ids, src_lengths=None, *, max_length, min_length=0, start_tokens=None,
                  length_penalty=1.0) -> List[RefResult]:
    """Greedy search (always the most likely token; EOS blocked before min_length)."""
    c = model.config
    results = []
    for memory, lengths, prefix in _sources(model, src_ids, src_lengths, start_tokens):
        tokens = [c.bos_id] + prefix
        log_prob, generated, margin = 0.0, 0, np.inf
        while True:
            lp = _next_log_probs(model, [tokens], memory, lengths)[0]
            if generated < min_length:
                lp[c.eos_id] = -np.inf
            order = np.argsort(-lp, kind="stable")
            nxt = int(order[0])
            margin = min(margin, float(lp[order[0]] - lp[order[1]]) if lp.size > 1 else np.inf)
            log_prob += float(lp[nxt])
            generated += 1
            if nxt == c.eos_id:
                break
            tokens.append(nxt)
            if generated >= max_length:
                break
        score = log_prob / float(generated) ** length_penalty
        results.append(RefResult([RefHypothesis(tokens[1:], log_prob, score, generated)], margin,
                                 len(prefix) + generated))
    return results


def beam_search(model, src_ids, src_lengths=None, *, beam_size, max_length, min_length=0, length_penalty=1.0,
                num_hypotheses=1, start_tokens=None) -> List[RefResult]:
    """Hugging Face beam search (early_stopping=False), one source at a time."""
    c = model.config
    K, V, eos = beam_size, c.tgt_vocab_size, c.eos_id
    C = 2 * K
    results = []
    for memory, lengths, prefix in _sources(model, src_ids, src_lengths, start_tokens):
        prompt = [c.bos_id] + prefix
        running = [list(prompt) for _ in range(K)]
        running_scores = np.full(K, IMPOSSIBLE)
        running_scores[0] = 0.0
        # finished slots: (score, log_prob, sequence, generated, finished?)
        slot_scores = np.full(K, IMPOSSIBLE)
        slot_logp = np.zeros(K)
        slot_seqs: List[Optional[list]] = [None] * K
        slot_gen = np.zeros(K, dtype=np.int64)
        slot_done = np.zeros(K, dtype=bool)
        unsatisfied = True
        generated = 0
        margin = np.inf
        while True:
            lp = _next_log_probs(model, running, memory, lengths)
            if generated < min_length:
                lp[:, eos] = -np.inf
            acc = (lp + running_scores[:, None]).reshape(-1)
            order = np.argsort(-acc, kind="stable")
            top = order[:C]
            margin = min(margin, _gap(acc[order[:C + 1]]))
            cand_scores = acc[top]
            cand_beam = top // V
            cand_tok = top % V
            cand_seqs = [running[int(bm)] + [int(t)] for bm, t in zip(cand_beam, cand_tok)]
            hit = (cand_tok == eos) | (generated + 1 >= max_length)

            # e. running beams for the next step: the K best after -1e9 on the finished ones
            run_scores = cand_scores + np.where(hit, IMPOSSIBLE, 0.0)
            nxt = np.argsort(-run_scores, kind="stable")[:K]

            # f. finished slots: only the top K candidates may finish
            did = hit & (np.arange(C) < K)
            with np.errstate(invalid="ignore"):
                fin = cand_scores / float(generated + 1) ** length_penalty
            if not unsatisfied:
                fin = fin + IMPOSSIBLE
            fin = fin + np.where(did, 0.0, IMPOSSIBLE)
            merged_scores = np.concatenate([slot_scores, fin])
            merged_logp = np.concatenate([slot_logp, cand_scores])
            merged_seqs = slot_seqs + cand_seqs
            merged_gen = np.concatenate([slot_gen, np.full(C, generated + 1)])
            merged_done = np.concatenate([slot_done, did])
            keep = np.argsort(-merged_scores, kind="stable")[:K]
            margin = min(margin, _gap(merged_scores[np.argsort(-merged_scores, kind="stable")[:K + 1]]))
            slot_scores, slot_logp = merged_scores[keep], merged_logp[keep]
            slot_seqs = [merged_seqs[int(i)] for i in keep]
            slot_gen, slot_done = merged_gen[keep], merged_done[keep]

            running = [cand_seqs[int(i)] for i in nxt]
            running_scores = run_scores[nxt]
            generated += 1

            # early-stop heuristic (early_stopping=False: the current generated length)
            best = running_scores[0] / float(generated) ** length_penalty
            worst = np.where(slot_done, slot_scores.min(), IMPOSSIBLE)
            if slot_done.all() and np.isfinite(best):
                margin = min(margin, abs(float(best - slot_scores.min())))
            unsatisfied = unsatisfied and bool(np.any(best > worst))
            if not unsatisfied or hit.all():
                break

        hyps = []
        for i in range(num_hypotheses):
            seq = list(slot_seqs[i])[1:]  # drop BOS
            if seq and len(seq) > len(prefix) and seq[-1] == eos:
                seq = seq[:-1]
            hyps.append(RefHypothesis(seq, float(slot_logp[i]), float(slot_scores[i]), int(slot_gen[i])))
        results.append(RefResult(hyps, margin, len(prefix) + generated))
    return results

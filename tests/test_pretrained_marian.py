"""pt.from_pretrained on Marian (OPUS-MT) folders against Hugging Face ``MarianMTModel``.

Small random Marian models are built with ``transformers``, saved with
``save_pretrained`` (config.json, generation_config.json, model.safetensors) and
loaded back with ``pt.from_pretrained``. Checked against HF's own forward and
``generate``:

* logits of a padded batch (``attention_mask``) with ``decoder_input_ids``, within
  1e-4 absolute (weights scaled so logits are O(1-10)), on every ISA;
* greedy and beam search token sequences identical to ``hf.generate(...,
  do_sample=False)``, with the checkpoint's generation defaults
  (``model.generation_defaults``: ``forced_eos`` from ``forced_eos_token_id``,
  ``suppress_tokens`` from ``bad_words_ids=[[pad]]``), length_penalty and
  min_new_tokens (pt: ``min_length``).

Variants: activations swish / gelu / relu; shared and separate source/target
embeddings (``share_encoder_decoder_embeddings=False`` with ``decoder_vocab_size``);
``scale_embedding`` on and off; a separate (untied) output projection.

HF's default initialisation (std 0.02) gives near-uniform logits, and plain random
weights give a decoder that repeats one token. The weights are redrawn (matrices
with variance 1/fan_in, LayerNorm gains in [0.5, 1.5], random biases and
``final_logits_bias``, an extra bias on EOS) and the last decoder FFN is made to map
each token to a "next" one (``_make_lively``), so that outputs depend on the source
and end at different lengths, which the fixture checks. ``embed_positions`` are
left alone: they are sinusoidal tables that are not saved.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import pytransformer as pt  # noqa: E402
from model_utils import assert_close_valid  # noqa: E402

ATOL = 1e-4
MAX_NEW = 14      # tokens generated (EOS included) in the generation tests


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    activation: str
    shared: bool
    scale_embedding: bool
    seed: int
    eos_bias: float
    tie: bool = True
    vocab: int = 61
    decoder_vocab: int = 61
    d_model: int = 48
    heads: int = 4
    ffn: int = 96
    enc_layers: int = 2
    dec_layers: int = 2
    bad_words: bool = True

    def __str__(self):
        return self.name

    @property
    def tgt_vocab(self):
        return self.vocab if self.shared else self.decoder_vocab

    @property
    def pad(self):
        return self.tgt_vocab - 1   # OPUS-MT: the last id; also the decoder start token

    eos = 0


SPECS = [
    Spec("swish_shared_scaled", "swish", shared=True, scale_embedding=True, seed=1, eos_bias=3.0),
    Spec("gelu_separate_vocab", "gelu", shared=False, scale_embedding=False, seed=2, eos_bias=3.0,
         decoder_vocab=53),
    Spec("relu_shared_unscaled", "relu", shared=True, scale_embedding=False, seed=5, eos_bias=7.0, bad_words=False),
    Spec("swish_separate_untied", "swish", shared=False, scale_embedding=True, seed=5, eos_bias=3.0,
         decoder_vocab=47, tie=False, enc_layers=1, dec_layers=3),
]


def _randomize(hf, spec):
    """Redraw every saved weight (see the module doc); embed_positions stay as they are."""
    g = torch.Generator().manual_seed(1000 + spec.seed)
    E = spec.d_model
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "embed_positions" in name:
                continue
            if name.endswith("layer_norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "embed_tokens" in name or "shared" in name or "lm_head" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / np.sqrt(E)))
            else:
                bound = float(np.sqrt(3.0 / p.shape[1]))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
        bias = torch.randn(hf.final_logits_bias.shape, generator=g)
        bias[..., spec.eos] += spec.eos_bias
        hf.final_logits_bias.copy_(bias)


def _make_lively(hf, spec):
    """Make the last decoder FFN map the current token to a "next" one.

    Random weights make a decoder repeat one token (its state is dominated by
    averages that do not depend on the input). The last decoder layer's FFN is made
    linear, FFN(x) = M x (f(z) - f(-z) = z for relu, gelu and swish, with fc1 =
    [M; -M], fc2 = [I, -I]), with M fitted by (ridge) least squares so that x + M x points
    to the output row of perm[token] for a random permutation. The fit is far from
    exact: the state still depends on the source and the position.
    """
    E, Vt = spec.d_model, spec.tgt_vocab
    assert spec.ffn == 2 * E
    last = hf.model.decoder.layers[-1]
    captured = []
    hook = last.fc1.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().double()))
    rng = np.random.default_rng(100 + spec.seed)
    src = torch.from_numpy(rng.integers(1, spec.vocab - 1, size=(48, 10)))
    tgt = rng.integers(0, Vt, size=(48, 16))
    tgt[:, 0] = spec.pad
    with torch.no_grad():
        hf(input_ids=src, decoder_input_ids=torch.from_numpy(tgt))
    hook.remove()
    x = captured[0].reshape(-1, E).numpy()
    out_rows = hf.get_output_embeddings().weight.detach().double().numpy()
    target = out_rows[rng.permutation(Vt)[tgt.reshape(-1)]]
    target *= np.sqrt(E) / np.linalg.norm(target, axis=1, keepdims=True)
    # ridge regression: a small M keeps the model well conditioned (float32 and
    # float64 forwards agree to ~1e-5, leaving the 1e-4 budget to pytransformer)
    m_t = np.linalg.solve(x.T @ x + 0.01 * len(x) * np.eye(E), x.T @ (target - x))
    m = torch.from_numpy(m_t.T).float()
    with torch.no_grad():
        last.fc1.weight.copy_(torch.cat([m, -m], 0))
        last.fc1.bias.zero_()
        last.fc2.weight.copy_(torch.cat([torch.eye(E), -torch.eye(E)], 1))
        last.fc2.bias.zero_()


def _build(spec, folder):
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(spec.seed)
    cfg = MarianConfig(
        vocab_size=spec.vocab, decoder_vocab_size=spec.decoder_vocab,
        share_encoder_decoder_embeddings=spec.shared, tie_word_embeddings=spec.tie,
        d_model=spec.d_model, encoder_layers=spec.enc_layers, decoder_layers=spec.dec_layers,
        encoder_attention_heads=spec.heads, decoder_attention_heads=spec.heads,
        encoder_ffn_dim=spec.ffn, decoder_ffn_dim=spec.ffn, activation_function=spec.activation,
        max_position_embeddings=64, scale_embedding=spec.scale_embedding,
        pad_token_id=spec.pad, eos_token_id=spec.eos, decoder_start_token_id=spec.pad,
        forced_eos_token_id=spec.eos, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    hf = MarianMTModel(cfg).eval()
    _randomize(hf, spec)
    _make_lively(hf, spec)
    if spec.bad_words:
        hf.generation_config.bad_words_ids = [[spec.pad]]
    hf.save_pretrained(folder)
    return hf


def _sources(spec, rng, lengths=(9, 3, 12, 6, 2, 11)):
    """Right-padded sources ending with EOS (as Marian's tokenizer makes them)."""
    S = max(lengths)
    ids = np.full((len(lengths), S), spec.pad, np.int64)
    for b, n in enumerate(lengths):
        row = rng.integers(1, min(spec.vocab, spec.tgt_vocab) - 1, size=n)
        row[-1] = spec.eos
        ids[b, :n] = row
    mask = (np.arange(S)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    return ids, mask


def _hf_generate(hf, ids, mask, **kw):
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
                          max_new_tokens=MAX_NEW, **kw)
    return [_strip(row, hf.config) for row in out.numpy().tolist()]


def _strip(row, cfg):
    """HF's output without the decoder start token, the final EOS and the padding after it."""
    assert row[0] == cfg.decoder_start_token_id
    row = row[1:]
    return row[:row.index(cfg.eos_token_id)] if cfg.eos_token_id in row else row


@pytest.fixture(scope="module", params=SPECS, ids=str)
def case(request, tmp_path_factory):
    spec = request.param
    folder = tmp_path_factory.mktemp(spec.name)
    hf = _build(spec, folder)
    rng = np.random.default_rng(spec.seed)
    ids, mask = _sources(spec, rng)
    greedy = _hf_generate(hf, ids, mask, num_beams=1)
    # Non-degenerate: outputs depend on the source and end at different lengths,
    # some before max_length (EOS generated, not forced).
    lengths = [len(s) for s in greedy]
    assert len({tuple(s) for s in greedy}) == len(greedy), f"{spec}: identical greedy outputs {greedy}"
    assert len(set(lengths)) >= 3 and min(lengths) < MAX_NEW - 1, f"{spec}: greedy lengths {lengths}"
    assert all(len(set(s)) > 1 for s in greedy if len(s) > 3), f"{spec}: a repeated token {greedy}"
    return dict(spec=spec, folder=folder, hf=hf, ids=ids, mask=mask, greedy=greedy)


def _load(case):
    model = pt.from_pretrained(case["folder"])
    assert isinstance(model, pt.Transformer)
    return model


def test_config_and_generation_defaults(case):
    spec = case["spec"]
    model = _load(case)
    c = model.config
    assert (c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers, c.dim_feedforward) == (
        spec.d_model, spec.heads, spec.enc_layers, spec.dec_layers, spec.ffn)
    assert (c.src_vocab_size, c.tgt_vocab_size) == (spec.vocab, spec.tgt_vocab)
    assert c.share_embeddings is spec.shared and c.tie_output is spec.tie
    assert c.activation == {"swish": "silu"}.get(spec.activation, spec.activation)
    assert c.resolved_embedding_scale == pytest.approx(np.sqrt(spec.d_model) if spec.scale_embedding else 1.0)
    assert (c.bos_id, c.eos_id) == (spec.pad, spec.eos)
    expected = {"forced_eos": True}
    if spec.bad_words:
        expected["suppress_tokens"] = [spec.pad]
    assert model.generation_defaults == expected


def test_logits_match_hf(case, isa):
    spec, hf = case["spec"], case["hf"]
    ids, mask = case["ids"], case["mask"]
    rng = np.random.default_rng(7)
    T = 10
    dec = rng.integers(0, spec.tgt_vocab, size=(ids.shape[0], T))
    dec[:, 0] = spec.pad
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                 decoder_input_ids=torch.from_numpy(dec))
    expected = out.logits.numpy()
    hf_memory = out.encoder_last_hidden_state.numpy()
    spread = float(expected.std())
    assert 1.0 < spread < 10.0 and np.abs(expected).max() < 40, f"logits scale {spread}"

    model = _load(case)   # after the isa switch
    lengths = mask.sum(1)
    memory = model.encode(ids, lengths)
    assert_close_valid(memory, hf_memory, lengths, ATOL, f"{spec} memory ({isa})")
    logits = model.decode(dec, memory, lengths)
    assert logits.shape == expected.shape
    assert_close_valid(logits, expected, None, ATOL, f"{spec} logits ({isa})")


def _pt_sequences(model, ids, mask, **opts):
    kw = dict(model.generation_defaults)
    kw.update(opts)
    results = model.generate(ids, mask.sum(1), max_length=MAX_NEW, **kw)
    return [r.sequences[0] for r in results]


def test_greedy_matches_hf(case):
    model = _load(case)
    got = _pt_sequences(model, case["ids"], case["mask"])
    assert got == case["greedy"]


@pytest.mark.parametrize("length_penalty", [1.0, 0.6, 2.0])
def test_beam_search_matches_hf(case, length_penalty):
    model = _load(case)
    ids, mask = case["ids"], case["mask"]
    expected = _hf_generate(case["hf"], ids, mask, num_beams=4, length_penalty=length_penalty)
    got = _pt_sequences(model, ids, mask, beam_size=4, length_penalty=length_penalty)
    assert got == expected


@pytest.mark.parametrize("num_beams", [1, 4])
@pytest.mark.parametrize("min_new", [5, MAX_NEW - 1])
def test_min_length_matches_hf_min_new_tokens(case, num_beams, min_new):
    model = _load(case)
    ids, mask = case["ids"], case["mask"]
    expected = _hf_generate(case["hf"], ids, mask, num_beams=num_beams, min_new_tokens=min_new)
    assert all(len(s) >= min_new for s in expected)
    got = _pt_sequences(model, ids, mask, beam_size=num_beams, min_length=min_new)
    assert got == expected
    if min_new == 5:   # the constraint changed something
        plain = _pt_sequences(model, ids, mask, beam_size=num_beams)
        assert plain != got


def test_beam_search_one_source_at_a_time_matches_hf(case):
    """Each source alone (no padding) gives the batch's result."""
    model = _load(case)
    ids, mask = case["ids"], case["mask"]
    batch = _pt_sequences(model, ids, mask, beam_size=4)
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        one_ids, one_mask = ids[b:b + 1, :n], mask[b:b + 1, :n]
        assert _hf_generate(case["hf"], one_ids, one_mask, num_beams=4) == [batch[b]]


def test_generation_config_defaults_match_hf(tmp_path):
    """num_beams, max_length and length_penalty in generation_config.json become
    generation_defaults, and generate(**generation_defaults) equals hf.generate()."""
    spec = SPECS[0]
    hf = _build(spec, tmp_path)
    hf.generation_config.num_beams = 3
    hf.generation_config.max_length = 9      # counts the decoder start token
    hf.generation_config.length_penalty = 0.8
    hf.generation_config.bad_words_ids = [[spec.pad]]
    hf.generation_config.save_pretrained(tmp_path)
    model = pt.from_pretrained(tmp_path)
    assert model.generation_defaults == {"beam_size": 3, "max_length": 8, "length_penalty": 0.8,
                                         "suppress_tokens": [spec.pad], "forced_eos": True}
    ids, mask = _sources(spec, np.random.default_rng(5))
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False)
    expected = [_strip(row, hf.config) for row in out.numpy().tolist()]
    got = [r.sequences[0] for r in model.generate(ids, mask.sum(1), **model.generation_defaults)]
    assert got == expected

"""pt.from_pretrained on BART, mBART, M2M100 and NLLB folders against Hugging Face.

Random-weight ``BartForConditionalGeneration``, ``MBartForConditionalGeneration`` and
``M2M100ForConditionalGeneration`` models are built from configs with the hidden
sizes of real checkpoints (bart-base, mbart-large-50, m2m100_418M and
nllb-200-distilled-600M: d_model, heads, FFN width, activation, embedding scale,
special ids), with fewer layers and a smaller vocabulary so that the suite stays
fast, saved with ``save_pretrained`` (plus a ``tokenizer.json`` made with
``tokenizers``) and loaded back with ``pt.from_pretrained``. Checked against HF:

* encoder outputs and logits of a right-padded batch (``attention_mask``) within
  1e-4 absolute, on every ISA;
* greedy and beam-4 token sequences identical to ``hf.generate(do_sample=False)``
  with the same options, on the padded batch: the checkpoint's generation defaults
  (``forced_eos_token_id``; ``forced_bos_token_id``, the target language of mBART-50,
  M2M100 and NLLB; ``bad_words_ids``), length penalties, ``early_stopping=True``;
* the folder's tokenizer round-trips text.

The weights are redrawn as in test_pretrained_marian.py (variance 1/fan_in, LayerNorm
gains in [0.5, 1.5], random biases), and the last decoder FFN is fitted to map each
token to a "next" one, so that outputs depend on the source and end at different
lengths (the fixture checks it). The padding token is never generated
(``bad_words_ids=[[pad]]``) and never fed to the decoder: M2M100 gives a padding
token in the decoder input the position of padding (HF derives positions from the
ids), which a real model never generates either.
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
MAX_NEW = 12      # tokens generated (EOS included) in the generation tests
PAD, BOS, EOS = 1, 0, 2


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    model_type: str           # bart, mbart, m2m_100
    d_model: int
    heads: int
    ffn: int
    activation: str
    scale_embedding: bool
    enc_layers: int
    dec_layers: int
    vocab: int
    seed: int
    forced_bos: bool = False  # the target language token (mBART-50, M2M100, NLLB)
    eos_bias: float = 0.0
    lively: float = 1.0       # strength of the "next token" map of the last decoder FFN
    end_share: float = 0.04   # share of the tokens the map sends to EOS
    cross_gain: float = 3.0   # factor on the decoder's encoder-attention output projections
    max_positions: int = 1024

    def __str__(self):
        return self.name

    @property
    def language(self):
        return self.vocab - 3 if self.forced_bos else None


SPECS = [
    # bart-base: d_model 768, 12 heads, FFN 3072, GELU, unscaled embeddings, post-LN (6 + 6 layers there)
    Spec("bart_base", "bart", 768, 12, 3072, "gelu", False, enc_layers=2, dec_layers=2, vocab=512, seed=1),
    # mbart-large-50: d_model 1024, 16 heads, FFN 4096, GELU, scaled embeddings, pre-LN (12 + 12)
    Spec("mbart_large_50", "mbart", 1024, 16, 4096, "gelu", True, enc_layers=1, dec_layers=2, vocab=640, seed=2,
         forced_bos=True, eos_bias=4.0, cross_gain=10.0),
    # m2m100_418M: d_model 1024, 16 heads, FFN 4096, ReLU, scaled embeddings, pre-LN (12 + 12)
    Spec("m2m100_418M", "m2m_100", 1024, 16, 4096, "relu", True, enc_layers=1, dec_layers=2, vocab=700, seed=3,
         forced_bos=True, end_share=0.3, cross_gain=20.0),
    # nllb-200-distilled-600M: the M2M100 architecture, d_model 1024, 16 heads, FFN 4096, ReLU (12 + 12)
    Spec("nllb_200_distilled_600M", "m2m_100", 1024, 16, 4096, "relu", True, enc_layers=2, dec_layers=1,
         vocab=560, seed=4, forced_bos=True, end_share=0.3, cross_gain=20.0),
]


def _hf_config(spec):
    common = dict(vocab_size=spec.vocab, d_model=spec.d_model, encoder_layers=spec.enc_layers,
                  decoder_layers=spec.dec_layers, encoder_attention_heads=spec.heads,
                  decoder_attention_heads=spec.heads, encoder_ffn_dim=spec.ffn, decoder_ffn_dim=spec.ffn,
                  activation_function=spec.activation, max_position_embeddings=spec.max_positions,
                  scale_embedding=spec.scale_embedding, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                  decoder_start_token_id=EOS, forced_eos_token_id=EOS, dropout=0.0, attention_dropout=0.0,
                  activation_dropout=0.0)
    if spec.forced_bos:
        common["forced_bos_token_id"] = spec.language
    if spec.model_type == "bart":
        return transformers.BartConfig(**common), transformers.BartForConditionalGeneration
    if spec.model_type == "mbart":
        return transformers.MBartConfig(**common), transformers.MBartForConditionalGeneration
    cfg = transformers.M2M100Config(**common)
    if spec.name.startswith("nllb"):
        cfg.tokenizer_class = "NllbTokenizer"
    return cfg, transformers.M2M100ForConditionalGeneration


def _randomize(hf, spec):
    g = torch.Generator().manual_seed(1000 + spec.seed)
    E = spec.d_model
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("layer_norm.weight", "layernorm_embedding.weight")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "embed_positions" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / np.sqrt(E)))
            elif "embed_tokens" in name or "shared" in name or "lm_head" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / np.sqrt(E)))
            else:
                bound = float(np.sqrt(3.0 / p.shape[1]))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
        if hasattr(hf, "final_logits_bias"):
            bias = torch.randn(hf.final_logits_bias.shape, generator=g)
            bias[..., EOS] += spec.eos_bias
            hf.final_logits_bias.copy_(bias)


def _make_lively(hf, spec):
    """Fit the last decoder FFN so that it maps the current token to a "next" one.

    The FFN is made linear on its first 2E hidden units, FFN(h) = M h (f(z) - f(-z)
    = z for ReLU and GELU, fc1 = [M; -M; 0], fc2 = [I, -I, 0]), with M fitted by ridge
    least squares so that M h adds to the residual stream r a vector of `lively` x |r|
    along the output row of perm[token] (h = r post-LN; h = LayerNorm(r) pre-LN).
    """
    E, V = spec.d_model, spec.vocab
    last = hf.model.decoder.layers[-1]
    got = {}
    hooks = [last.fc1.register_forward_hook(lambda m, i, o: got.__setitem__("h", i[0].detach().double())),
             last.final_layer_norm.register_forward_hook(
                 lambda m, i, o: got.__setitem__("norm_in", i[0].detach().double()))]
    rng = np.random.default_rng(100 + spec.seed)
    src = torch.from_numpy(rng.integers(3, V, size=(48, 10)))
    tgt = rng.integers(3, V, size=(48, 16))
    tgt[:, 0] = EOS
    with torch.no_grad():
        hf(input_ids=src, decoder_input_ids=torch.from_numpy(tgt))
    for h in hooks:
        h.remove()
    h = got["h"].reshape(-1, E).numpy()
    pre_ln = spec.model_type != "bart"
    r = got["norm_in"].reshape(-1, E).numpy() if pre_ln else h
    out_rows = hf.get_output_embeddings().weight.detach().double().numpy()
    nxt = rng.permutation(V)
    ends = rng.choice(np.arange(3, V), size=int(spec.end_share * V), replace=False)
    nxt[ends] = EOS  # a share of the tokens lead to EOS: chains end at different lengths
    nudge = out_rows[nxt[tgt.reshape(-1)]]
    nudge *= spec.lively * np.linalg.norm(r, axis=1, keepdims=True) / np.linalg.norm(nudge, axis=1, keepdims=True)
    m_t = np.linalg.solve(h.T @ h + 0.01 * len(h) * np.eye(E), h.T @ nudge)
    m = torch.from_numpy(m_t.T).float()
    F = spec.ffn
    with torch.no_grad():
        for layer in hf.model.decoder.layers:  # more of the source in the decoder's state
            layer.encoder_attn.out_proj.weight.mul_(spec.cross_gain)
        w1 = torch.zeros(F, E)
        w1[:E], w1[E:2 * E] = m, -m
        w2 = torch.zeros(E, F)
        w2[:, :E], w2[:, E:2 * E] = torch.eye(E), -torch.eye(E)
        last.fc1.weight.copy_(w1)
        last.fc1.bias.zero_()
        last.fc2.weight.copy_(w2)
        last.fc2.bias.zero_()


def _tokenizer(spec):
    """A small tokenizer.json of the family's kind: byte-level BPE (BART) or a
    Metaspace (sentencepiece-style) BPE (mBART, M2M100, NLLB), trained on a few lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = ["The quick brown fox jumps over the lazy dog.", "Padded batches of unequal length sources.",
            "Translation, summarisation and embeddings on CPUs: 1234 5678 90!"] * 4
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if spec.model_type == "bart":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = sorted(set("".join(text).replace(" ", "\u2581")) | {"\u2581"})
    trainer = trainers.BpeTrainer(vocab_size=min(spec.vocab - 8, 400), special_tokens=specials,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(text, trainer)
    assert tok.get_vocab_size() <= spec.vocab
    return tok


def _build(spec, folder):
    cfg, cls = _hf_config(spec)
    torch.manual_seed(spec.seed)
    hf = cls(cfg).eval()
    _randomize(hf, spec)
    _make_lively(hf, spec)
    hf.generation_config.bad_words_ids = [[PAD]]
    hf.generation_config.forced_eos_token_id = EOS
    if spec.forced_bos:
        hf.generation_config.forced_bos_token_id = spec.language
    hf.save_pretrained(folder)
    _tokenizer(spec).save(os.path.join(folder, "tokenizer.json"))
    return hf


def _sources(spec, rng, lengths=(9, 3, 12, 6, 2, 11)):
    """Right-padded sources ending with EOS; no special id inside."""
    S = max(lengths)
    ids = np.full((len(lengths), S), PAD, np.int64)
    for b, n in enumerate(lengths):
        row = rng.integers(3, spec.vocab, size=n)
        row[-1] = EOS
        ids[b, :n] = row
    mask = (np.arange(S)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    return ids, mask


def _strip(row):
    """HF's output without the decoder start token, the final EOS and the padding after it."""
    assert row[0] == EOS
    row = row[1:]
    return row[:row.index(EOS)] if EOS in row else row


def _hf_generate(hf, ids, mask, **kw):
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
                          max_new_tokens=MAX_NEW, **kw)
    return [_strip(row) for row in out.numpy().tolist()]


@pytest.fixture(scope="module", params=SPECS, ids=str)
def case(request, tmp_path_factory):
    spec = request.param
    folder = tmp_path_factory.mktemp(spec.name)
    hf = _build(spec, folder)
    ids, mask = _sources(spec, np.random.default_rng(spec.seed))
    greedy = _hf_generate(hf, ids, mask, num_beams=1)
    lengths = [len(s) for s in greedy]
    # (pre-LN random models depend on their source less than post-LN ones: the bar for
    # them is lower, but some output always differs and some ends with a generated EOS)
    assert len({tuple(s) for s in greedy}) >= 4, f"{spec}: identical greedy outputs {greedy}"
    assert len(set(lengths)) >= 2 and min(lengths) < MAX_NEW - 1, f"{spec}: greedy lengths {lengths}"
    if spec.forced_bos:
        assert all(s[0] == spec.language for s in greedy), greedy
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
    assert (c.src_vocab_size, c.tgt_vocab_size, c.max_length) == (spec.vocab, spec.vocab, spec.max_positions)
    assert c.share_embeddings and c.tie_output
    assert c.activation == spec.activation
    assert c.norm_first is (spec.model_type != "bart") and c.final_norm is (spec.model_type != "bart")
    assert c.embedding_norm is (spec.model_type != "m2m_100")
    assert c.output_bias is (spec.model_type != "m2m_100")
    assert c.resolved_embedding_scale == pytest.approx(np.sqrt(spec.d_model) if spec.scale_embedding else 1.0)
    assert (c.bos_id, c.eos_id, c.pad_id) == (EOS, EOS, PAD)
    expected = {"forced_eos": True, "suppress_tokens": [PAD]}
    if spec.forced_bos:
        expected["forced_bos"] = spec.language
    assert model.generation_defaults == expected


def test_encoder_and_logits_match_hf(case, isa):
    check_encoder_and_logits(case["spec"], case["hf"], case["folder"], case["ids"], case["mask"], isa)


def check_encoder_and_logits(spec, hf, folder, ids, mask, isa):
    """pt's encoder outputs and teacher-forced logits of the padded batch within ATOL of
    HF's (also used by test_pretrained_pegasus.py)."""
    rng = np.random.default_rng(7)
    dec = rng.integers(3, spec.vocab, size=(ids.shape[0], 10))
    dec[:, 0] = EOS
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                 decoder_input_ids=torch.from_numpy(dec))
    expected = out.logits.numpy()
    spread = float(expected.std())
    assert 1.0 < spread < 10.0 and np.abs(expected).max() < 60, f"logits scale {spread}"
    model = pt.from_pretrained(folder)   # after the isa switch
    assert isinstance(model, pt.Transformer)
    lengths = mask.sum(1)
    memory = model.encode(ids, lengths)
    assert_close_valid(memory, out.encoder_last_hidden_state.numpy(), lengths, ATOL, f"{spec} memory ({isa})")
    logits = model.decode(dec, memory, lengths)
    assert_close_valid(logits, expected, None, ATOL, f"{spec} logits ({isa})")


def _pt_sequences(model, ids, mask, **opts):
    kw = dict(model.generation_defaults)
    kw.update(opts)
    return [r.sequences[0] for r in model.generate(ids, mask.sum(1), max_length=MAX_NEW, **kw)]


def test_greedy_matches_hf(case):
    assert _pt_sequences(_load(case), case["ids"], case["mask"]) == case["greedy"]


@pytest.mark.parametrize("length_penalty,early_stopping", [(1.0, False), (2.0, False), (0.6, True), (1.0, True)])
def test_beam_search_matches_hf(case, length_penalty, early_stopping):
    model = _load(case)
    ids, mask = case["ids"], case["mask"]
    expected = _hf_generate(case["hf"], ids, mask, num_beams=4, length_penalty=length_penalty,
                            early_stopping=early_stopping)
    got = _pt_sequences(model, ids, mask, beam_size=4, length_penalty=length_penalty,
                        early_stopping=early_stopping)
    assert got == expected


def test_forced_bos_is_a_generated_token(case):
    """The target language token (the checkpoint's forced_bos_token_id, or for BART one
    passed to generate): first in every hypothesis, log-probability 0, counted by
    max_length, as HF's forced_bos_token_id; without it the outputs differ."""
    spec = case["spec"]
    model = _load(case)
    ids, mask = case["ids"], case["mask"]
    language = spec.language if spec.forced_bos else spec.vocab - 3
    kw = dict(model.generation_defaults, forced_bos=language)
    res = model.generate(ids, mask.sum(1), max_length=MAX_NEW, **kw)
    for r in res:
        assert r.sequences[0][0] == language and len(r.sequences[0]) <= MAX_NEW
    assert [r.sequences[0] for r in res] == _hf_generate(case["hf"], ids, mask, num_beams=1,
                                                         forced_bos_token_id=language)
    # max_length=1: forced_eos wins (HF applies ForcedEOS after ForcedBOS) ...
    assert [r.sequences[0] for r in model.generate(ids, mask.sum(1), max_length=1, **kw)] == [[]] * len(ids)
    # ... and without it the language token is the one token, with log-probability 0.
    one = model.generate(ids, mask.sum(1), max_length=1, **dict(kw, forced_eos=False))
    assert [r.sequences[0] for r in one] == [[language]] * len(ids)
    assert all(r.log_probs[0] == 0.0 for r in one)
    free = _pt_sequences(model, ids, mask, forced_bos=None)
    assert free != [r.sequences[0] for r in res]
    assert free == _hf_generate(case["hf"], ids, mask, num_beams=1, forced_bos_token_id=None)


def test_tokenizer_round_trips(case):
    model = _load(case)
    tok = model.tokenizer
    assert tok is not None
    for text in ["The quick brown fox.", "Padded batches, 1234!"]:
        enc = tok.encode(text)
        assert all(0 <= i < case["spec"].vocab for i in enc.ids)
        assert tok.decode(enc.ids) == text


def test_folder_without_tokenizer(tmp_path):
    spec = SPECS[0]
    hf = _build(spec, tmp_path)
    os.remove(tmp_path / "tokenizer.json")
    model = pt.from_pretrained(tmp_path)
    assert model.tokenizer is None
    del hf


def test_learned_positions_of_the_wrong_size_are_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    spec = SPECS[0]
    _build(spec, tmp_path)
    file = tmp_path / "model.safetensors"
    state = load_file(str(file))
    state["model.encoder.embed_positions.weight"] = state["model.encoder.embed_positions.weight"][:-1]
    save_file(state, str(file), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model.encoder.embed_positions.weight.*max_position_embeddings \+ 2"):
        pt.from_pretrained(tmp_path)


def test_unsupported_generation_default_warns(tmp_path):
    spec = SPECS[0]
    hf = _build(spec, tmp_path)
    hf.generation_config.no_repeat_ngram_size = 3
    hf.generation_config.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no_repeat_ngram_size=3"):
        model = pt.from_pretrained(tmp_path)
    assert "no_repeat_ngram_size" not in str(model.generation_defaults)

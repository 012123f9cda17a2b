"""pt.from_pretrained on Pegasus folders against Hugging Face.

A random-weight ``PegasusForConditionalGeneration`` with pegasus-large's hidden sizes
(d_model 1024, 16 heads, FFN 4096, ReLU, scaled embeddings, pre-LN; 1 + 2 layers here
instead of 16 + 16, a small vocabulary), saved with ``save_pretrained`` plus a
``tokenizer.json``, loaded with ``pt.from_pretrained``. As for BART in
test_pretrained_bart.py (whose model helpers this file uses): encoder outputs and
logits of a padded batch within 1e-4, greedy and beam-4 tokens equal to
``hf.generate``, the tokenizer round trip. Pegasus's positions are a fixed sinusoidal
table (Marian's layout), which the helpers must leave as HF made it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import pytransformer as pt  # noqa: E402
from test_pretrained_bart import (BOS, EOS, MAX_NEW, PAD, Spec, _hf_generate, _make_lively, _randomize,  # noqa: E402
                                  _sources, _tokenizer, check_encoder_and_logits)

# pegasus-large: d_model 1024, 16 heads, FFN 4096, ReLU, scale_embedding, 16 + 16 layers
SPEC = Spec("pegasus_large", "pegasus", 1024, 16, 4096, "relu", True, enc_layers=1, dec_layers=2, vocab=600,
            seed=5, end_share=0.05, cross_gain=5.0, lively=2.0)
MIN_NEW = 3   # the random model ends early without it: HF's min_new_tokens, pt's min_length


BIAS_SCALE = 0.1


def _build(folder):
    spec = SPEC
    cfg = transformers.PegasusConfig(
        vocab_size=spec.vocab, d_model=spec.d_model, encoder_layers=spec.enc_layers, decoder_layers=spec.dec_layers,
        encoder_attention_heads=spec.heads, decoder_attention_heads=spec.heads, encoder_ffn_dim=spec.ffn,
        decoder_ffn_dim=spec.ffn, activation_function=spec.activation, max_position_embeddings=spec.max_positions,
        scale_embedding=spec.scale_embedding, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
        decoder_start_token_id=EOS, forced_eos_token_id=EOS, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0)
    torch.manual_seed(spec.seed)
    hf = transformers.PegasusForConditionalGeneration(cfg).eval()
    positions = {n: p.detach().clone() for n, p in hf.named_parameters() if "embed_positions" in n}
    assert positions, "Pegasus has position tables"
    _randomize(hf, spec)
    with torch.no_grad():  # the fixed sinusoidal tables, as HF made them
        for n, p in hf.named_parameters():
            if n in positions:
                p.copy_(positions[n])
    with torch.no_grad():  # a milder output bias than _randomize's N(0, 1): it would pick the same tokens everywhere
        hf.final_logits_bias.mul_(BIAS_SCALE)
    _make_lively(hf, spec)
    hf.generation_config.bad_words_ids = [[PAD]]
    hf.generation_config.forced_eos_token_id = EOS
    hf.save_pretrained(folder)
    _tokenizer(spec).save(os.path.join(folder, "tokenizer.json"))
    return hf


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pegasus")
    hf = _build(folder)
    ids, mask = _sources(SPEC, np.random.default_rng(SPEC.seed))
    greedy = _hf_generate(hf, ids, mask, num_beams=1, min_new_tokens=MIN_NEW)
    assert len({tuple(s) for s in greedy}) >= 4, f"identical greedy outputs {greedy}"
    return dict(folder=folder, hf=hf, ids=ids, mask=mask, greedy=greedy)


def test_config_and_generation_defaults(case):
    model = pt.from_pretrained(case["folder"])
    assert isinstance(model, pt.Transformer)
    c = model.config
    assert (c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers, c.dim_feedforward) == (
        SPEC.d_model, SPEC.heads, SPEC.enc_layers, SPEC.dec_layers, SPEC.ffn)
    assert (c.src_vocab_size, c.max_length, c.activation) == (SPEC.vocab, SPEC.max_positions, "relu")
    assert c.norm_first and c.final_norm and not c.embedding_norm and c.output_bias
    assert c.share_embeddings and c.tie_output and c.positional == "sinusoidal_concat"
    assert c.resolved_embedding_scale == pytest.approx(np.sqrt(SPEC.d_model))
    assert (c.bos_id, c.eos_id, c.pad_id) == (EOS, EOS, PAD)
    assert model.generation_defaults == {"forced_eos": True, "suppress_tokens": [PAD]}


def test_released_checkpoint_ids(case, tmp_path):
    """The released checkpoints' config.json: pad 0, eos 1 and (when decoder_start_token_id
    is absent) generation starting from the padding id, as HF's generate does."""
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(case["folder"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(pad_token_id=0, eos_token_id=1, forced_eos_token_id=1)
    cfg.pop("decoder_start_token_id", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    os.remove(folder / "generation_config.json")
    c = pt.from_pretrained(folder).config
    assert (c.pad_id, c.eos_id, c.bos_id) == (0, 1, 0)


def test_encoder_and_logits_match_hf(case, isa):
    check_encoder_and_logits(SPEC, case["hf"], case["folder"], case["ids"], case["mask"], isa)


def _pt_sequences(model, ids, mask, **opts):
    kw = dict(model.generation_defaults, min_length=MIN_NEW, **opts)
    return [r.sequences[0] for r in model.generate(ids, mask.sum(1), max_length=MAX_NEW, **kw)]


def test_greedy_matches_hf(case):
    assert _pt_sequences(pt.from_pretrained(case["folder"]), case["ids"], case["mask"]) == case["greedy"]


@pytest.mark.parametrize("length_penalty,early_stopping", [(1.0, False), (0.6, True)])
def test_beam_search_matches_hf(case, length_penalty, early_stopping):
    model = pt.from_pretrained(case["folder"])
    ids, mask = case["ids"], case["mask"]
    expected = _hf_generate(case["hf"], ids, mask, num_beams=4, length_penalty=length_penalty,
                            early_stopping=early_stopping, min_new_tokens=MIN_NEW)
    assert _pt_sequences(model, ids, mask, beam_size=4, length_penalty=length_penalty,
                         early_stopping=early_stopping) == expected


def test_tokenizer_round_trips(case):
    tok = pt.from_pretrained(case["folder"]).tokenizer
    assert tok is not None
    for text in ["The quick brown fox.", "Padded batches, 1234!"]:
        enc = tok.encode(text)
        assert all(0 <= i < SPEC.vocab for i in enc.ids)
        assert tok.decode(enc.ids) == text

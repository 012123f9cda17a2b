"""The bundled demo model (dates -> ISO 8601) against the PyTorch model it came from.

tools/train_demo.py trained it with PyTorch and converted it; here the converted
weights go back into a textbook PyTorch model (nn.Transformer, the same embeddings,
positions and output layer), and both run greedy decoding on a freshly generated
held-out set. pytransformer must reach the PyTorch model's exact-match accuracy and
agree with it on at least 99.5% of outputs.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random

import numpy as np
import pytest

import pytransformer as pt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_demo_module():
    path = os.path.join(ROOT, "tools", "train_demo.py")
    if not os.path.isfile(path):
        pytest.skip("tools/train_demo.py is not in this tree")
    spec = importlib.util.spec_from_file_location("train_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo():
    return pt.load_demo()


@pytest.fixture(scope="module")
def heldout():
    td = _train_demo_module()
    rng = random.Random(20261125)  # not the training seed, nor its held-out seed
    return [td.sample(rng) for _ in range(500)]


def test_demo_loads_with_vocabulary(demo):
    c = demo.model.config
    assert isinstance(demo, pt.TextTranslator)
    assert len(demo.src_vocab) == c.src_vocab_size and len(demo.tgt_vocab) == c.tgt_vocab_size
    assert set("0123456789-") <= set(demo.tgt_vocab)
    assert os.path.getsize(pt.text._DEMO_FILE) < 2_000_000


def test_builtin_examples(demo):
    expected = {
        "25th of November 2026": "2026-11-25", "11/25/26": "2026-11-25", "Nov 25, 2026": "2026-11-25",
        "Thursday, July 4, 1996": "1996-07-04", "the 1st of January, 2000": "2000-01-01",
        "31.12.1999": "1999-12-31", "FEB 29 2024": "2024-02-29", "march 3rd, 1985": "1985-03-03",
    }
    assert set(expected) == set(pt.text.DEMO_EXAMPLES)
    got = {r.source: r.text for r in demo.translate(list(expected), beam_size=4)}
    assert got == expected


def test_heldout_accuracy_pytransformer(demo, heldout):
    results = demo.translate([x for x, _ in heldout], beam_size=1)
    accuracy = np.mean([r.text == y for r, (_, y) in zip(results, heldout)])
    assert accuracy >= 0.99, accuracy


def _torch_model(demo):
    torch = pytest.importorskip("torch")
    from torch import nn

    c = demo.model.config
    w = {k: torch.from_numpy(v) for k, v in demo.model.state_dict().items()}
    tr = nn.Transformer(c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers, c.dim_feedforward,
                        dropout=0.0, batch_first=True)
    tr.load_state_dict({k: v for k, v in w.items() if k.startswith(("encoder.", "decoder."))})
    src_emb, tgt_emb = nn.Embedding(c.src_vocab_size, c.d_model), nn.Embedding(c.tgt_vocab_size, c.d_model)
    src_emb.weight.data, tgt_emb.weight.data = w["src_embed.weight"], w["tgt_embed.weight"]
    gen = nn.Linear(c.d_model, c.tgt_vocab_size)
    gen.weight.data, gen.bias.data = w["generator.weight"], w["generator.bias"]
    pe = torch.from_numpy(pt.ops.positional_encoding(c.max_length, c.d_model))
    scale = math.sqrt(c.d_model)

    def greedy(src_ids, lengths, max_length=12):
        src = torch.from_numpy(src_ids.astype(np.int64))
        pad = torch.arange(src.shape[1])[None, :] >= torch.from_numpy(lengths)[:, None]
        with torch.no_grad():
            memory = tr.encoder(src_emb(src) * scale + pe[: src.shape[1]], src_key_padding_mask=pad)
            out = torch.full((src.shape[0], 1), c.bos_id, dtype=torch.int64)
            done = torch.zeros(src.shape[0], dtype=torch.bool)
            for _ in range(max_length):
                T = out.shape[1]
                h = tr.decoder(tgt_emb(out) * scale + pe[:T], memory,
                               tgt_mask=nn.Transformer.generate_square_subsequent_mask(T),
                               memory_key_padding_mask=pad, tgt_is_causal=True)
                nxt = gen(h[:, -1]).argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, c.pad_id), nxt)
                done |= nxt == c.eos_id
                out = torch.cat([out, nxt[:, None]], 1)
                if bool(done.all()):
                    break
        texts = []
        for row in out[:, 1:].tolist():
            toks = []
            for t in row:
                if t in (c.eos_id, c.pad_id):
                    break
                toks.append(demo.tgt_vocab[t])
            texts.append("".join(toks))
        return texts

    return greedy


def test_heldout_matches_pytorch_model(demo, heldout):
    greedy_torch = _torch_model(demo)
    encoded = [demo.encode_text(x) for x, _ in heldout]
    lengths = np.array([len(e) for e in encoded], np.int64)
    src = np.zeros((len(encoded), lengths.max()), np.int64)
    for i, e in enumerate(encoded):
        src[i, :len(e)] = e
    torch_out = greedy_torch(src, lengths)
    pt_out = [r.text for r in demo.translate([x for x, _ in heldout], beam_size=1)]
    truth = [y for _, y in heldout]
    acc_torch = np.mean([a == b for a, b in zip(torch_out, truth)])
    acc_pt = np.mean([a == b for a, b in zip(pt_out, truth)])
    agree = np.mean([a == b for a, b in zip(torch_out, pt_out)])
    assert acc_pt >= acc_torch, (acc_pt, acc_torch)
    assert agree >= 0.995, agree


def test_attention_is_a_sensible_alignment(demo):
    # Each digit copied into the output looks hardest at that very digit of the input,
    # and the month digits look at the month's name.
    source = "Nov 25, 2026"
    r = demo.translate([source], beam_size=1, attention=True)[0]
    assert r.text == "2026-11-25"
    att = r.attention
    assert att.shape == (len(r.target_tokens) + 1, len(r.source_tokens) + 1)
    np.testing.assert_allclose(att.sum(axis=1), 1.0, atol=1e-5)
    looked = att.argmax(axis=1)
    year, day = source.index("2026"), source.index("25")
    assert list(looked[0:4]) == [year, year + 1, year + 2, year + 3], looked
    assert list(looked[8:10]) == [day, day + 1], looked
    assert all(looked[i] in (0, 1, 2) for i in (5, 6)), looked  # "11" <- "Nov"


def test_int8_heldout_accuracy():
    """compute_type="int8" on 2000 held-out dates: exact match >= 99.5% (float32: 100%),
    and the same output as float32 on nearly every one."""
    td = _train_demo_module()
    rng = random.Random(20261202)  # another held-out draw
    data = [td.sample(rng) for _ in range(2000)]
    f32 = pt.load_demo()
    i8 = pt.load_demo(compute_type="int8")
    assert i8.model.compute_type == "int8" and f32.model.compute_type == "float32"
    texts = [x for x, _ in data]
    out8 = [r.text for r in i8.translate(texts, beam_size=1)]
    out32 = [r.text for r in f32.translate(texts, beam_size=1)]
    acc8 = np.mean([o == y for o, (_, y) in zip(out8, data)])
    acc32 = np.mean([o == y for o, (_, y) in zip(out32, data)])
    assert acc8 >= 0.995, (acc8, acc32)
    assert np.mean([a == b for a, b in zip(out8, out32)]) >= 0.995

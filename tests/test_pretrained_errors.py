"""pt.from_pretrained on broken or unsupported folders: every problem raises a clear
exception naming it, never a silently different model. No torch needed (except the
one test that reads a real pytorch_model.bin); the folders are small BERT and
Marian models written by hand in HF layout (hf_folders.py).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import pytransformer as pt
from hf_folders import bert_folder, marian_folder, write_folder


@pytest.fixture
def bert(tmp_path, rng):
    """(folder, config, weights) of a valid small BERT."""
    return bert_folder(tmp_path / "bert", rng)


@pytest.fixture
def marian(tmp_path, rng):
    return marian_folder(tmp_path / "marian", rng)


def rewrite(folder, config=None, weights=None):
    """Replace the folder's config.json and/or model.safetensors."""
    from safetensors.numpy import save_file

    if config is not None:
        write_folder(folder, config, None)
    if weights is not None:
        save_file(weights, os.path.join(folder, "model.safetensors"))


def test_valid_folders_load(bert, marian):
    """The baselines every other test breaks in one way."""
    model = pt.from_pretrained(bert[0])
    assert isinstance(model, pt.EncoderModel)
    assert model.encode(np.array([[1, 2, 3]])).shape == (1, 3, 36)
    model = pt.from_pretrained(marian[0])
    assert isinstance(model, pt.Transformer)
    assert model.generation_defaults == {"forced_eos": True}
    assert len(model.generate(np.array([[3, 4, 0]]), max_length=5)[0].sequences[0]) <= 5


# ---------------------------------------------------------------------------
# The folder and config.json
# ---------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        pt.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        pt.from_pretrained(str(missing))


def test_a_file_is_not_a_folder(bert):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pt.from_pretrained(os.path.join(bert[0], "model.safetensors"))


def test_missing_config_json(bert):
    os.remove(os.path.join(bert[0], "config.json"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        pt.from_pretrained(bert[0])


@pytest.mark.parametrize("text", ["", "{", "{'model_type': 'bert'}", "model_type: bert", "\x00\x01"])
def test_config_json_not_json(bert, text):
    with open(os.path.join(bert[0], "config.json"), "w") as f:
        f.write(text)
    with pytest.raises(ValueError, match="not valid JSON") as info:
        pt.from_pretrained(bert[0])
    assert "config.json" in str(info.value)


@pytest.mark.parametrize("value", [[], ["bert"], "bert", 3, None, True])
def test_config_json_not_an_object(bert, value):
    with open(os.path.join(bert[0], "config.json"), "w") as f:
        json.dump(value, f)
    with pytest.raises(ValueError, match="JSON object"):
        pt.from_pretrained(bert[0])


@pytest.mark.parametrize("model_type", ["gpt2", "roberta", "t5", "BERT", "", None, 3])
def test_unknown_model_type(bert, model_type):
    folder, config, _ = bert
    rewrite(folder, dict(config, model_type=model_type))
    with pytest.raises(ValueError, match="model_type") as info:
        pt.from_pretrained(folder)
    assert repr(model_type) in str(info.value)
    assert "bert" in str(info.value) and "marian" in str(info.value)   # says what is supported


def test_missing_model_type(bert):
    folder, config, _ = bert
    rewrite(folder, {k: v for k, v in config.items() if k != "model_type"})
    with pytest.raises(ValueError, match="model_type"):
        pt.from_pretrained(folder)


@pytest.mark.parametrize("key", ["hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
                                 "vocab_size", "max_position_embeddings"])
def test_bert_required_keys(bert, key):
    folder, config, _ = bert
    rewrite(folder, {k: v for k, v in config.items() if k != key})
    with pytest.raises(ValueError, match=key):
        pt.from_pretrained(folder)


@pytest.mark.parametrize("value", ["36", 36.0, True, None])
def test_bert_keys_must_be_ints(bert, value):
    folder, config, _ = bert
    rewrite(folder, dict(config, hidden_size=value))
    with pytest.raises(ValueError, match="hidden_size"):
        pt.from_pretrained(folder)


@pytest.mark.parametrize("key", ["d_model", "encoder_attention_heads", "encoder_ffn_dim", "encoder_layers",
                                 "decoder_layers", "vocab_size", "max_position_embeddings"])
def test_marian_required_keys(marian, key):
    folder, config, _ = marian
    rewrite(folder, {k: v for k, v in config.items() if k != key})
    with pytest.raises(ValueError, match=key):
        pt.from_pretrained(folder)


# ---------------------------------------------------------------------------
# Options pytransformer does not implement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key,value,words", [
    ("hidden_act", "gelu_new", ["hidden_act", "gelu_new"]),
    ("hidden_act", "gelu_fast", ["hidden_act", "gelu_fast"]),
    ("hidden_act", "tanh", ["hidden_act", "tanh"]),
    ("position_embedding_type", "relative_key", ["position_embedding_type", "relative_key"]),
    ("position_embedding_type", "relative_key_query", ["position_embedding_type", "relative_key_query"]),
    ("is_decoder", True, ["decoder"]),
    ("add_cross_attention", True, ["cross_attention"]),
    ("num_attention_heads", 5, ["num_attention_heads", "hidden_size"]),
])
def test_bert_unsupported_options(bert, key, value, words):
    folder, config, _ = bert
    rewrite(folder, dict(config, **{key: value}))
    with pytest.raises(ValueError) as info:
        pt.from_pretrained(folder)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("overrides,words", [
    (dict(activation_function="tanh"), ["activation_function", "tanh"]),
    (dict(activation_function="gelu_new"), ["activation_function", "gelu_new"]),
    (dict(normalize_before=True), ["normalize_before"]),
    (dict(add_final_layer_norm=True), ["add_final_layer_norm"]),
    (dict(decoder_attention_heads=8), ["head", "4", "8"]),
    (dict(decoder_ffn_dim=64), ["FFN", "48", "64"]),
    (dict(eos_token_id=[0, 1]), ["eos_token_id"]),
])
def test_marian_unsupported_options(marian, overrides, words):
    folder, config, _ = marian
    rewrite(folder, dict(config, **overrides))
    with pytest.raises(ValueError) as info:
        pt.from_pretrained(folder)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_supported_option_spellings(bert, marian):
    """Values transformers writes for supported options still load."""
    folder, config, _ = bert
    rewrite(folder, dict(config, position_embedding_type="absolute", is_decoder=False, add_cross_attention=False))
    pt.from_pretrained(folder)
    folder, config, _ = marian
    rewrite(folder, dict(config, eos_token_id=[0], normalize_before=False))
    assert pt.from_pretrained(folder).config.eos_id == 0


# ---------------------------------------------------------------------------
# Weight files
# ---------------------------------------------------------------------------


def test_missing_model_safetensors(bert):
    os.remove(os.path.join(bert[0], "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        pt.from_pretrained(bert[0])


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "empty", "header_only", "bad_header_json"])
def test_corrupt_safetensors(bert, damage):
    file = os.path.join(bert[0], "model.safetensors")
    data = open(file, "rb").read()
    if damage == "random_bytes":
        data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "header_only":
        n = int.from_bytes(data[:8], "little")
        data = data[: 8 + n]
    elif damage == "bad_header_json":
        n = int.from_bytes(data[:8], "little")
        data = data[:8] + b"{" * n + data[8 + n:]
    with open(file, "wb") as f:
        f.write(data)
    with pytest.raises(ValueError, match="safetensors") as info:
        pt.from_pretrained(bert[0])
    assert "model.safetensors" in str(info.value)


def test_sharded_index_with_missing_shard(bert):
    folder, config, weights = bert
    os.remove(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {k: "model-00001-of-00001.safetensors" for k in weights}}, f)
    with pytest.raises((ValueError, FileNotFoundError), match="model-00001-of-00001.safetensors"):
        pt.from_pretrained(folder)


@pytest.mark.parametrize("name", ["encoder.layer.1.output.dense.bias", "embeddings.word_embeddings.weight",
                                  "encoder.layer.0.attention.self.key.weight",
                                  "embeddings.token_type_embeddings.weight",
                                  "encoder.layer.1.output.LayerNorm.weight",
                                  "embeddings.LayerNorm.bias"])
def test_bert_missing_weight(bert, name):
    """Named as in the checkpoint (LayerNorm.weight / .bias, not the TF-era gamma / beta
    spellings the loader also accepts)."""
    folder, config, weights = bert
    del weights[name]
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    assert f"missing '{name}'" in str(info.value), str(info.value)


@pytest.mark.parametrize("name", ["model.decoder.layers.0.encoder_attn.k_proj.weight", "model.shared.weight",
                                  "model.encoder.layers.1.final_layer_norm.bias"])
def test_marian_missing_weight(marian, name):
    folder, config, weights = marian
    del weights[name]
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError, match=name.replace(".", r"\.")):
        pt.from_pretrained(folder)


def test_marian_separate_vocab_and_untied_head_need_their_tables(tmp_path, rng):
    folder, config, weights = marian_folder(tmp_path / "m", rng, share_encoder_decoder_embeddings=False,
                                            decoder_vocab_size=30, pad_token_id=29, decoder_start_token_id=29,
                                            tie_word_embeddings=False)
    model = pt.from_pretrained(folder)
    assert (model.config.src_vocab_size, model.config.tgt_vocab_size) == (40, 30)
    for name in ("model.decoder.embed_tokens.weight", "lm_head.weight"):
        broken = {k: v for k, v in weights.items() if k != name}
        rewrite(folder, weights=broken)
        with pytest.raises(pt.WeightsError, match=name.replace(".", r"\.")):
            pt.from_pretrained(folder)


@pytest.mark.parametrize("name,shape", [("encoder.layer.2.attention.self.query.weight", (36, 36)),
                                        ("embeddings.extra_norm.weight", (36,)),
                                        ("classifier.weight", (2, 36))])
def test_bert_unexpected_weight(bert, name, shape):
    folder, config, weights = bert
    weights[name] = np.ones(shape, np.float32)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    assert isinstance(info.value, ValueError)
    assert any(name in p for p in info.value.problems), info.value.problems
    assert f"'{name}'" in str(info.value)


@pytest.mark.parametrize("prefixed", [False, True], ids=["plain_plus_prefixed", "prefixed_plus_plain"])
def test_bert_prefix_collision(bert, prefixed):
    """A checkpoint holding one tensor both with and without the "bert." prefix is
    ambiguous: a WeightsError naming the duplicate, not one copy silently winning."""
    folder, config, weights = bert
    name = "encoder.layer.0.attention.self.query.weight"
    stored = {("bert." + k if prefixed else k): v for k, v in weights.items()}
    stray = name if prefixed else "bert." + name
    stored[stray] = np.ones((36, 36), np.float32)
    rewrite(folder, weights=stored)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    assert name in str(info.value)


@pytest.mark.parametrize("name", ["model.encoder.layers.2.fc1.weight", "model.decoder.layer_norm.weight",
                                  "model.encoder.layernorm_embedding.weight"])
def test_marian_unexpected_weight(marian, name):
    folder, config, weights = marian
    weights[name] = np.ones((32,), np.float32)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError, match=name.replace(".", r"\.")):
        pt.from_pretrained(folder)


def test_ignored_weights_are_only_the_known_ones(bert, marian):
    """The pooler, pre-training heads, position_ids and Marian's embed_positions /
    tied copies are skipped: the models load."""
    folder, config, weights = bert
    E = config["hidden_size"]
    rewrite(folder, weights={**weights, "pooler.dense.weight": np.eye(E, dtype=np.float32),
                             "pooler.dense.bias": np.zeros(E, np.float32),
                             "cls.predictions.bias": np.zeros(config["vocab_size"], np.float32)})
    plain = pt.from_pretrained(folder)
    assert isinstance(plain, pt.EncoderModel)
    assert set(plain.state_dict()) == set(pt.weights.expected_encoder_weight_shapes(plain.config))
    folder, config, weights = marian
    E = config["d_model"]
    rewrite(folder, weights={**weights, "model.encoder.embed_positions.weight": np.zeros((64, E), np.float32),
                             "model.decoder.embed_positions.weight": np.zeros((64, E), np.float32),
                             "model.encoder.embed_tokens.weight": weights["model.shared.weight"],
                             "model.decoder.embed_tokens.weight": weights["model.shared.weight"],
                             "lm_head.weight": weights["model.shared.weight"]})
    mt = pt.from_pretrained(folder)
    assert isinstance(mt, pt.Transformer)
    np.testing.assert_array_equal(mt.state_dict()["src_embed.weight"], weights["model.shared.weight"])


def _set(weights, name, shape):
    weights[name] = np.ones(shape, np.float32)


@pytest.mark.parametrize("name,shape", [
    ("encoder.layer.0.intermediate.dense.weight", (53, 36)),
    ("embeddings.word_embeddings.weight", (51, 36)),
    ("embeddings.position_embeddings.weight", (39, 36)),
    ("encoder.layer.1.output.LayerNorm.weight", (35,)),
    ("encoder.layer.0.attention.self.query.weight", (37, 36)),
    ("encoder.layer.0.attention.self.query.weight", (36, 37)),
    ("encoder.layer.0.attention.self.value.bias", (37,)),
    ("encoder.layer.1.attention.output.dense.weight", (36, 36, 1)),
])
def test_bert_mismatched_shapes(bert, name, shape):
    """A WeightsError (not a numpy error from inside the loader) about the shape."""
    folder, config, weights = bert
    _set(weights, name, shape)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    msg = str(info.value)
    assert "shape" in msg and "expected" in msg, msg


@pytest.mark.parametrize("name,shape", [
    ("model.encoder.layers.0.fc1.weight", (49, 32)),
    ("model.shared.weight", (41, 32)),
    ("final_logits_bias", (1, 41)),
    ("model.decoder.layers.1.encoder_attn.q_proj.weight", (32, 33)),
    ("model.decoder.layers.1.self_attn.k_proj.bias", (31,)),
])
def test_marian_mismatched_shapes(marian, name, shape):
    folder, config, weights = marian
    _set(weights, name, shape)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    assert "shape" in str(info.value), str(info.value)


@pytest.mark.parametrize("name,shape", [
    ("encoder.layer.0.intermediate.dense.weight", (53, 36)),
    ("embeddings.word_embeddings.weight", (51, 36)),
    ("encoder.layer.0.attention.self.query.weight", (37, 36)),
])
def test_shape_errors_name_the_checkpoint_tensor(bert, name, shape):
    """The message names the tensor as the checkpoint does (what the user can look
    up), not only pytransformer's internal name."""
    folder, config, weights = bert
    _set(weights, name, shape)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    assert name in str(info.value), str(info.value)


def test_non_float_and_non_finite_weights(bert):
    folder, config, weights = bert
    good = dict(weights)
    weights["encoder.layer.0.output.dense.bias"] = np.ones(36, np.int32)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError, match="dtype"):
        pt.from_pretrained(folder)
    weights = dict(good)
    weights["encoder.layer.0.output.dense.bias"] = good["encoder.layer.0.output.dense.bias"].copy()
    weights["encoder.layer.0.output.dense.bias"][3] = np.nan
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError, match="non-finite"):
        pt.from_pretrained(folder)


def test_several_problems_are_listed_at_once(bert):
    folder, config, weights = bert
    weights["classifier.weight"] = np.ones((2, 36), np.float32)
    weights["classifier.bias"] = np.ones(2, np.float32)
    rewrite(folder, weights=weights)
    with pytest.raises(pt.WeightsError) as info:
        pt.from_pretrained(folder)
    assert len(info.value.problems) == 2
    assert "classifier.weight" in str(info.value) and "classifier.bias" in str(info.value)


# ---------------------------------------------------------------------------
# pytorch_model.bin
# ---------------------------------------------------------------------------


def _bin_only(folder):
    os.remove(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "pytorch_model.bin"), "wb") as f:
        f.write(b"PK\x03\x04 not read without torch")


def test_pytorch_model_bin_without_torch_says_how_to_convert(bert, monkeypatch):
    folder = bert[0]
    _bin_only(folder)
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch -> ImportError
    with pytest.raises(ValueError) as info:
        pt.from_pretrained(folder)
    msg = str(info.value)
    assert "pytorch_model.bin" in msg and "torch" in msg
    assert "safetensors" in msg and "save_file" in msg and "model.safetensors" in msg   # the conversion


def test_pytorch_model_bin_with_torch_loads(tmp_path, rng):
    torch = pytest.importorskip("torch")
    folder, config, weights = bert_folder(tmp_path / "bert", rng)
    ids = np.array([[4, 5, 6, 7], [8, 9, 0, 0]])
    expected = pt.from_pretrained(folder).encode(ids, [4, 2])
    os.remove(os.path.join(folder, "model.safetensors"))
    torch.save({"bert." + k: torch.from_numpy(v) for k, v in weights.items()},
               os.path.join(folder, "pytorch_model.bin"))
    got = pt.from_pretrained(folder).encode(ids, [4, 2])
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1, :2], expected[1, :2])
    # safetensors wins when both are there
    rewrite(folder, weights={k: v * 0 for k, v in weights.items()})
    assert not np.allclose(pt.from_pretrained(folder).encode(ids, [4, 2])[0], expected[0])


def test_tokenizer_json_without_tokenizers_package(bert, monkeypatch):
    folder = bert[0]
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write("{}")
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    model = pt.from_pretrained(folder)          # loads: encode works without a tokenizer
    assert model.encode(np.array([[1, 2]])).shape == (1, 2, 36)
    with pytest.raises(RuntimeError, match="pip install tokenizers"):
        model.embed(["hello"])

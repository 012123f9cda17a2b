"""Loading hostile or broken files (issue 11): ``pt.from_pretrained`` folders and
``pt.Transformer.load`` files whose config values, JSON files, shard names, sizes or
safetensors bytes are wrong must raise a ValueError naming the file and the key (or
tensor, or shard), never a ZeroDivisionError / TypeError / AttributeError from deep
inside, a raw safetensors exception, a huge allocation or a read outside the folder.

bfloat16 and float16 checkpoints load, widened to float32 exactly: checked bitwise
against an independent widening (numpy bit masking; torch ``.float()`` when torch is
installed) and, for BERT and Marian folders saved by ``transformers`` in bfloat16 /
float16, against ``transformers``' own float32 upcast of the same folder.

The small HF folders come from hf_folders.py (numpy + safetensors only).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytransformer as pt  # noqa: E402
from pytransformer import config as pt_config  # noqa: E402
from hf_folders import BERT_CONFIG, bert_folder, bert_reference, marian_folder, write_folder  # noqa: E402
from model_utils import random_weights, small_config  # noqa: E402

INT32_MAX = 2 ** 31 - 1


def _id(value):
    """A short test id (ints of thousands of digits cannot even be printed)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 12:
        return f"{'-' if value < 0 else ''}2**{value.bit_length()}ish"
    return repr(value)[:24]


@pytest.fixture
def bert(tmp_path, rng):
    return bert_folder(tmp_path / "bert", rng)


@pytest.fixture
def marian(tmp_path, rng):
    return marian_folder(tmp_path / "marian", rng)


def _config(folder, **changes):
    """Rewrite config.json with ``changes`` (a value of ... deletes the key)."""
    file = os.path.join(folder, "config.json")
    with open(file, encoding="utf-8") as f:
        data = json.load(f)
    for k, v in changes.items():
        if v is ...:
            data.pop(k, None)
        else:
            data[k] = v
    write_folder(folder, data, None)
    return file


def _write(file, text):
    os.makedirs(os.path.dirname(file), exist_ok=True)
    with open(file, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)
    return file


def _refused(folder, *words, exc=ValueError):
    """from_pretrained(folder) raises exactly ``exc`` (not a subclass such as
    WeightsError unless asked) whose message holds every word."""
    with pytest.raises(exc) as info:
        pt.from_pretrained(folder)
    msg = str(info.value)
    for w in words:
        assert str(w) in msg, (w, msg)
    return info.value


# ---------------------------------------------------------------------------
# 1 + 4. Sizes and types of config.json values
# ---------------------------------------------------------------------------

BAD_SIZES = [0, -1, -36, 2.5, 36.0, "36", "abc", True, False, [36], {"n": 36}, 2 ** 31, 2 ** 70, 10 ** 400]
BERT_SIZE_KEYS = ["hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size",
                  "max_position_embeddings"]
MARIAN_SIZE_KEYS = ["d_model", "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim",
                    "decoder_ffn_dim", "encoder_layers", "decoder_layers", "vocab_size", "max_position_embeddings"]


def test_bert_zero_attention_heads(bert):
    """Was a ZeroDivisionError (hidden_size % 0)."""
    file = _config(bert[0], num_attention_heads=0)
    _refused(bert[0], "num_attention_heads", file)


@pytest.mark.parametrize("value", BAD_SIZES, ids=_id)
@pytest.mark.parametrize("key", BERT_SIZE_KEYS)
def test_bert_bad_sizes(bert, key, value):
    file = _config(bert[0], **{key: value})
    _refused(bert[0], repr(key), file)


@pytest.mark.parametrize("value", BAD_SIZES, ids=_id)
@pytest.mark.parametrize("key", MARIAN_SIZE_KEYS)
def test_marian_bad_sizes(marian, key, value):
    file = _config(marian[0], **{key: value})
    _refused(marian[0], repr(key), file)


@pytest.mark.parametrize("value", [0, -5, 2.0, "40", True, 2 ** 40])
def test_marian_bad_decoder_vocab_size(marian, value):
    file = _config(marian[0], share_encoder_decoder_embeddings=False, decoder_vocab_size=value)
    _refused(marian[0], "decoder_vocab_size", file)


@pytest.mark.parametrize("key,value", [
    ("type_vocab_size", -1), ("type_vocab_size", 2.0), ("type_vocab_size", "2"), ("type_vocab_size", 2 ** 40),
    ("layer_norm_eps", "abc"), ("layer_norm_eps", [1e-12]), ("layer_norm_eps", True), ("layer_norm_eps", -1e-12),
    ("layer_norm_eps", 1e39), ("layer_norm_eps", 10 ** 400), ("layer_norm_eps", {"eps": 1}),
    ("hidden_act", ["gelu"]), ("hidden_act", 3),
])
def test_bert_bad_optional_values(bert, key, value):
    """Was int("abc") / float("abc") without the key, int(2.0) silently, or a TypeError
    (an unhashable list looked up in the activations)."""
    file = _config(bert[0], **{key: value})
    _refused(bert[0], key, file)


@pytest.mark.parametrize("key,value", [
    ("pad_token_id", "x"), ("pad_token_id", -1), ("pad_token_id", 40), ("pad_token_id", 1.5),
    ("eos_token_id", "0"), ("eos_token_id", [0.0]), ("eos_token_id", 40), ("eos_token_id", -2),
    ("decoder_start_token_id", [39]), ("decoder_start_token_id", 2 ** 40),
    ("scale_embedding", "false"), ("share_encoder_decoder_embeddings", 1), ("tie_word_embeddings", "yes"),
    ("normalize_before", "no"), ("activation_function", ["swish"]),
])
def test_marian_bad_optional_values(marian, key, value):
    """Was a TypeError from TransformerConfig about pad_id, or bool("false") == True."""
    file = _config(marian[0], **{key: value})
    _refused(marian[0], key, file)


def test_marian_heads_must_divide_d_model(marian):
    file = _config(marian[0], encoder_attention_heads=5, decoder_attention_heads=5)
    _refused(marian[0], "encoder_attention_heads", "d_model", file)


@pytest.mark.parametrize("field,value", [
    ("nhead", 2 ** 70), ("max_length", 2 ** 70), ("d_model", 2 ** 40), ("src_vocab_size", 2 ** 31),
    ("tgt_vocab_size", 2 ** 63), ("num_encoder_layers", 2 ** 64), ("dim_feedforward", 10 ** 30),
    ("eos_id", 2 ** 40), ("d_model", -10 ** 5000), ("layer_norm_eps", 10 ** 400), ("embedding_scale", 10 ** 400),
    ("embedding_scale", -10 ** 39), ("layer_norm_eps", 10 ** 39),
], ids=_id)
def test_config_values_beyond_the_cpp_types(field, value):
    """The C++ side reads sizes as int64 and ids / lengths as int32, eps and scale as
    float: values beyond them (and ints too large for a float) are a ValueError naming
    the field, not an OverflowError from math or a cast error from pybind11."""
    overrides = {field: value}
    if field == "tgt_vocab_size":
        overrides["src_vocab_size"] = 37
    with pytest.raises(ValueError, match=field):
        small_config(**overrides)


def test_config_largest_ints_are_accepted():
    c = small_config(max_length=INT32_MAX, src_vocab_size=INT32_MAX, layer_norm_eps=10 ** 38)
    assert c.max_length == INT32_MAX


@pytest.mark.parametrize("overrides,field", [
    (dict(src_vocab_size=INT32_MAX, d_model=INT32_MAX, nhead=1), "src_vocab_size"),
    (dict(max_length=INT32_MAX, d_model=INT32_MAX, nhead=1, src_vocab_size=3, tgt_vocab_size=3, eos_id=2),
     "max_length"),
    (dict(num_encoder_layers=INT32_MAX, d_model=2 ** 20, nhead=1, dim_feedforward=2 ** 20), "num_encoder_layers"),
])
def test_config_tables_must_fit_a_64_bit_size(overrides, field):
    """Each factor fits, their product in bytes does not: refused before the C++ side
    computes a wrapped-around size."""
    with pytest.raises(ValueError) as info:
        small_config(**overrides)
    assert field in str(info.value) and "bytes" in str(info.value)


# ---------------------------------------------------------------------------
# 2 + 3. JSON files: invalid JSON, wrong JSON types
# ---------------------------------------------------------------------------

BAD_JSON = ["", "{", "{'a': 1}", "[1, 2", "nul", "{\"a\": 1} trailing", b"\xff\xfe{}", "1" * 5000,
            "[" * 100_000]


def _st_files(folder, hidden=36):
    """A sentence-transformers layout in ``folder``: modules.json, 1_Pooling/config.json,
    sentence_bert_config.json."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    _write(os.path.join(folder, "modules.json"), json.dumps(modules))
    _write(os.path.join(folder, "1_Pooling", "config.json"),
           json.dumps({"word_embedding_dimension": hidden, "pooling_mode_cls_token": True}))
    _write(os.path.join(folder, "sentence_bert_config.json"), json.dumps({"max_seq_length": 32}))


def _sharded(folder, weights, index=None):
    """Replace model.safetensors by two shards and an index (or ``index`` as given)."""
    from safetensors.numpy import save_file

    os.remove(os.path.join(folder, "model.safetensors"))
    names = sorted(weights)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        file = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: weights[k] for k in part}, os.path.join(folder, file))
        weight_map.update({k: file for k in part})
    data = {"metadata": {"total_size": 0}, "weight_map": weight_map} if index is None else index
    return _write(os.path.join(folder, "model.safetensors.index.json"),
                  data if isinstance(data, str) else json.dumps(data))


def test_sentence_transformers_and_sharded_baselines(bert):
    """The layouts the next tests break load (cls pooling, max_seq_length 32, shards)."""
    folder, _, weights = bert
    _st_files(folder)
    _sharded(folder, weights)
    model = pt.from_pretrained(folder)
    assert model.max_seq_length == 32 and model.pooling.modes == ("cls",) and model.normalize is False


@pytest.mark.parametrize("text", BAD_JSON, ids=_id)
@pytest.mark.parametrize("which", ["config.json", "model.safetensors.index.json", "modules.json",
                                   "1_Pooling/config.json", "sentence_bert_config.json"])
def test_bert_folder_invalid_json(bert, which, text):
    """Every JSON file the loader reads: ValueError naming the file, chained to the
    JSON error (was a raw JSONDecodeError without the file for all but config.json)."""
    folder, _, weights = bert
    _st_files(folder)
    _sharded(folder, weights)
    file = _write(os.path.join(folder, which), text)
    err = _refused(folder, "not valid JSON", file)
    assert isinstance(err.__cause__, (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError))
    if text in ("", "{", "{'a': 1}", "nul"):
        assert isinstance(err.__cause__, json.JSONDecodeError)


@pytest.mark.parametrize("text", ["{", "", "[]", "\x00"])
def test_marian_generation_config_invalid_json(marian, text):
    file = _write(os.path.join(marian[0], "generation_config.json"), text)
    err = _refused(marian[0], "generation_config.json", file)
    if text != "[]":
        assert "not valid JSON" in str(err) and isinstance(err.__cause__, json.JSONDecodeError)


def test_tokenizer_json_invalid(bert):
    pytest.importorskip("tokenizers")
    file = _write(os.path.join(bert[0], "tokenizer.json"), "{ not json")
    err = _refused(bert[0], file)
    assert err.__cause__ is not None


@pytest.mark.parametrize("index,words", [
    ([], ["JSON object", "array"]),
    (["model-00001-of-00002.safetensors"], ["JSON object"]),
    ("\"weight_map\"", ["JSON object", "string"]),
    ({}, ["weight_map", "missing"]),
    ({"weight_map": ["model-00001-of-00002.safetensors"]}, ["weight_map"]),
    ({"weight_map": "model-00001-of-00002.safetensors"}, ["weight_map"]),
    ({"weight_map": None}, ["weight_map"]),
    ({"weight_map": {}}, ["weight_map", "empty"]),
    ({"weight_map": {"embeddings.word_embeddings.weight": 1}}, ["embeddings.word_embeddings.weight", "string"]),
    ({"weight_map": {"embeddings.word_embeddings.weight": None}}, ["embeddings.word_embeddings.weight"]),
    ({"weight_map": {"embeddings.word_embeddings.weight": ["model-00001-of-00002.safetensors"]}},
     ["embeddings.word_embeddings.weight"]),
    ({"weight_map": {"embeddings.word_embeddings.weight": {"file": "x"}}}, ["embeddings.word_embeddings.weight"]),
])
def test_index_json_wrong_types(bert, index, words):
    """Was AttributeError ('list' object has no attribute 'get') or TypeError (unhashable)."""
    folder, _, weights = bert
    file = _sharded(folder, weights, index)
    _refused(folder, file, *words)


def test_index_json_tensor_in_the_wrong_shard(bert):
    folder, _, weights = bert
    index = os.path.join(folder, "model.safetensors.index.json")
    _sharded(folder, weights)
    data = json.load(open(index))
    name = sorted(weights)[0]                      # in shard 1
    data["weight_map"][name] = "model-00002-of-00002.safetensors"
    _write(index, json.dumps(data))
    _refused(folder, name, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", index)
    data["weight_map"]["no.such.tensor"] = "model-00001-of-00002.safetensors"
    del data["weight_map"][name]
    _write(index, json.dumps(data))
    _refused(folder, "no.such.tensor", "no shard has it")


def test_index_json_tensor_in_two_shards(bert):
    """Was: the later shard's copy silently won."""
    from safetensors.numpy import save_file

    folder, _, weights = bert
    _sharded(folder, weights)
    name = sorted(weights)[0]
    shard2 = os.path.join(folder, "model-00002-of-00002.safetensors")
    save_file({**{k: weights[k] for k in sorted(weights)[1::2]}, name: weights[name] * 0}, shard2)
    _refused(folder, name, "two shards")


@pytest.mark.parametrize("modules,words", [
    ({"0": "Transformer"}, ["JSON array", "object"]),
    ("\"sentence_transformers.models.Pooling\"", ["JSON array"]),
    (["sentence_transformers.models.Transformer"], ["entry 0", "JSON object"]),
    ([None], ["entry 0"]),
    ([{"type": 3, "path": ""}], ["'type'", "entry 0"]),
    ([{"type": ["sentence_transformers.models.Pooling"], "path": "1_Pooling"}], ["'type'"]),
    ([{"type": "sentence_transformers.models.Pooling", "path": 1}], ["'path'"]),
    ([{"type": "sentence_transformers.models.Pooling", "path": None}], ["'path'"]),
])
def test_modules_json_wrong_types(bert, modules, words):
    """Was AttributeError ('str' object has no attribute 'get') / TypeError."""
    folder = bert[0]
    _st_files(folder)
    file = _write(os.path.join(folder, "modules.json"), modules if isinstance(modules, str) else json.dumps(modules))
    _refused(folder, file, *words)


@pytest.mark.parametrize("pooling,words", [
    (["pooling_mode_cls_token"], ["JSON object"]),
    ({"pooling_mode": 3}, ["pooling_mode"]),
    ({"pooling_mode": ["mean", ["max"]]}, ["pooling_mode"]),
    ({"pooling_mode": {"mean": True}}, ["pooling_mode"]),
    ({"pooling_mode_mean_tokens": "false", "pooling_mode_cls_token": True}, ["pooling_mode_mean_tokens"]),
    ({"pooling_mode_cls_token": 1}, ["pooling_mode_cls_token"]),
])
def test_pooling_config_wrong_types(bert, pooling, words):
    """Was a TypeError (unhashable list) or a string "false" read as true (mean
    pooling added: a silently different model)."""
    folder = bert[0]
    _st_files(folder)
    file = _write(os.path.join(folder, "1_Pooling", "config.json"), json.dumps(pooling))
    _refused(folder, file, *words)


@pytest.mark.parametrize("gen,key", [
    ([], "generation_config.json"), ({"num_beams": "4"}, "num_beams"), ({"num_beams": 2.5}, "num_beams"),
    ({"num_beams": 0}, "num_beams"), ({"max_length": "20"}, "max_length"), ({"max_length": -3}, "max_length"),
    ({"length_penalty": "1.0"}, "length_penalty"), ({"length_penalty": float("inf")}, "length_penalty"),
    ({"bad_words_ids": 39}, "bad_words_ids"), ({"bad_words_ids": [39]}, "bad_words_ids"),
    ({"bad_words_ids": [["39"]]}, "bad_words_ids"), ({"bad_words_ids": [[40]]}, "bad_words_ids"),
    ({"bad_words_ids": [[-1]]}, "bad_words_ids"), ({"forced_eos_token_id": "0"}, "forced_eos_token_id"),
    ({"forced_eos_token_id": 5}, "forced_eos_token_id"),
])
def test_marian_generation_config_wrong_types(marian, gen, key):
    """Was int("4") / int(2.5) / a TypeError on b[0], or suppress_tokens the C++ side
    could not convert; a forced EOS other than eos_token_id was silently forced as
    eos_token_id."""
    file = _write(os.path.join(marian[0], "generation_config.json"), json.dumps(gen))
    _refused(marian[0], key, file)


def test_marian_generation_config_values_in_config_json_name_config_json(marian):
    file = _config(marian[0], num_beams="six")
    _refused(marian[0], "num_beams", file)


def test_marian_generation_config_good_values(marian):
    _write(os.path.join(marian[0], "generation_config.json"),
           json.dumps({"num_beams": 3, "max_length": 10 ** 30, "length_penalty": 2, "bad_words_ids": [[39], [5, 6]],
                       "forced_eos_token_id": [0]}))
    with pytest.warns(UserWarning, match=r"bad_words_ids of several tokens \[\[5, 6\]\]"):
        model = pt.from_pretrained(marian[0])
    assert model.generation_defaults == {"beam_size": 3, "max_length": 64, "length_penalty": 2.0,
                                         "suppress_tokens": [39], "forced_eos": True}


# ---------------------------------------------------------------------------
# 5. sentence_bert_config.json max_seq_length
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 0, 41, 10_000, 2 ** 70, 2.5, 32.0, "32", True, [32], {"n": 32}])
def test_max_seq_length_refused(bert, value):
    """max_position_embeddings is 40. Was: -1 kept (truncation to -1 tokens at embed),
    0 / False silently meaning "the model's maximum", 41+ silently clamped, a float or
    a string failing later in min()."""
    folder = bert[0]
    _st_files(folder)
    file = _write(os.path.join(folder, "sentence_bert_config.json"), json.dumps({"max_seq_length": value}))
    _refused(folder, "max_seq_length", file)


@pytest.mark.parametrize("value,expected", [(1, 1), (40, 40), (None, 40)])
def test_max_seq_length_accepted(bert, value, expected):
    folder = bert[0]
    _st_files(folder)
    _write(os.path.join(folder, "sentence_bert_config.json"), json.dumps({"max_seq_length": value}))
    assert pt.from_pretrained(folder).max_seq_length == expected


@pytest.mark.parametrize("text", ["[32]", "32", "null"])
def test_sentence_bert_config_not_an_object(bert, text):
    folder = bert[0]
    _st_files(folder)
    file = _write(os.path.join(folder, "sentence_bert_config.json"), text)
    _refused(folder, file, "JSON object")


# ---------------------------------------------------------------------------
# 6. Shard and module paths that leave the folder
# ---------------------------------------------------------------------------


def _one_shard_index(folder, weights, shard):
    os.remove(os.path.join(folder, "model.safetensors"))
    return _write(os.path.join(folder, "model.safetensors.index.json"),
                  json.dumps({"weight_map": {k: shard for k in weights}}))


def _outside_copy(tmp_path, weights):
    """A valid shard holding every weight, outside the model folder."""
    from safetensors.numpy import save_file

    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    file = outside / "stolen.safetensors"
    save_file(weights, str(file))
    return file


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "nested_dotdot", "symlink_out", "symlinked_dir_out",
                                  "backslash_dotdot", "empty", "nul"])
def test_shards_outside_the_folder_are_refused(bert, tmp_path, kind):
    """Each name points at a real, valid shard outside the folder (so refusing is not
    "file not found"). Was: read."""
    folder, _, weights = bert
    outside = _outside_copy(tmp_path, weights)
    if kind == "absolute":
        shard = str(outside)
    elif kind == "dotdot":
        shard = "../outside/stolen.safetensors"
    elif kind == "nested_dotdot":
        os.makedirs(os.path.join(folder, "sub"))
        shard = "sub/../../outside/stolen.safetensors"
    elif kind == "symlink_out":
        shard = "model-00001-of-00001.safetensors"
        os.symlink(outside, os.path.join(folder, shard))
    elif kind == "symlinked_dir_out":
        os.symlink(outside.parent / "outside", os.path.join(folder, "shards"))
        shard = "shards/stolen.safetensors"
    elif kind == "backslash_dotdot":
        shard = "..\\outside\\stolen.safetensors"
    elif kind == "empty":
        shard = ""
    else:
        shard = "model\x00.safetensors"
    index = _one_shard_index(folder, weights, shard)
    _refused(folder, repr(shard), index)


def test_shards_inside_the_folder_load(bert, tmp_path, rng):
    """Sub-folders, symlinks within the folder and a Hugging Face cache snapshot
    (shards are links to ../../blobs) are fine."""
    from safetensors.numpy import save_file

    folder, config, weights = bert
    ids = np.array([[4, 5, 6, 7]])
    expected = pt.from_pretrained(folder).encode(ids)
    os.makedirs(os.path.join(folder, "sub"))
    save_file(weights, os.path.join(folder, "sub", "all.safetensors"))
    _one_shard_index(folder, weights, "sub/all.safetensors")
    np.testing.assert_array_equal(pt.from_pretrained(folder).encode(ids), expected)
    os.symlink(os.path.join(folder, "sub", "all.safetensors"), os.path.join(folder, "link.safetensors"))
    _write(os.path.join(folder, "model.safetensors.index.json"),
           json.dumps({"weight_map": {k: "link.safetensors" for k in weights}}))
    np.testing.assert_array_equal(pt.from_pretrained(folder).encode(ids), expected)
    # models--org--name/snapshots/<rev>/ -> ../../blobs/<hash>, as huggingface_hub lays out its cache
    repo = tmp_path / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(weights, str(repo / "blobs" / "deadbeef"))
    os.symlink("../../blobs/deadbeef", snapshot / "model-00001-of-00001.safetensors")
    write_folder(snapshot, config, None)
    _write(str(snapshot / "model.safetensors.index.json"),
           json.dumps({"weight_map": {k: "model-00001-of-00001.safetensors" for k in weights}}))
    np.testing.assert_array_equal(pt.from_pretrained(snapshot).encode(ids), expected)


@pytest.mark.parametrize("path", ["../outside", "/tmp", "1_Pooling/../../outside"])
def test_pooling_path_outside_the_folder_is_refused(bert, tmp_path, path):
    folder = bert[0]
    _st_files(folder)
    _write(str(tmp_path / "outside" / "config.json"), json.dumps({"pooling_mode_max_tokens": True}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"}]
    file = _write(os.path.join(folder, "modules.json"), json.dumps(modules))
    _refused(folder, file, "outside the model folder")


# ---------------------------------------------------------------------------
# 7. Sizes checked before anything is allocated
# ---------------------------------------------------------------------------


@pytest.fixture
def one_gib(monkeypatch):
    """This machine has 1 GiB of memory, as far as the loaders know."""
    monkeypatch.setattr(pt_config, "_physical_memory", lambda: 2 ** 30)
    return 2 ** 30


@pytest.fixture
def no_weight_reads(monkeypatch):
    """Reading tensors fails the test: the refusals must come first."""
    from pytransformer import weights as pt_weights

    def forbidden(self):
        raise AssertionError(f"tensors of {self.file} were read")

    monkeypatch.setattr(pt_weights._SafetensorsFile, "tensors", forbidden)


@pytest.mark.parametrize("changes,key,nbytes", [
    (dict(max_position_embeddings=2 ** 24), "max_position_embeddings", 4 * 2 ** 24 * 36),
    (dict(vocab_size=2 ** 24), "vocab_size", 4 * 2 ** 24 * 36),
    (dict(type_vocab_size=2 ** 24), "type_vocab_size", 4 * 2 ** 24 * 36),
    (dict(num_hidden_layers=10 ** 6), "num_hidden_layers", None),
    (dict(intermediate_size=2 ** 24), "intermediate_size", None),
    (dict(hidden_size=2 ** 16, num_attention_heads=1), "hidden_size", None),
])
def test_bert_sizes_beyond_memory(bert, one_gib, no_weight_reads, changes, key, nbytes):
    file = _config(bert[0], **changes)
    err = _refused(bert[0], key, file, "bytes", "physical memory", str(2 ** 30))
    if nbytes is not None:
        assert str(nbytes) in str(err)


@pytest.mark.parametrize("changes,key,nbytes", [
    (dict(max_position_embeddings=2 ** 24), "max_position_embeddings", 4 * 2 ** 24 * 32),
    (dict(vocab_size=2 ** 24), "vocab_size", 4 * 2 ** 24 * 32),
    (dict(encoder_layers=10 ** 6), "encoder_layers", None),
    (dict(decoder_layers=10 ** 6), "decoder_layers", None),
    (dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=2 ** 24), "decoder_vocab_size",
     4 * 2 ** 24 * 32),
])
def test_marian_sizes_beyond_memory(marian, one_gib, no_weight_reads, changes, key, nbytes):
    file = _config(marian[0], **changes)
    err = _refused(marian[0], key, file, "bytes", "physical memory")
    if nbytes is not None:
        assert str(nbytes) in str(err)


def test_sizes_beyond_any_machine(bert, marian, no_weight_reads):
    """Without patching: a 2**31-1 x 16384 position table (128 TiB) is refused here too."""
    file = _config(bert[0], max_position_embeddings=INT32_MAX, hidden_size=2 ** 14, num_attention_heads=4)
    _refused(bert[0], "max_position_embeddings", file, str(4 * INT32_MAX * 2 ** 14))
    file = _config(marian[0], max_position_embeddings=INT32_MAX, d_model=2 ** 14)
    _refused(marian[0], "max_position_embeddings", file, str(4 * INT32_MAX * 2 ** 14))


def test_sizes_within_memory_load(bert, one_gib):
    """The check is not too eager: the small folders load on a 1 GiB "machine"."""
    assert pt.from_pretrained(bert[0]).config.max_length == 40


def _save_with_config(path, weights, config_dict):
    from safetensors.numpy import save_file

    save_file(weights, str(path), metadata={"format": "pytransformer.Transformer", "config": json.dumps(config_dict)})
    return path


@pytest.mark.parametrize("field,value", [("max_length", 2 ** 24), ("src_vocab_size", 2 ** 24)])
def test_transformer_load_sizes_beyond_memory(rng, tmp_path, one_gib, no_weight_reads, field, value):
    config = small_config()
    path = _save_with_config(tmp_path / "big.safetensors", random_weights(config, rng),
                             {**config.to_dict(), field: value})
    with pytest.raises(ValueError) as info:
        pt.Transformer.load(path)
    msg = str(info.value)
    assert field in msg and str(4 * value * 24) in msg and str(path) in msg


@pytest.mark.parametrize("field,value", [("max_length", 2 ** 70), ("nhead", 2 ** 70), ("layer_norm_eps", 10 ** 400),
                                         ("d_model", "24"), ("pad_id", None)])
def test_transformer_load_bad_config_values(rng, tmp_path, field, value):
    """Was an OverflowError, a pybind11 cast error or a TypeError."""
    config = small_config()
    path = _save_with_config(tmp_path / "bad.safetensors", random_weights(config, rng),
                             {**config.to_dict(), field: value})
    with pytest.raises(ValueError) as info:
        pt.Transformer.load(path)
    assert field in str(info.value) and str(path) in str(info.value)


# Hand-made safetensors files: (header, data bytes) -> file bytes.
def _raw(header, data=b"", length=None):
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(blob) if length is None else length
    return n.to_bytes(8, "little") + blob + data


def _entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


F32_4 = np.arange(4, dtype="<f4").tobytes()
CORRUPT = {
    "empty": lambda good: b"",
    "seven_bytes": lambda good: good[:7],
    "truncated_half": lambda good: good[: len(good) // 2],
    "truncated_header": lambda good: good[: 8 + int.from_bytes(good[:8], "little") // 2],
    "one_byte_short": lambda good: good[:-1],
    "one_byte_long": lambda good: good + b"\0",
    "garbage_header": lambda good: good[:8] + b"\x93" * 32 + good[40:],
    "huge_header_length": lambda good: (2 ** 62).to_bytes(8, "little") + good[8:],
    "max_header_length": lambda good: (2 ** 64 - 1).to_bytes(8, "little") + good[8:],
    "zero_header_length": lambda good: (0).to_bytes(8, "little") + good[8:],
    "random_bytes": lambda good: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "header_not_object": lambda good: _raw([1, 2, 3]),
    "header_not_utf8": lambda good: _raw(b'{"a": "\xff"}'),
    "deep_header": lambda good: _raw(b"[" * 200_000),
    "unknown_dtype": lambda good: _raw({"w": _entry("F8_E4M3", [4], 0, 4)}, b"\0" * 4),
    "dtype_not_string": lambda good: _raw({"w": _entry(["F32"], [4], 0, 16)}, F32_4),
    "entry_not_object": lambda good: _raw({"w": [0, 16]}, F32_4),
    "negative_shape": lambda good: _raw({"w": _entry("F32", [-4], 0, 16)}, F32_4),
    "float_shape": lambda good: _raw({"w": _entry("F32", [4.0], 0, 16)}, F32_4),
    "huge_shape": lambda good: _raw({"w": _entry("F32", [2 ** 40, 2 ** 40], 0, 16)}, F32_4),
    "offsets_past_the_end": lambda good: _raw({"w": _entry("F32", [4], 0, 2 ** 40)}, F32_4),
    "offsets_backwards": lambda good: _raw({"w": _entry("F32", [4], 16, 0)}, F32_4),
    "offsets_negative": lambda good: _raw({"w": _entry("F32", [4], -16, 0)}, F32_4),
    "offsets_not_matching_shape": lambda good: _raw({"w": _entry("F32", [3], 0, 16)}, F32_4),
    "offsets_missing": lambda good: _raw({"w": {"dtype": "F32", "shape": [4]}}, F32_4),
    "overlapping": lambda good: _raw({"a": _entry("F32", [4], 0, 16), "b": _entry("F32", [2], 8, 16)}, F32_4),
    "gap": lambda good: _raw({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 12, 16)}, F32_4),
    "repeated_name": lambda good: b"",  # filled in below (json.dumps cannot repeat a key)
    "metadata_not_strings": lambda good: _raw({"__metadata__": {"format": 1}, "w": _entry("F32", [4], 0, 16)},
                                              F32_4),
    "metadata_not_object": lambda good: _raw({"__metadata__": ["format"], "w": _entry("F32", [4], 0, 16)}, F32_4),
}


def _corrupt(kind, good):
    if kind == "repeated_name":
        header = (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                  b'"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}')
        return _raw(header, F32_4)
    return CORRUPT[kind](good)


@pytest.fixture
def saved_model(rng, tmp_path):
    config = small_config()
    model = pt.Transformer(config, random_weights(config, rng))
    path = tmp_path / "good.safetensors"
    model.save(path)
    return model, path.read_bytes()


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_transformer_load_corrupt_safetensors(saved_model, tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(_corrupt(kind, saved_model[1]))
    with pytest.raises(ValueError) as info:
        pt.Transformer.load(path)
    assert type(info.value) is ValueError, type(info.value)
    assert str(path) in str(info.value) and "safetensors" in str(info.value)


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_from_pretrained_corrupt_safetensors(bert, kind):
    file = os.path.join(bert[0], "model.safetensors")
    with open(file, "rb") as f:
        good = f.read()
    _write(file, _corrupt(kind, good))
    err = _refused(bert[0], file, "safetensors")
    assert type(err) is ValueError, type(err)


def test_corrupt_shard_names_the_shard(bert):
    folder, _, weights = bert
    _sharded(folder, weights)
    shard = os.path.join(folder, "model-00002-of-00002.safetensors")
    with open(shard, "rb") as f:
        data = f.read()
    _write(shard, data[: len(data) // 2])
    _refused(folder, shard, "safetensors")


def test_safetensors_problems_name_the_tensor(tmp_path):
    path = _write(str(tmp_path / "x.safetensors"), _raw({"my.weight": _entry("F32", [3], 0, 16)}, F32_4))
    with pytest.raises(ValueError, match=r"my\.weight"):
        pt.Transformer.load(path)


def test_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="regular file"):
        pt.Transformer.load(fifo)       # would block forever in open() otherwise


def test_weights_that_do_not_fit_the_config_still_raise_weights_error(bert):
    """Consistent files with the wrong shapes are WeightsError, as before."""
    from safetensors.numpy import save_file

    folder, _, weights = bert
    save_file({**weights, "embeddings.word_embeddings.weight": np.ones((51, 36), np.float32)},
              os.path.join(folder, "model.safetensors"))
    _refused(folder, "embeddings.word_embeddings.weight", exc=pt.WeightsError)


# ---------------------------------------------------------------------------
# 8. bfloat16 and float16 checkpoints
# ---------------------------------------------------------------------------

SPECIAL_F32 = np.array([0.0, -0.0, 1.0, -1.0, 1e-40, -1e-41, 3.0e38, -3.0e38, np.inf, -np.inf, 1 / 3, np.pi],
                       np.float32)


def _bf16_file(path, arrays, metadata=None):
    """A safetensors file with BF16 tensors, written by hand: the bfloat16 bits of
    float32 values are their high 16 bits (truncation)."""
    header, data = {}, b""
    for name, a in arrays.items():
        bits = (np.ascontiguousarray(a, "<f4").view("<u4") >> 16).astype("<u2")
        header[name] = _entry("BF16", list(a.shape), len(data), len(data) + bits.nbytes)
        data += bits.tobytes()
    if metadata:
        header["__metadata__"] = metadata
    _write(str(path), _raw(header, data))


def _bf16_expected(a):
    """The float32 values bfloat16 holds: independent of the loader (mask, not shift)."""
    return (np.ascontiguousarray(a, np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def test_bfloat16_widening_is_exact_numpy(tmp_path, rng):
    values = np.concatenate([SPECIAL_F32, rng.standard_normal(500).astype(np.float32) * 10 ** rng.uniform(
        -30, 30, 500).astype(np.float32)]).reshape(2, -1)
    nan_bits = np.array([0x7FC00000, 0xFFC10000, 0x7F810000], np.uint32).view(np.float32)
    path = tmp_path / "bf16.safetensors"
    _bf16_file(path, {"a": values, "nan": nan_bits, "scalar": np.float32(2.5).reshape(()),
                      "empty": np.zeros((0, 3), np.float32)})
    got = pt.weights.read_safetensors(path)
    for name, src in (("a", values), ("nan", nan_bits), ("empty", np.zeros((0, 3), np.float32))):
        assert got[name].dtype == np.float32 and got[name].shape == src.shape
        np.testing.assert_array_equal(got[name].view(np.uint32), _bf16_expected(src).view(np.uint32))
    assert got["scalar"].shape == () and got["scalar"] == 2.5


def test_bfloat16_and_float16_match_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-40, 3.0e38, 65504.0, 6e-8])
    tensors = {}
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "f16")):
        tensors[name] = (torch.randn(37, 5, generator=g) * 100).to(dtype)
        tensors[name + "_specials"] = specials.to(dtype)
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    got = pt.weights.read_safetensors(path)
    for name, t in tensors.items():
        expected = t.float().numpy()
        widened = got[name].astype(np.float32)        # float16 stays float16 until check_weights
        assert widened.shape == expected.shape
        np.testing.assert_array_equal(widened.view(np.uint32), expected.view(np.uint32), err_msg=name)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_transformer_load_half_precision_file(rng, tmp_path, dtype):
    """A pytransformer file whose tensors were stored in bfloat16 / float16 (written
    by hand for bfloat16, by numpy for float16) loads to the float32 upcast."""
    from safetensors.numpy import save_file

    config = small_config()
    weights = random_weights(config, rng)
    meta = {"format": "pytransformer.Transformer", "config": config.to_json()}
    path = tmp_path / f"{dtype}.safetensors"
    if dtype == "bfloat16":
        _bf16_file(path, weights, meta)
        expected = {k: _bf16_expected(v) for k, v in weights.items()}
    else:
        save_file({k: v.astype(np.float16) for k, v in weights.items()}, str(path), metadata=meta)
        expected = {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()}
    model = pt.Transformer.load(path)
    sd = model.state_dict()
    for name, value in expected.items():
        np.testing.assert_array_equal(sd[name].view(np.uint32), value.view(np.uint32), err_msg=name)
    reference = pt.Transformer(config, expected)
    src = rng.integers(0, config.src_vocab_size, (2, 5))
    np.testing.assert_array_equal(model.encode(src), reference.encode(src))


def test_bert_folder_bf16_without_torch(tmp_path, rng):
    """A bfloat16 BERT folder written by hand: from_pretrained equals the float64 BERT
    reference on the float32 upcast weights."""
    config = dict(BERT_CONFIG, torch_dtype="bfloat16")
    from hf_folders import bert_weights

    weights = bert_weights(config, rng)
    folder = write_folder(os.fspath(tmp_path / "bf16"), config, None)
    _bf16_file(os.path.join(folder, "model.safetensors"), weights, {"format": "pt"})
    upcast = {k: _bf16_expected(v) for k, v in weights.items()}
    model = pt.from_pretrained(folder)
    np.testing.assert_array_equal(model.state_dict()["src_embed.weight"],
                                  upcast["embeddings.word_embeddings.weight"])
    ids = rng.integers(0, config["vocab_size"], (2, 9))
    np.testing.assert_allclose(model.encode(ids), bert_reference(config, upcast, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_bert_folder_saved_by_transformers_in_half_precision(tmp_path, dtype):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=24, type_vocab_size=2)
    hf = BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in hf.parameters():             # O(1) weights, so the hidden states vary
            p.copy_(torch.randn(p.shape) * (0.5 if p.ndim == 1 else 1.0 / np.sqrt(p.shape[-1])))
    folder = os.fspath(tmp_path / dtype)
    hf.to(getattr(torch, dtype)).save_pretrained(folder)
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16" if dtype == "bfloat16"
                                                                               else "F16"}
    # transformers' own float32 upcast of the folder
    reference = BertModel.from_pretrained(folder, dtype=torch.float32, add_pooling_layer=False).eval()
    assert reference.embeddings.word_embeddings.weight.dtype == torch.float32
    model = pt.from_pretrained(folder)
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["src_embed.weight"], reference.embeddings.word_embeddings.weight.detach().numpy())
    q = reference.encoder.layer[1].attention.self
    np.testing.assert_array_equal(sd["encoder.layers.1.self_attn.in_proj_weight"],
                                  torch.cat([q.query.weight, q.key.weight, q.value.weight]).detach().numpy())
    ids = np.random.default_rng(3).integers(0, 61, (3, 11))
    types = (np.arange(11)[None, :] >= 6).astype(np.int64).repeat(3, 0)
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids),
                             token_type_ids=torch.from_numpy(types)).last_hidden_state.numpy()
    assert expected.std() > 0.1
    np.testing.assert_allclose(model.encode(ids, token_type_ids=types), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_marian_folder_saved_by_transformers_in_half_precision(tmp_path, dtype):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(1)
    cfg = MarianConfig(vocab_size=45, decoder_vocab_size=45, d_model=32, encoder_layers=2, decoder_layers=2,
                       encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                       decoder_ffn_dim=48, activation_function="swish", max_position_embeddings=32,
                       scale_embedding=True, pad_token_id=44, eos_token_id=0, decoder_start_token_id=44,
                       forced_eos_token_id=0, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    hf = MarianMTModel(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "embed_positions" not in name:
                p.copy_(torch.randn(p.shape) * (0.3 if p.ndim == 1 else 1.0 / np.sqrt(p.shape[-1])))
    folder = os.fspath(tmp_path / dtype)
    hf.to(getattr(torch, dtype)).save_pretrained(folder)
    reference = MarianMTModel.from_pretrained(folder, dtype=torch.float32).eval()
    model = pt.from_pretrained(folder)
    np.testing.assert_array_equal(model.state_dict()["src_embed.weight"],
                                  reference.model.shared.weight.detach().numpy())
    rng = np.random.default_rng(4)
    ids = rng.integers(1, 44, (2, 7))
    ids[:, -1] = 0
    dec = rng.integers(0, 45, (2, 6))
    dec[:, 0] = 44
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids), decoder_input_ids=torch.from_numpy(dec)).logits.numpy()
    assert expected.std() > 0.1
    logits = model.decode(dec, model.encode(ids))
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)

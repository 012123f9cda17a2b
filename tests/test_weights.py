"""pytransformer.weights: the weight table (names and shapes for a config), weight checks and
conversions, and the C++ loader and exporter agreeing with the table."""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
from model_utils import random_weights, small_config
from pytransformer import _core


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


def test_encoder_weight_table_has_no_target_side():
    t = small_config(num_encoder_layers=2)
    enc = pt.weights.expected_encoder_weight_shapes(pt.EncoderConfig.from_transformer_config(t))
    assert enc == pt.weights.expected_encoder_weight_shapes(t)
    full = pt.weights.expected_weight_shapes(t)
    assert set(enc) < set(full)
    assert all(enc[k] == full[k] for k in enc)
    assert not [k for k in enc if k.startswith(("decoder.", "tgt_", "generator."))]
    assert {k for k in full if k.startswith("encoder.") or k.startswith("src_")} == set(enc)

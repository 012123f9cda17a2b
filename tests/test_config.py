"""pytransformer.TransformerConfig and EncoderConfig (config.py): defaults, validation, JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import pytransformer as pt
from model_utils import random_weights, small_config


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
    ("src_vocab_size", -1, ValueError), ("tgt_vocab_size", 0, ValueError), ("tgt_vocab_size", 2.0, TypeError),
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
# EncoderConfig: the encoder-only spec
# ---------------------------------------------------------------------------


def test_encoder_config_defaults_are_the_encoder_half_of_transformer_config():
    e, t = pt.EncoderConfig(), pt.TransformerConfig()
    assert e == pt.EncoderConfig.from_transformer_config(t)
    assert (e.num_layers, e.vocab_size) == (t.num_encoder_layers, t.src_vocab_size)
    assert not any(hasattr(e, f) for f in ("tgt_vocab_size", "num_decoder_layers", "bos_id", "eos_id",
                                           "tie_output", "share_embeddings"))


def test_encoder_config_round_trips():
    e = pt.EncoderConfig(d_model=36, nhead=3, num_layers=2, vocab_size=50, positional="learned",
                         type_vocab_size=2, embedding_norm=True, embedding_scale=1.0, max_length=40)
    assert pt.EncoderConfig.from_json(e.to_json()) == e
    assert pt.EncoderConfig.from_dict(e.to_dict()) == e
    with pytest.raises(ValueError, match=r"EncoderConfig: unknown field\(s\) \['tgt_vocab_size'\]"):
        pt.EncoderConfig.from_dict(dict(e.to_dict(), tgt_vocab_size=3))


@pytest.mark.parametrize("field,value,exc,message", [
    ("vocab_size", 0, ValueError, r"EncoderConfig\.vocab_size must be >= 1"),
    ("num_layers", -1, ValueError, r"EncoderConfig\.num_layers must be >= 0"),
    ("num_layers", 2 ** 40, ValueError, r"EncoderConfig\.num_layers must be <= 2147483647"),
    ("num_layers", 1.5, TypeError, r"EncoderConfig\.num_layers must be an int"),
    ("pad_id", 50, ValueError, r"EncoderConfig\.pad_id \(50\) must be < vocab_size \(50\)"),
    ("nhead", 5, ValueError, r"EncoderConfig: nhead \(5\) must divide d_model \(36\)"),
    ("positional", "rotary", ValueError, r"EncoderConfig\.positional must be one of"),
])
def test_encoder_config_validation_names_its_own_fields(field, value, exc, message):
    base = dict(d_model=36, nhead=3, num_layers=1, dim_feedforward=8, vocab_size=50, max_length=16)
    with pytest.raises(exc, match=message):
        pt.EncoderConfig(**dict(base, **{field: value}))


def test_encoder_model_takes_either_config(rng):
    """EncoderModel(EncoderConfig) and EncoderModel(TransformerConfig) (its encoder half) are
    the same model; the weights are the encoder's only."""
    t = small_config(num_decoder_layers=0)
    weights = {k: v for k, v in random_weights(t, rng).items()
               if k in pt.weights.expected_encoder_weight_shapes(t)}
    a = pt.EncoderModel(t, weights)
    b = pt.EncoderModel(pt.EncoderConfig.from_transformer_config(t), weights)
    assert isinstance(a.config, pt.EncoderConfig) and a.config == b.config
    ids = rng.integers(0, t.src_vocab_size, (2, 5))
    assert np.array_equal(a.encode(ids, [5, 3]), b.encode(ids, [5, 3]))
    model = pt.Transformer(t, random_weights(t, np.random.default_rng(1)) | weights)
    assert np.array_equal(a.encode(ids, [5, 3])[0], model.encode(ids, [5, 3])[0])
    with pytest.raises(TypeError, match="config must be an EncoderConfig"):
        pt.EncoderModel(t.to_dict(), weights)

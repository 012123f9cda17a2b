"""The torch family (families/torch.py): torch.nn.Transformer-style state dicts, as plain
numpy mappings (tests/test_model_torch.py runs real torch modules)."""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
from model_utils import random_weights, small_config


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

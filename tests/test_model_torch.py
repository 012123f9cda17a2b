"""The whole model against PyTorch: pytransformer.Transformer vs the textbook
``nn.Transformer`` model (see torch_models.py) with the same weights, on every ISA.

DESIGN.md: "a 6+6-layer Transformer-base: logits within 1e-4 absolute". Memory is
compared at real (non-padding) positions only (padding positions are unspecified),
logits at every target position (the decoder is causal; targets carry no padding).
Models are built inside each test, after the ``isa`` fixture switched kernels: a
model binds the kernels active at its construction.
"""

from __future__ import annotations

import numpy as np
import pytest

import pytransformer as pt
from model_utils import assert_close_valid, padded_ids

torch = pytest.importorskip("torch")

from torch_models import TorchTransformer, tutorial_masks, tutorial_seq2seq  # noqa: E402

ATOL = 1e-4


def check_parity(model, tm, src, lengths, tgt, what):
    """pytransformer vs the torch reference: memory (real positions), logits end to end
    (each side from its own memory), and logits from torch's memory (decode alone)."""
    t_memory = tm.encode(src, lengths)
    t_logits = tm.decode(tgt, t_memory, lengths)
    memory = model.encode(src, lengths)
    assert memory.dtype == np.float32 and memory.shape == t_memory.shape
    assert_close_valid(memory, t_memory, lengths, ATOL, f"{what}: memory")
    logits = model.decode(tgt, memory, lengths)
    assert logits.dtype == np.float32 and logits.shape == t_logits.shape
    assert_close_valid(logits, t_logits, None, ATOL, f"{what}: logits")
    assert_close_valid(model.decode(tgt, t_memory, lengths), t_logits, None, ATOL,
                       f"{what}: logits from torch's memory")


# ---------------------------------------------------------------------------
# Transformer-base (the paper's sizes, vocabulary 1000)
# ---------------------------------------------------------------------------

BASE = pt.TransformerConfig(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                            src_vocab_size=1000, tgt_vocab_size=1000, max_length=64)


@pytest.fixture(scope="module")
def base_case():
    """The torch model, its pytransformer weights, a padded batch and torch's outputs
    (built once: the 44M-parameter model takes seconds)."""
    tm = TorchTransformer(BASE, seed=1234)
    rng = np.random.default_rng(1234)
    lengths = np.array([11, 4, 8])
    src = padded_ids(rng, lengths, 11, BASE.src_vocab_size, BASE.pad_id)
    tgt = rng.integers(0, BASE.tgt_vocab_size, size=(3, 9))
    t_memory = tm.encode(src, lengths)
    t_logits = tm.decode(tgt, t_memory, lengths)
    return dict(weights=tm.pt_weights(), src=src, lengths=lengths, tgt=tgt, memory=t_memory, logits=t_logits)


def test_transformer_base(isa, base_case):
    c = base_case
    model = pt.Transformer(BASE, c["weights"])
    memory = model.encode(c["src"], c["lengths"])
    assert_close_valid(memory, c["memory"], c["lengths"], ATOL, f"Transformer-base memory ({isa})")
    logits = model.decode(c["tgt"], memory, c["lengths"])
    assert logits.shape == (3, 9, 1000)
    assert_close_valid(logits, c["logits"], None, ATOL, f"Transformer-base logits ({isa})")
    # one row, one target token (the single-row GEMM path of step-by-step decoding)
    one = model.decode(c["tgt"][1:2, :1], memory[1:2], c["lengths"][1:2])
    assert_close_valid(one, c["logits"][1:2, :1], None, ATOL, f"Transformer-base, one token ({isa})")


# ---------------------------------------------------------------------------
# Small and odd configurations, every option
# ---------------------------------------------------------------------------

ODD = dict(d_model=72, nhead=3, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=100,
           src_vocab_size=53, tgt_vocab_size=61, max_length=40)

VARIANTS = {
    "post_ln_relu_d72": dict(),
    "pre_ln_gelu_d72": dict(norm_first=True, activation="gelu"),
    "post_ln_gelu": dict(activation="gelu"),
    "pre_ln_relu": dict(norm_first=True),
    "one_layer_each_d30_h5": dict(d_model=30, nhead=5, num_encoder_layers=1, num_decoder_layers=1,
                                  dim_feedforward=17),
    "single_head_d7": dict(d_model=7, nhead=1, dim_feedforward=9),
    "head_dim_1": dict(d_model=4, nhead=4, dim_feedforward=6),
    "no_decoder_layers": dict(num_decoder_layers=0),
    "no_encoder_layers": dict(num_encoder_layers=0),
    "no_layers_pre_ln": dict(num_encoder_layers=0, num_decoder_layers=0, norm_first=True),
    "no_final_norm_post_ln": dict(final_norm=False),
    "no_final_norm_pre_ln": dict(final_norm=False, norm_first=True, activation="gelu"),
    "share_embeddings": dict(share_embeddings=True, tgt_vocab_size=53),
    "tie_output": dict(tie_output=True),
    "share_and_tie_no_bias": dict(share_embeddings=True, tie_output=True, output_bias=False, tgt_vocab_size=53),
    "no_output_bias": dict(output_bias=False),
    "embedding_scale_1": dict(embedding_scale=1.0),
    "embedding_scale_2.5_pre_ln": dict(embedding_scale=2.5, norm_first=True),
    "eps_1e-6_three_layers": dict(layer_norm_eps=1e-6, num_encoder_layers=3, num_decoder_layers=3,
                                  norm_first=True),
    "wide_ffn_d48": dict(d_model=48, nhead=6, dim_feedforward=257, activation="gelu"),
    "head_dim_128": dict(d_model=256, nhead=2, dim_feedforward=64, num_encoder_layers=1, num_decoder_layers=1),
    "eps_0": dict(layer_norm_eps=0.0),
    "negative_embedding_scale": dict(embedding_scale=-0.75, norm_first=True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant(isa, variant):
    config = pt.TransformerConfig(**{**ODD, **VARIANTS[variant]})
    tm = TorchTransformer(config, seed=len(variant))
    model = pt.Transformer(config, tm.pt_weights())
    rng = np.random.default_rng(len(variant))
    lengths = np.array([13, 6, 1, 10])
    src = padded_ids(rng, lengths, 13, config.src_vocab_size, config.pad_id)
    tgt = rng.integers(0, config.tgt_vocab_size, size=(4, 7))
    check_parity(model, tm, src, lengths, tgt, f"{variant} ({isa})")
    # no padding at all, and a single target token
    check_parity(model, tm, src[:2, :5], None, tgt[:2, :1], f"{variant}, unpadded ({isa})")
    check_parity(model, tm, src[1:2, :6], np.array([6]), tgt[1:2, :1], f"{variant}, one row ({isa})")


def test_longer_sequences(isa):
    """Sequences long enough for several attention tiles, padding in every row."""
    config = pt.TransformerConfig(**{**ODD, "max_length": 200, "norm_first": True})
    tm = TorchTransformer(config, seed=7)
    model = pt.Transformer(config, tm.pt_weights())
    rng = np.random.default_rng(7)
    lengths = np.array([150, 37, 99])
    src = padded_ids(rng, lengths, 160, config.src_vocab_size, config.pad_id)
    tgt = rng.integers(0, config.tgt_vocab_size, size=(3, 130))
    check_parity(model, tm, src, lengths, tgt, f"long sequences ({isa})")


# ---------------------------------------------------------------------------
# Converting PyTorch models
# ---------------------------------------------------------------------------


# the tutorial passes a float tgt_mask with bool padding masks; torch warns about that
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask and attn_mask:UserWarning")
def test_tutorial_seq2seq(isa):
    """PyTorch's translation tutorial model (seq-first, ``transformer.`` prefix,
    TokenEmbedding, PositionalEncoding buffer) converted with from_torch_state_dict
    matches the tutorial's own forward (teacher forcing with its create_mask)."""
    PAD, BOS, EOS = 1, 2, 3  # the tutorial's special symbols
    SRC_V, TGT_V = 101, 89
    tutorial = tutorial_seq2seq(3, 3, emb_size=96, nhead=4, src_vocab_size=SRC_V, tgt_vocab_size=TGT_V,
                                dim_feedforward=128, seed=11)
    rng = np.random.default_rng(11)
    src_lengths, tgt_lengths = np.array([9, 5, 2]), np.array([7, 3, 6])
    # real tokens are ordinary words (ids >= 4), PAD after each row's length: the tutorial
    # derives its padding masks from src == PAD
    src = padded_ids(rng, src_lengths, 9, SRC_V - 4, PAD - 4) + 4
    tgt = padded_ids(rng, tgt_lengths, 7, TGT_V - 4, PAD - 4) + 4
    assert ((src == PAD).sum(1) == 9 - src_lengths).all() and ((tgt == PAD).sum(1) == 7 - tgt_lengths).all()

    # The conversion, in three lines.
    config = pt.TransformerConfig(d_model=96, nhead=4, num_encoder_layers=3, num_decoder_layers=3,
                                  dim_feedforward=128, src_vocab_size=SRC_V, tgt_vocab_size=TGT_V,
                                  pad_id=PAD, bos_id=BOS, eos_id=EOS, max_length=5000)
    model = pt.Transformer.from_torch_state_dict(tutorial.state_dict(), config)
    logits = model.decode(tgt, model.encode(src, src_lengths), src_lengths)

    s, t_ = torch.from_numpy(src.T.copy()), torch.from_numpy(tgt.T.copy())  # seq-first [L, B]
    src_mask, tgt_mask, src_padding_mask, tgt_padding_mask = tutorial_masks(s, t_, PAD)
    expected = tutorial(s, t_, src_mask, tgt_mask, src_padding_mask, tgt_padding_mask, src_padding_mask)
    expected = expected.detach().numpy().transpose(1, 0, 2)  # -> [B, T, V]
    # Real target positions only: pytransformer has no target padding (a causal decoder
    # never lets a real position see the padding after it).
    assert_close_valid(logits, expected, tgt_lengths, ATOL, f"tutorial logits ({isa})")

    # The tutorial's greedy_decode path: model.encode / model.decode + generator, unpadded.
    memory = tutorial.encode(s[:2, :1], src_mask[:2, :2])
    out = tutorial.generator(tutorial.decode(t_[:4, :1], memory, tgt_mask[:4, :4])).detach().numpy()
    ours = model.decode(tgt[:1, :4], model.encode(src[:1, :2]))
    assert_close_valid(ours, out.transpose(1, 0, 2), None, ATOL, f"tutorial encode/decode ({isa})")
    assert_close_valid(model.encode(src[:1, :2]), memory.detach().numpy().transpose(1, 0, 2), None, ATOL,
                       f"tutorial memory ({isa})")


def test_from_torch_state_dict_wrapper_names():
    """An nn.Transformer under ``model.`` with the usual alias names for embeddings and
    the output layer; torch tensors are taken as they are."""
    nn = torch.nn
    config = pt.TransformerConfig(**{**ODD, "num_encoder_layers": 1, "num_decoder_layers": 1})
    tm = TorchTransformer(config, seed=5)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = tm.transformer
            self.src_embedding = tm.src_embed
            self.tgt_embedding = tm.tgt_embed
            self.fc_out = tm.generator

    sd = Wrapper().state_dict()
    assert any(k.startswith("model.encoder.layers.0.") for k in sd)
    model = pt.Transformer.from_torch_state_dict(sd, config)
    expected = tm.pt_weights()
    got = model.state_dict()
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_from_torch_state_dict_tied_and_shared():
    """A torch model whose output layer and target embedding are one tensor (and one
    table for both languages): the duplicates collapse under tie_output /
    share_embeddings, and the result matches the torch model."""
    nn = torch.nn
    config = pt.TransformerConfig(**{**ODD, "tgt_vocab_size": 53, "share_embeddings": True, "tie_output": True,
                                     "output_bias": True})
    tm = TorchTransformer(config, seed=9)

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = tm.transformer
            self.src_tok_emb = tm.src_embed
            self.tgt_tok_emb = tm.src_embed
            self.generator = nn.Linear(config.d_model, config.tgt_vocab_size)
            self.generator.weight = tm.src_embed.weight  # tied
            with torch.no_grad():
                self.generator.bias.copy_(tm.output_bias)

    sd = Tied().state_dict()
    assert "generator.weight" in sd and "tgt_tok_emb.weight" in sd
    model = pt.Transformer.from_torch_state_dict(sd, config)
    rng = np.random.default_rng(9)
    lengths = np.array([5, 3])
    src = padded_ids(rng, lengths, 5, config.src_vocab_size)
    check_parity(model, tm, src, lengths, rng.integers(0, 53, size=(2, 4)), "tied and shared")


def test_from_torch_state_dict_unplaced_names():
    config = pt.TransformerConfig(**{**ODD, "num_encoder_layers": 1, "num_decoder_layers": 1})
    tm = TorchTransformer(config, seed=2)
    sd = {"transformer." + k: v for k, v in tm.transformer.state_dict().items()}
    sd["src_tok_emb.embedding.weight"] = tm.src_embed.weight
    sd["tgt_tok_emb.embedding.weight"] = tm.tgt_embed.weight
    sd["generator.weight"] = tm.generator.weight
    sd["generator.bias"] = tm.generator.bias
    sd["positional_encoding.pos_embedding"] = torch.zeros(50, 1, config.d_model)  # ignored
    sd["classifier.weight"] = torch.zeros(3, 3)
    sd["length_predictor.bias"] = torch.zeros(3)
    with pytest.raises(pt.WeightsError) as info:
        pt.Transformer.from_torch_state_dict(sd, config)
    msg = str(info.value)
    assert "classifier.weight" in msg and "length_predictor.bias" in msg
    assert "pos_embedding" not in msg
    model = pt.Transformer.from_torch_state_dict(sd, config, ignore=["classifier.weight", "length_predictor.bias"])
    for name, value in tm.pt_weights().items():
        np.testing.assert_array_equal(model.state_dict()[name], value, err_msg=name)

"""pytransformer.Transformer (model.py) without torch: state_dict, parity with the float64
numpy reference model, shapes, padding, thread determinism and thread safety, save/load,
file errors, bad inputs."""

from __future__ import annotations

import concurrent.futures
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

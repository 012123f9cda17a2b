"""Audio in for speech models: WAV files read with the standard library only, other
formats through PyAV when it is installed, resampling to 16 kHz with a band-limited
(windowed-sinc) resampler, and Whisper's log-mel spectrogram, all in numpy.

The spectrogram is Whisper's: 25 ms Hann windows (400 samples) every 10 ms (160
samples) over audio padded or cut to 30 s, centred frames (reflect padding), the power
spectrum through a Slaney-style mel filter bank (0-8 kHz, 80 or 128 bins), then
``log10(max(mel, 1e-10))``, floored at 8 below its maximum and mapped by ``(x + 4) / 4``
(the rule of OpenAI's ``log_mel_spectrogram`` and transformers' ``WhisperFeatureExtractor``).
"""

from __future__ import annotations

import math
import os
import struct
from functools import lru_cache
from typing import Optional, Tuple, Union

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE   # 480000 samples per window
N_FRAMES = N_SAMPLES // HOP_LENGTH        # 3000 frames per window

AudioInput = Union[str, os.PathLike, np.ndarray]


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, non-finite, of the wrong type."""


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def read_wav(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, int]:
    """(samples float32 [n] in [-1, 1], mono (channels averaged), sample rate) of a WAV
    file: PCM 8 (unsigned), 16, 24 or 32 bit, or IEEE float 32/64 bit (WAVE_FORMAT_EXTENSIBLE
    included)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{path!r} is not a WAV file (no RIFF/WAVE header)")
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise AudioError(f"{path!r}: the WAV 'fmt ' chunk is truncated")
            tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, align, bits)
        elif cid == b"data":
            samples = body  # a truncated file keeps the whole frames it has
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise AudioError(f"{path!r}: the WAV file has no {'fmt ' if fmt is None else 'data'} chunk")
    tag, channels, rate, align, bits = fmt
    if channels < 1 or rate < 1 or align != channels * ((bits + 7) // 8):
        raise AudioError(f"{path!r}: inconsistent WAV format ({channels} channels, {rate} Hz, {bits} bits, "
                         f"block align {align})")
    width = align // channels
    n = len(samples) // align
    raw = np.frombuffer(samples[:n * align], np.uint8).reshape(n, channels, width)
    if tag == 1 and bits == 8:
        x = (raw[..., 0].astype(np.float32) - 128.0) / 128.0
    elif tag == 1 and width in (2, 3, 4):
        padded = np.zeros((n, channels, 4), np.uint8)
        padded[..., 4 - width:] = raw  # little-endian: the sample's bytes in the high bytes of an int32
        x = padded.view("<i4")[..., 0].astype(np.float64) / 2147483648.0
    elif tag == 3 and width in (4, 8):
        x = raw.copy().view("<f4" if width == 4 else "<f8")[..., 0].astype(np.float64)
    else:
        raise AudioError(f"{path!r}: unsupported WAV encoding (format tag {tag}, {bits} bits); PCM 8/16/24/32-bit "
                         "and float 32/64-bit are read")
    return np.asarray(x.mean(axis=1), np.float32), rate


def read_audio(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate) of an audio file: WAV directly, anything else
    (mp3, m4a, flac, ogg, ...) through PyAV."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path!r}")
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return read_wav(path)
    try:
        import av  # type: ignore
    except ImportError:
        raise AudioError(f"{path!r} is not a WAV file; reading other formats (mp3, m4a, flac, ...) needs PyAV: "
                         "pip install av") from None
    try:
        chunks = []
        with av.open(path) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except Exception as e:  # PyAV raises its own error types
        raise AudioError(f"could not decode {path!r} with PyAV: {e}") from e
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return x, SAMPLE_RATE


# ---------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------

def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE, taps_per_side: int = 32) -> np.ndarray:
    """``x`` at ``rate`` Hz resampled to ``target`` Hz by windowed-sinc interpolation: a
    Kaiser-windowed (beta 8.6) sinc low-pass at 0.95 of the lower Nyquist frequency,
    ``taps_per_side`` zero crossings of the (stretched when downsampling) kernel on each
    side, evaluated at every output instant."""
    if rate == target:
        return np.asarray(x, np.float32)
    if rate < 1 or target < 1:
        raise AudioError(f"sample rates must be >= 1, got {rate} and {target}")
    x = np.asarray(x, np.float64)
    n_out = int(math.floor(len(x) * target / rate))
    if n_out == 0 or len(x) == 0:
        return np.zeros(0, np.float32)
    cutoff = 0.95 * min(1.0, target / rate)  # of the input's Nyquist frequency
    half = int(math.ceil(taps_per_side / cutoff))  # input samples on each side
    beta = 8.6
    out = np.empty(n_out, np.float64)
    xp = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    offsets = np.arange(-half + 1, half + 1)
    step = 1 << 15
    for start in range(0, n_out, step):
        n = np.arange(start, min(n_out, start + step))
        t = n * (rate / target)                       # output instants in input samples
        base = np.floor(t).astype(np.int64)
        frac = t - base
        idx = base[:, None] + offsets[None, :]        # neighbours of each instant
        d = frac[:, None] - offsets[None, :]          # distance to each neighbour
        w = np.i0(beta * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, None))) / np.i0(beta)
        h = cutoff * np.sinc(cutoff * d) * w
        out[n] = np.einsum("ij,ij->i", xp[idx + half], h)
    return out.astype(np.float32)


def load_audio(audio: AudioInput, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 mono samples at 16 kHz from a path, or from a numpy array of samples at
    ``sampling_rate`` Hz (1-D, or [channels, n] / [n, channels] with 2 channels: averaged)."""
    if isinstance(audio, (str, os.PathLike)):
        x, rate = read_audio(audio)
    elif isinstance(audio, np.ndarray):
        if audio.dtype.kind not in "fiu":
            raise AudioError(f"audio must be a numeric array (float32 samples at {sampling_rate} Hz), got dtype "
                             f"{audio.dtype}")
        x = audio
        if x.ndim == 2 and 2 in x.shape and min(x.shape) <= 2:
            x = x.mean(axis=0 if x.shape[0] <= 2 else 1)
        if x.ndim != 1:
            raise AudioError(f"audio must be a 1-D array of samples, got shape {audio.shape}")
        if x.dtype.kind in "iu":
            raise AudioError("audio must be float samples in [-1, 1]; convert integer PCM first "
                             "(e.g. x.astype(np.float32) / 32768)")
        rate = sampling_rate
    else:
        raise TypeError(f"audio must be a path or a float32 numpy array, got {type(audio).__name__}")
    x = np.asarray(x, np.float32)
    if x.size == 0:
        raise AudioError("audio is empty (no samples)")
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    return resample(x, rate, SAMPLE_RATE)


# ---------------------------------------------------------------------------
# Log-mel spectrogram
# ---------------------------------------------------------------------------

def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    mel = 3.0 * f / 200.0
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f = 200.0 * m / 3.0
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), f)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int, n_fft: int = N_FFT, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 [n_fft // 2 + 1, n_mels]: triangular filters evenly spaced on the mel
    scale from 0 Hz to the Nyquist frequency, each normalised to unit area (Slaney)."""
    fft_freqs = np.linspace(0.0, sampling_rate / 2, n_fft // 2 + 1)
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sampling_rate / 2), n_mels + 2)
    hz = _mel_to_hz(mels)
    diff = np.diff(hz)
    slopes = hz[None, :] - fft_freqs[:, None]               # [freq, n_mels + 2]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    fb *= 2.0 / (hz[2:n_mels + 2] - hz[:n_mels])
    fb.setflags(write=False)
    return fb


@lru_cache(maxsize=1)
def _hann(n: int) -> np.ndarray:
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic
    w.setflags(write=False)
    return w


def log_mel_spectrogram(samples: np.ndarray, n_mels: int = 80, n_samples: Optional[int] = N_SAMPLES,
                        padding: int = 0) -> np.ndarray:
    """float32 [n_mels, n // 160]: Whisper's input features of 16 kHz samples, padded
    with zeros (or cut) to ``n = n_samples`` (transformers' and OpenAI's rule for one
    window), or, with ``n_samples=None``, of the whole audio plus ``padding`` zeros
    (faster-whisper's rule: features of the whole recording, normalised by its
    maximum, then cut into windows)."""
    x = np.asarray(samples, np.float64)
    if n_samples is None:
        x = np.pad(x, (0, padding))
    elif len(x) < n_samples:
        x = np.pad(x, (0, n_samples - len(x)))
    else:
        x = x[:n_samples]
    pad = N_FFT // 2
    xp = np.pad(x, (pad, pad), mode="reflect")
    n_frames = 1 + (len(xp) - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(xp, (n_frames, N_FFT), (xp.strides[0] * HOP_LENGTH, xp.strides[0]))
    spec = np.fft.rfft(frames * _hann(N_FFT), axis=1)
    power = spec.real ** 2 + spec.imag ** 2                   # [frames, freq]
    mel = power[:-1] @ mel_filters(n_mels)                    # the last frame is dropped
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return np.ascontiguousarray(((log_spec + 4.0) / 4.0).T, dtype=np.float32)

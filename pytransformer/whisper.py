"""Whisper speech recognition: :class:`WhisperModel` (from :func:`pytransformer.from_pretrained`
on a Hugging Face Whisper folder).

The model is the library's encoder-decoder :class:`pytransformer.Transformer` (pre-LN,
GELU, a final LayerNorm after each stack, learned decoder positions, the output layer
tied to the token embeddings) whose encoder takes float inputs: Whisper's audio front
end runs before it, here in numpy plus :func:`pytransformer.ops.linear` (two Conv1d
of kernel 3 as im2col GEMMs with the GELU fused, the second of stride 2, then the
fixed sinusoidal positions added).

Decoding follows Whisper: the prompt ``<|startoftranscript|>`` [language, task]
``<|notimestamps|>``; ``suppress_tokens`` at every step and blank / end-of-text
suppressed at the first step; greedy or beam search; audio longer than 30 s is
transcribed window after window.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import audio as _audio
from . import ops
from .model import Transformer


@dataclasses.dataclass
class Segment:
    """One transcribed window (faster-whisper's field names)."""

    id: int
    seek: int           # the window's first frame (10 ms each)
    start: float        # seconds
    end: float          # seconds
    text: str
    tokens: List[int]
    avg_logprob: float
    no_speech_prob: float


@dataclasses.dataclass
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float     # seconds of audio
    all_language_probs: Optional[List[Tuple[str, float]]] = None


@dataclasses.dataclass(frozen=True)
class WhisperTokens:
    """The special token ids a Whisper checkpoint uses."""

    sot: int                      # <|startoftranscript|>
    eot: int                      # <|endoftext|>
    no_timestamps: int            # <|notimestamps|>
    transcribe: Optional[int]
    translate: Optional[int]
    no_speech: Optional[int]
    languages: Dict[str, int]     # "en" -> id of <|en|> (multilingual models)
    suppress: Tuple[int, ...]     # suppressed at every step
    begin_suppress: Tuple[int, ...]  # suppressed at the first generated step


class WhisperModel:
    """A Whisper checkpoint: :meth:`features` (log-mel), :meth:`encode`, :meth:`generate`
    and :meth:`transcribe`."""

    def __init__(self, transformer: Transformer, conv1: Tuple[np.ndarray, np.ndarray],
                 conv2: Tuple[np.ndarray, np.ndarray], positions: np.ndarray, n_mels: int,
                 tokens: WhisperTokens, tokenizer: Any = None):
        self.transformer = transformer
        E = transformer.config.d_model
        w1, b1 = conv1
        w2, b2 = conv2
        if w1.shape != (E, n_mels, 3) or w2.shape != (E, E, 3) or b1.shape != (E,) or b2.shape != (E,):
            raise ValueError(f"Whisper front end: conv1 weight must be [{E}, {n_mels}, 3] and conv2 [{E}, {E}, 3] "
                             f"with biases [{E}], got {w1.shape}, {w2.shape}, {b1.shape}, {b2.shape}")
        # im2col layouts: column c*3 + k holds input channel c at offset k
        self._w1 = np.ascontiguousarray(w1.reshape(E, n_mels * 3), np.float32)
        self._w2 = np.ascontiguousarray(w2.reshape(E, E * 3), np.float32)
        self._b1 = np.ascontiguousarray(b1, np.float32)
        self._b2 = np.ascontiguousarray(b2, np.float32)
        self._positions = np.ascontiguousarray(positions, np.float32)
        self.n_mels = n_mels
        self.tokens = tokens
        self.tokenizer = tokenizer

    @property
    def compute_type(self) -> str:
        return self.transformer.compute_type

    @property
    def is_multilingual(self) -> bool:
        return bool(self.tokens.languages)

    def __repr__(self) -> str:
        c = self.transformer.config
        return (f"WhisperModel(d_model={c.d_model}, layers={c.num_encoder_layers}+{c.num_decoder_layers}, "
                f"n_mels={self.n_mels}, vocab={c.tgt_vocab_size}, multilingual={self.is_multilingual}, "
                f"compute_type={self.compute_type!r})")

    # -- audio -> features -> memory ---------------------------------------------------

    def features(self, audio: _audio.AudioInput, sampling_rate: int = _audio.SAMPLE_RATE) -> np.ndarray:
        """float32 [n_mels, 3000]: the log-mel spectrogram of the first 30 s of ``audio``
        (a path, or float samples at ``sampling_rate``), zero-padded when shorter."""
        return _audio.log_mel_spectrogram(_audio.load_audio(audio, sampling_rate), self.n_mels)

    def encode(self, features: np.ndarray) -> np.ndarray:
        """float32 features [B, n_mels, T] (T = 2 x the encoder positions used, 3000 for
        30 s) -> encoder output [B, T // 2, d_model]."""
        if not isinstance(features, np.ndarray) or features.dtype.kind != "f":
            raise TypeError("features must be a float32 numpy array [B, n_mels, frames]")
        x = np.asarray(features, np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != self.n_mels or x.shape[2] < 2 or x.shape[2] % 2:
            raise ValueError(f"features must have shape [B, {self.n_mels}, T] with T even and >= 2 (3000 for 30 s), "
                             f"got {features.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values")
        B, C, T = x.shape
        S = T // 2
        if S > len(self._positions):
            raise ValueError(f"features have {T} frames; this model's encoder takes at most "
                             f"{2 * len(self._positions)}")
        E = self.transformer.config.d_model
        if B == 0:
            return np.zeros((0, S, E), np.float32)
        # conv1: kernel 3, padding 1, stride 1, as x_cols [B*T, C*3] @ w1.T
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
        cols = np.lib.stride_tricks.sliding_window_view(xp, 3, axis=2)        # [B, C, T, 3]
        cols = np.ascontiguousarray(cols.transpose(0, 2, 1, 3)).reshape(B * T, C * 3)
        h = ops.linear(cols, self._w1, self._b1, activation="gelu").reshape(B, T, E)
        # conv2: kernel 3, padding 1, stride 2, on the time-major h
        hp = np.pad(h, ((0, 0), (1, 1), (0, 0)))
        cols2 = np.stack([hp[:, k:k + 2 * S:2, :] for k in range(3)], axis=-1)  # [B, S, E, 3]
        h2 = ops.linear(np.ascontiguousarray(cols2).reshape(B * S, E * 3), self._w2, self._b2, activation="gelu")
        h2 = h2.reshape(B, S, E)
        h2 += self._positions[:S]
        return self.transformer.encode_features(h2)

    # -- decoding ------------------------------------------------------------------------

    def prompt(self, language: Optional[str] = None, task: str = "transcribe",
               without_timestamps: bool = True) -> List[int]:
        """The decoder's forced start: <|startoftranscript|> [<|lang|> <|task|>] [<|notimestamps|>]."""
        t = self.tokens
        out = [t.sot]
        if self.is_multilingual:
            lang = language or "en"
            if lang not in t.languages:
                raise ValueError(f"language {lang!r} is not one of this model's languages "
                                 f"({', '.join(sorted(t.languages))})")
            if task not in ("transcribe", "translate"):
                raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
            task_id = t.transcribe if task == "transcribe" else t.translate
            if task_id is None:
                raise ValueError(f"this model has no <|{task}|> token")
            out += [t.languages[lang], task_id]
        else:
            if language not in (None, "en"):
                raise ValueError(f"this model is English-only; language={language!r} is not available")
            if task != "transcribe":
                raise ValueError("this model is English-only: task='translate' is not available")
        if without_timestamps:
            out.append(t.no_timestamps)
        return out

    def generate(self, features: np.ndarray, *, language: Optional[str] = None, task: str = "transcribe",
                 beam_size: int = 1, length_penalty: float = 1.0, max_new_tokens: Optional[int] = None,
                 suppress_blank: bool = True, suppress_tokens: Optional[Sequence[int]] = None,
                 without_timestamps: bool = True, return_scores: bool = True):
        """Decode features [B, n_mels, T]: one :class:`pytransformer.GenerationResult`
        per row, sequences without the prompt and without end-of-text."""
        memory = self.encode(features)
        prompt = self.prompt(language, task, without_timestamps)
        c = self.transformer.config
        room = c.max_length - len(prompt) + 1  # the decoder start (bos) is the prompt's first token
        max_new = room if max_new_tokens is None else max_new_tokens
        if not 1 <= max_new <= room:
            raise ValueError(f"max_new_tokens must be in [1, {room}] (448 decoder positions minus the prompt), "
                             f"got {max_new}")
        suppress = self.tokens.suppress if suppress_tokens is None else tuple(suppress_tokens)
        results = self.transformer.generate_from_memory(
            memory, beam_size=beam_size, num_hypotheses=1, length_penalty=length_penalty, max_length=max_new,
            start_tokens=[prompt[1:]] * memory.shape[0], suppress_tokens=list(suppress),
            begin_suppress_tokens=list(self.tokens.begin_suppress) if suppress_blank else None,
            return_scores=return_scores)
        n = len(prompt) - 1
        for r in results:
            r.sequences[:] = [s[n:] for s in r.sequences]
        return results

    def no_speech_probability(self, memory: np.ndarray) -> np.ndarray:
        """P(<|nospeech|>) after <|startoftranscript|>, per row of memory [B, S, E]."""
        t = self.tokens
        if t.no_speech is None:
            return np.zeros(memory.shape[0])
        logits = self.transformer.decode(np.full((memory.shape[0], 1), t.sot, np.int32), memory)[:, 0]
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p[:, t.no_speech] / p.sum(axis=1)

    def decode_text(self, tokens: Sequence[int]) -> str:
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer (tokenizer.json); use generate() for token ids")
        return self.tokenizer.decode([int(t) for t in tokens if t < self.tokens.eot], skip_special_tokens=True)

    def transcribe(self, audio: _audio.AudioInput, *, language: Optional[str] = None, task: str = "transcribe",
                   beam_size: int = 5, length_penalty: float = 1.0, without_timestamps: bool = True,
                   suppress_blank: bool = True, suppress_tokens: Optional[Sequence[int]] = None,
                   sampling_rate: int = _audio.SAMPLE_RATE) -> Tuple[List[Segment], TranscriptionInfo]:
        """Transcribe ``audio`` (a path or float samples): (segments, info), as
        faster-whisper returns them (a list rather than a generator). Audio longer than
        30 s is cut into consecutive 30 s windows, one segment each."""
        if not without_timestamps:
            raise NotImplementedError("timestamps (without_timestamps=False) are not implemented yet")
        samples = _audio.load_audio(audio, sampling_rate)
        duration = len(samples) / _audio.SAMPLE_RATE
        # faster-whisper's windows: features of the whole recording (+ one hop of
        # zeros), cut into 3000-frame windows, the last one padded with zero features
        feats = _audio.log_mel_spectrogram(samples, self.n_mels, None, padding=_audio.HOP_LENGTH)
        content = feats.shape[1] - 1
        segments: List[Segment] = []
        seek = 0
        while seek < content:
            size = min(_audio.N_FRAMES, content - seek)
            window = np.zeros((1, self.n_mels, _audio.N_FRAMES), np.float32)
            window[0, :, :size] = feats[:, seek:seek + size]
            memory = self.encode(window)
            no_speech = float(self.no_speech_probability(memory)[0])
            res = self._decode_memory(memory, language, task, beam_size, length_penalty, suppress_blank,
                                      suppress_tokens)
            tokens = res.sequences[0]
            avg = float(res.log_probs[0]) / (len(tokens) + 1)
            text = self.decode_text(tokens) if self.tokenizer is not None else ""
            start = seek * _audio.HOP_LENGTH / _audio.SAMPLE_RATE
            end = (seek + size) * _audio.HOP_LENGTH / _audio.SAMPLE_RATE
            segments.append(Segment(len(segments), seek, start, end, text, tokens, avg, no_speech))
            seek += size
        return segments, TranscriptionInfo(language or "en", 1.0, duration)

    def _decode_memory(self, memory, language, task, beam_size, length_penalty, suppress_blank, suppress_tokens):
        prompt = self.prompt(language, task, True)
        c = self.transformer.config
        suppress = self.tokens.suppress if suppress_tokens is None else tuple(suppress_tokens)
        r = self.transformer.generate_from_memory(
            memory, beam_size=beam_size, num_hypotheses=1, length_penalty=length_penalty,
            max_length=c.max_length - len(prompt) + 1, start_tokens=[prompt[1:]], suppress_tokens=list(suppress),
            begin_suppress_tokens=list(self.tokens.begin_suppress) if suppress_blank else None, return_scores=True)[0]
        n = len(prompt) - 1
        r.sequences[:] = [s[n:] for s in r.sequences]
        return r

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
import zlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

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
    temperature: float = 0.0
    compression_ratio: float = 0.0


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
    sot_prev: Optional[int] = None   # <|startofprev|>


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

    def detect_language(self, audio: Union[_audio.AudioInput, np.ndarray, None] = None, *,
                        features: Optional[np.ndarray] = None,
                        sampling_rate: int = _audio.SAMPLE_RATE) -> List[Tuple[str, float]]:
        """[(language code, probability)], most likely first, from the first 30 s of
        ``audio`` (or from ``features`` [n_mels, frames]): the decoder's distribution over
        the language tokens after ``<|startoftranscript|>``, as faster-whisper's
        ``detect_language``. Multilingual models only."""
        if not self.is_multilingual:
            raise ValueError("this model is English-only: it has no language tokens to detect")
        if features is None:
            samples = _audio.load_audio(audio, sampling_rate)
            features = _audio.log_mel_spectrogram(samples, self.n_mels, None, padding=_audio.HOP_LENGTH)
        window = np.zeros((1, self.n_mels, _audio.N_FRAMES), np.float32)
        n = min(_audio.N_FRAMES, features.shape[1])
        window[0, :, :n] = features[:, :n]
        memory = self.encode(window)
        logits = self.transformer.decode(np.array([[self.tokens.sot]], np.int32), memory)[0, -1].astype(np.float64)
        codes = list(self.tokens.languages)
        ids = np.array([self.tokens.languages[c] for c in codes])
        x = logits[ids] - logits[ids].max()
        p = np.exp(x) / np.exp(x).sum()
        order = np.argsort(-p, kind="stable")
        return [(codes[i], float(p[i])) for i in order]

    def decode_text(self, tokens: Sequence[int]) -> str:
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer (tokenizer.json); use generate() for token ids")
        return self.tokenizer.decode([int(t) for t in tokens if t < self.tokens.eot], skip_special_tokens=True)

    def transcribe(self, audio: _audio.AudioInput, *, language: Optional[str] = None, task: str = "transcribe",
                   beam_size: int = 5, best_of: int = 5, patience: float = 1.0, length_penalty: float = 1.0,
                   temperature: Union[float, Sequence[float]] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                   compression_ratio_threshold: Optional[float] = 2.4, log_prob_threshold: Optional[float] = -1.0,
                   no_speech_threshold: Optional[float] = 0.6, condition_on_previous_text: bool = True,
                   prompt_reset_on_temperature: float = 0.5, initial_prompt: Optional[str] = None,
                   without_timestamps: bool = False, max_initial_timestamp: float = 1.0,
                   suppress_blank: bool = True, suppress_tokens: Optional[Sequence[int]] = None,
                   sampling_rate: int = _audio.SAMPLE_RATE, seed: Optional[int] = None,
                   progress: Optional[Callable[[float, float], None]] = None,
                   ) -> Tuple[List[Segment], TranscriptionInfo]:
        """Transcribe ``audio`` (a path, or float samples at ``sampling_rate``) as
        faster-whisper does, with its options and defaults: (segments, info), a list
        rather than a generator.

        The features of the whole recording are cut into 30 s windows; each window is
        decoded with the prompt ``[<|startofprev|> previous text] <|startoftranscript|>
        [language task] [<|notimestamps|>]``, and with timestamps (the default) split
        into segments at timestamp pairs, the next window starting at the last
        timestamp. ``temperature``: a number, or the temperatures to fall back through
        (greedy or beam search at 0, sampling ``best_of`` candidates above) while the
        text compresses better than ``compression_ratio_threshold`` (repetition) or the
        average log-probability is below ``log_prob_threshold``; a window whose
        no-speech probability is above ``no_speech_threshold`` (and log-probability below
        the threshold) is skipped. ``progress(done_seconds, total_seconds)`` is called
        after each window.
        """
        samples = _audio.load_audio(audio, sampling_rate)
        duration = len(samples) / _audio.SAMPLE_RATE
        temperatures = [float(temperature)] if isinstance(temperature, (int, float)) else [float(t) for t in temperature]
        if not temperatures:
            raise ValueError("temperature must be a number or a non-empty list of numbers")
        feats = _audio.log_mel_spectrogram(samples, self.n_mels, None, padding=_audio.HOP_LENGTH)
        content = feats.shape[1] - 1
        language_probability, all_probs = 1.0, None
        if language is None and self.is_multilingual:
            all_probs = self.detect_language(features=feats[:, :content])
            language, language_probability = all_probs[0]
        t = self.tokens
        all_tokens: List[int] = []
        if initial_prompt:
            all_tokens += self._encode_text(" " + initial_prompt.strip())
        prompt_reset_since = 0
        segments: List[Segment] = []
        seek = 0
        frame_seconds = _audio.HOP_LENGTH / _audio.SAMPLE_RATE  # 0.01, as faster-whisper computes it
        while seek < content:
            size = min(_audio.N_FRAMES, content - seek)
            time_offset = seek * frame_seconds
            window = np.zeros((1, self.n_mels, _audio.N_FRAMES), np.float32)
            window[0, :, :size] = feats[:, seek:seek + size]
            memory = self.encode(window)
            prompt = self._window_prompt(all_tokens[prompt_reset_since:], language, task, without_timestamps)
            tokens, avg, temp, ratio, no_speech = self._decode_with_fallback(
                memory, prompt, without_timestamps, temperatures, beam_size, best_of, patience, length_penalty,
                compression_ratio_threshold, log_prob_threshold, no_speech_threshold, suppress_blank,
                suppress_tokens, max_initial_timestamp, seed)
            previous_seek = seek
            if no_speech_threshold is not None and no_speech > no_speech_threshold and not (
                    log_prob_threshold is not None and avg > log_prob_threshold):
                seek += size  # silence
            else:
                pieces, seek = self._split_by_timestamps(tokens, time_offset, size, seek)
                for start, end, piece in pieces:
                    text = self.decode_text(piece) if self.tokenizer is not None else ""
                    if start == end or (self.tokenizer is not None and not text.strip()):
                        continue
                    all_tokens.extend(piece)
                    segments.append(Segment(len(segments) + 1, previous_seek, start, end, text, piece, avg, no_speech,
                                            temp, ratio))
                if not condition_on_previous_text or temp > prompt_reset_on_temperature:
                    prompt_reset_since = len(all_tokens)
            if progress is not None:
                progress(min(content, seek) * _audio.HOP_LENGTH / _audio.SAMPLE_RATE, duration)
        return segments, TranscriptionInfo(language or "en", language_probability, duration, all_probs)

    # -- transcribe's parts ------------------------------------------------------------------

    def _encode_text(self, text: str) -> List[int]:
        if self.tokenizer is None:
            raise RuntimeError("initial_prompt needs the model's tokenizer (tokenizer.json)")
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _window_prompt(self, previous: List[int], language, task, without_timestamps) -> List[int]:
        c = self.transformer.config
        prompt: List[int] = []
        if previous:
            if self.tokens.sot_prev is None:
                raise ValueError("this model has no <|startofprev|> token: use condition_on_previous_text=False")
            prompt = [self.tokens.sot_prev] + previous[-(c.max_length // 2 - 1):]
        return prompt + self.prompt(language, task, without_timestamps)

    def _decode_with_fallback(self, memory, prompt, without_timestamps, temperatures, beam_size, best_of,
                              patience, length_penalty, cr_threshold, lp_threshold, ns_threshold, suppress_blank,
                              suppress_tokens, max_initial_timestamp, seed):
        """(tokens, avg_logprob, temperature, compression ratio, no-speech probability)."""
        c = self.transformer.config
        t = self.tokens
        # CTranslate2's decoding length: at most half the positions, and what the prompt leaves
        start_step = len(prompt) - 1
        max_length = min(c.max_length // 2, c.max_length - start_step)
        if max_length < 1:
            raise ValueError(f"the prompt ({len(prompt)} tokens) leaves no room in {c.max_length} positions")
        suppress = list(t.suppress if suppress_tokens is None else suppress_tokens)
        rules = None
        if not without_timestamps:
            begin = t.no_timestamps + 1
            rules = (begin, t.no_timestamps, min(c.tgt_vocab_size - 1, begin + int(round(max_initial_timestamp / 0.02))))
        common = dict(start_tokens=None, suppress_tokens=suppress, return_scores=True,
                      begin_suppress_tokens=list(t.begin_suppress) if suppress_blank else None,
                      decoder_start=prompt[0], timestamp_rules=rules, length_penalty=length_penalty,
                      max_length=max_length, renormalize=True,
                      probe=(t.no_speech, t.sot) if t.no_speech is not None else None)
        results, below = [], []
        temp = temperatures[0]
        for temp in temperatures:
            if temp > 0:
                mem = np.repeat(memory, best_of, axis=0)
                rs = self.transformer.generate_from_memory(
                    mem, **{**common, "start_tokens": [prompt[1:]] * best_of}, sampling_topk=0,
                    sampling_temperature=temp, seed=seed)
                cands = [(r.sequences[0], r.log_probs[0]) for r in rs]
                no_speech = rs[0].probe
            else:
                r = self.transformer.generate_from_memory(
                    memory, **{**common, "start_tokens": [prompt[1:]]}, beam_size=beam_size, num_hypotheses=1,
                    beam_semantics="ct2", patience=patience)[0]
                cands = [(r.sequences[0], r.log_probs[0])] if r.sequences else [(list(prompt[1:]), -np.inf)]
                no_speech = r.probe
            no_speech = 0.0 if no_speech is None else float(no_speech)
            n = len(prompt) - 1
            scored = [(seq[n:], lp / (len(seq) - n + 1)) for seq, lp in cands]
            tokens, avg = max(scored, key=lambda x: x[1] * 1.0)
            text = self.decode_text(tokens).strip() if self.tokenizer is not None else ""
            ratio = compression_ratio(text)
            outcome = (tokens, avg, temp, ratio, no_speech)
            results.append(outcome)
            fallback = False
            if cr_threshold is not None:
                if ratio > cr_threshold:
                    fallback = True
                else:
                    below.append(outcome)
            if lp_threshold is not None and avg < lp_threshold:
                fallback = True
            if ns_threshold is not None and no_speech > ns_threshold and lp_threshold is not None and avg < lp_threshold:
                fallback = False
            if not fallback:
                return outcome
        best = max(below or results, key=lambda x: x[1])
        return best[0], best[1], temp, best[3], best[4]

    def _split_by_timestamps(self, tokens: List[int], time_offset: float, size: int, seek: int):
        """faster-whisper's segments of one window: [(start, end, tokens)], next seek."""
        begin = self.tokens.no_timestamps + 1
        precision = 0.02
        single_ending = len(tokens) >= 2 and tokens[-2] < begin <= tokens[-1]
        consecutive = [i for i in range(1, len(tokens)) if tokens[i] >= begin and tokens[i - 1] >= begin]
        out = []
        if consecutive:
            slices = consecutive + ([len(tokens)] if single_ending else [])
            last = 0
            for cur in slices:
                piece = tokens[last:cur]
                out.append((time_offset + (piece[0] - begin) * precision,
                            time_offset + (piece[-1] - begin) * precision, piece))
                last = cur
            seek += size if single_ending else (tokens[last - 1] - begin) * 2
        else:
            duration = size * (_audio.HOP_LENGTH / _audio.SAMPLE_RATE)
            stamps = [x for x in tokens if x >= begin]
            if stamps and stamps[-1] != begin:
                duration = (stamps[-1] - begin) * precision
            out.append((time_offset, time_offset + duration, tokens))
            seek += size
        return out, seek


def compression_ratio(text: str) -> float:
    """len(utf-8 text) / len(zlib-compressed text): high for repetitive text."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0

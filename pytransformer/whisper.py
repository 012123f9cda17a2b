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
        opts = _Options(self, language, task, beam_size, best_of, patience, length_penalty, temperature,
                        compression_ratio_threshold, log_prob_threshold, no_speech_threshold,
                        condition_on_previous_text, prompt_reset_on_temperature, initial_prompt, without_timestamps,
                        max_initial_timestamp, suppress_blank, suppress_tokens, seed)
        return self._run_jobs([_Job(self, audio, sampling_rate, opts, progress)], 1)[0]

    def transcribe_batch(self, audios: Sequence[_audio.AudioInput], *, batch_size: int = 8,
                         language: Optional[str] = None, task: str = "transcribe", beam_size: int = 5,
                         best_of: int = 5, patience: float = 1.0, length_penalty: float = 1.0,
                         temperature: Union[float, Sequence[float]] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                         compression_ratio_threshold: Optional[float] = 2.4,
                         log_prob_threshold: Optional[float] = -1.0, no_speech_threshold: Optional[float] = 0.6,
                         condition_on_previous_text: bool = True, prompt_reset_on_temperature: float = 0.5,
                         initial_prompt: Optional[str] = None, without_timestamps: bool = False,
                         max_initial_timestamp: float = 1.0, suppress_blank: bool = True,
                         suppress_tokens: Optional[Sequence[int]] = None, sampling_rate: int = _audio.SAMPLE_RATE,
                         seed: Optional[int] = None,
                         progress: Optional[Callable[[int, float, float], None]] = None,
                         ) -> List[Tuple[List[Segment], TranscriptionInfo]]:
        """:meth:`transcribe` for several recordings at once, for throughput: the
        current 30 s window of up to ``batch_size`` recordings is encoded and decoded
        as one batch (each recording still goes window after window, conditioned on
        its own previous text). Same options as :meth:`transcribe`; one (segments,
        info) per recording, in order. The results equal :meth:`transcribe`'s for each
        recording except where a temperature fallback samples (its random draws
        depend on the batch). ``progress(index, done_seconds, total_seconds)``."""
        if isinstance(audios, (str, bytes, np.ndarray)) or not isinstance(audios, Sequence):
            raise TypeError("audios must be a list of paths or float32 arrays")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        opts = _Options(self, language, task, beam_size, best_of, patience, length_penalty, temperature,
                        compression_ratio_threshold, log_prob_threshold, no_speech_threshold,
                        condition_on_previous_text, prompt_reset_on_temperature, initial_prompt, without_timestamps,
                        max_initial_timestamp, suppress_blank, suppress_tokens, seed)
        jobs = [_Job(self, a, sampling_rate, opts,
                     None if progress is None else (lambda done, total, i=i: progress(i, done, total)))
                for i, a in enumerate(audios)]
        return self._run_jobs(jobs, batch_size)

    def _run_jobs(self, jobs: List["_Job"], batch_size: int):
        while True:
            active = [j for j in jobs if not j.done()][:batch_size]
            if not active:
                break
            windows = np.stack([j.window() for j in active])
            memory = self.encode(windows)
            outcomes = self._decode_rows(memory, [j.window_prompt() for j in active], active[0].opts)
            for j, outcome in zip(active, outcomes):
                j.accept(outcome)
        return [j.result() for j in jobs]

    def _decode_rows(self, memory: np.ndarray, prompts: List[List[int]], o: "_Options") -> list:
        """Per row of memory: (tokens, avg_logprob, temperature, compression ratio,
        no-speech probability) after faster-whisper's temperature fallback."""
        n = len(prompts)
        outcomes: List[Any] = [None] * n
        history: List[list] = [[] for _ in range(n)]
        below: List[list] = [[] for _ in range(n)]
        pending = list(range(n))
        for temp in o.temperatures:
            if not pending:
                break
            attempts = self._attempt(memory[pending], [prompts[i] for i in pending], temp, o)
            still = []
            for i, out in zip(pending, attempts):
                history[i].append(out)
                _, avg, _, ratio, no_speech = out
                fallback = False
                if o.cr_threshold is not None:
                    if ratio > o.cr_threshold:
                        fallback = True
                    else:
                        below[i].append(out)
                if o.lp_threshold is not None and avg < o.lp_threshold:
                    fallback = True
                if (o.ns_threshold is not None and no_speech > o.ns_threshold and o.lp_threshold is not None
                        and avg < o.lp_threshold):
                    fallback = False  # silence
                if fallback:
                    still.append(i)
                else:
                    outcomes[i] = out
            pending = still
        for i in pending:  # every temperature failed: the best average log-probability
            best = max(below[i] or history[i], key=lambda x: x[1])
            outcomes[i] = (best[0], best[1], o.temperatures[-1], best[3], best[4])
        return outcomes

    def _attempt(self, memory: np.ndarray, prompts: List[List[int]], temp: float, o: "_Options") -> list:
        """One decoding of each row at temperature ``temp``; rows sharing a decoder start
        and a length limit run as one batch."""
        c = self.transformer.config
        t = self.tokens
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, prompt in enumerate(prompts):
            # CTranslate2's decoding length: at most half the positions, and what the prompt leaves
            max_length = min(c.max_length // 2, c.max_length - (len(prompt) - 1))
            if max_length < 1:
                raise ValueError(f"the prompt ({len(prompt)} tokens) leaves no room in {c.max_length} positions")
            groups.setdefault((prompt[0], max_length), []).append(i)
        out: List[Any] = [None] * len(prompts)
        for (start, max_length), rows in groups.items():
            common = dict(suppress_tokens=o.suppress, return_scores=True, begin_suppress_tokens=o.begin_suppress,
                          decoder_start=start, timestamp_rules=o.rules, length_penalty=o.length_penalty,
                          max_length=max_length, renormalize=True,
                          probe=(t.no_speech, t.sot) if t.no_speech is not None else None)
            if temp > 0:
                k = o.best_of
                rs = self.transformer.generate_from_memory(
                    np.repeat(memory[rows], k, axis=0), start_tokens=[prompts[i][1:] for i in rows for _ in range(k)],
                    sampling_topk=0, sampling_temperature=temp, seed=o.seed, **common)
                per_row = [rs[j * k:(j + 1) * k] for j in range(len(rows))]
            else:
                rs = self.transformer.generate_from_memory(
                    memory[rows], start_tokens=[prompts[i][1:] for i in rows], beam_size=o.beam_size,
                    num_hypotheses=1, beam_semantics="ct2", patience=o.patience, **common)
                per_row = [[r] for r in rs]
            for i, cands in zip(rows, per_row):
                n = len(prompts[i]) - 1
                best = None
                for r in cands:
                    if not r.sequences:
                        continue
                    tokens = r.sequences[0][n:]
                    length = max(len(tokens), 1)
                    rank = r.log_probs[0] / length ** o.length_penalty  # CTranslate2's hypothesis score
                    if best is None or rank > best[0]:
                        best = (rank, tokens, r.log_probs[0] / (len(tokens) + 1))
                if best is None:
                    best = (-np.inf, [], -np.inf)
                probe = cands[0].probe
                text = self.decode_text(best[1]).strip() if self.tokenizer is not None else ""
                out[i] = (best[1], best[2], temp, compression_ratio(text), 0.0 if probe is None else float(probe))
        return out

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


class _Options:
    """transcribe's options, checked once."""

    def __init__(self, model: WhisperModel, language, task, beam_size, best_of, patience, length_penalty,
                 temperature, cr_threshold, lp_threshold, ns_threshold, condition_on_previous_text,
                 prompt_reset_on_temperature, initial_prompt, without_timestamps, max_initial_timestamp,
                 suppress_blank, suppress_tokens, seed):
        c = model.transformer.config
        t = model.tokens
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            self.temperatures = [float(temperature)]
        else:
            self.temperatures = [float(x) for x in temperature]
        if not self.temperatures or any(not np.isfinite(x) or x < 0 for x in self.temperatures):
            raise ValueError("temperature must be a number >= 0 or a non-empty list of them")
        for name, v in (("beam_size", beam_size), ("best_of", best_of)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        model.prompt(language, task, without_timestamps)  # checks language and task
        self.language, self.task = language, task
        self.beam_size, self.best_of, self.patience = beam_size, best_of, patience
        self.length_penalty = length_penalty
        self.cr_threshold, self.lp_threshold, self.ns_threshold = cr_threshold, lp_threshold, ns_threshold
        self.condition_on_previous_text = condition_on_previous_text
        self.prompt_reset_on_temperature = prompt_reset_on_temperature
        self.initial_prompt = initial_prompt
        self.without_timestamps = without_timestamps
        self.suppress = list(t.suppress if suppress_tokens is None else suppress_tokens)
        self.begin_suppress = list(t.begin_suppress) if suppress_blank else None
        self.rules = None
        if not without_timestamps:
            begin = t.no_timestamps + 1
            self.rules = (begin, t.no_timestamps,
                          min(c.tgt_vocab_size - 1, begin + int(round(max_initial_timestamp / 0.02))))
        self.seed = seed


class _Job:
    """One recording going through transcribe: its features, where it is, what it said."""

    def __init__(self, model: WhisperModel, audio, sampling_rate: int, opts: _Options, progress):
        self.model, self.opts, self.progress = model, opts, progress
        samples = _audio.load_audio(audio, sampling_rate)
        self.duration = len(samples) / _audio.SAMPLE_RATE
        self.feats = _audio.log_mel_spectrogram(samples, model.n_mels, None, padding=_audio.HOP_LENGTH)
        self.content = self.feats.shape[1] - 1
        self.language, self.language_probability, self.all_probs = opts.language, 1.0, None
        if self.language is None and model.is_multilingual:
            self.all_probs = model.detect_language(features=self.feats[:, :self.content])
            self.language, self.language_probability = self.all_probs[0]
        self.all_tokens: List[int] = []
        if opts.initial_prompt:
            self.all_tokens += model._encode_text(" " + opts.initial_prompt.strip())
        self.prompt_reset_since = 0
        self.segments: List[Segment] = []
        self.seek = 0
        self.size = 0

    def done(self) -> bool:
        return self.seek >= self.content

    def window(self) -> np.ndarray:
        self.size = min(_audio.N_FRAMES, self.content - self.seek)
        w = np.zeros((self.model.n_mels, _audio.N_FRAMES), np.float32)
        w[:, :self.size] = self.feats[:, self.seek:self.seek + self.size]
        return w

    def window_prompt(self) -> List[int]:
        o = self.opts
        return self.model._window_prompt(self.all_tokens[self.prompt_reset_since:], self.language, o.task,
                                         o.without_timestamps)

    def accept(self, outcome) -> None:
        o, m = self.opts, self.model
        tokens, avg, temp, ratio, no_speech = outcome
        previous_seek = self.seek
        time_offset = self.seek * (_audio.HOP_LENGTH / _audio.SAMPLE_RATE)  # as faster-whisper computes it
        if o.ns_threshold is not None and no_speech > o.ns_threshold and not (
                o.lp_threshold is not None and avg > o.lp_threshold):
            self.seek += self.size  # silence
        else:
            pieces, self.seek = m._split_by_timestamps(tokens, time_offset, self.size, self.seek)
            for start, end, piece in pieces:
                text = m.decode_text(piece) if m.tokenizer is not None else ""
                if start == end or (m.tokenizer is not None and not text.strip()):
                    continue
                self.all_tokens.extend(piece)
                self.segments.append(Segment(len(self.segments) + 1, previous_seek, start, end, text, piece, avg,
                                             no_speech, temp, ratio))
            if not o.condition_on_previous_text or temp > o.prompt_reset_on_temperature:
                self.prompt_reset_since = len(self.all_tokens)
        if self.progress is not None:
            self.progress(min(self.content, self.seek) * _audio.HOP_LENGTH / _audio.SAMPLE_RATE, self.duration)

    def result(self) -> Tuple[List[Segment], TranscriptionInfo]:
        return self.segments, TranscriptionInfo(self.language or "en", self.language_probability, self.duration,
                                                self.all_probs)

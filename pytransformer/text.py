"""Text in, text out: a Transformer with its vocabularies (pytransformer.TextTranslator).

Models saved with a ``vocab`` metadata entry (JSON: ``{"src": [...], "tgt": [...],
"tokenizer": "char" | "space"}``, token i of each list is id i) translate text:
``"char"`` splits text into characters, ``"space"`` into whitespace-separated tokens.
The bundled demo model (:func:`load_demo`) is one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, List, Optional, Sequence

import numpy as np

from .model import Transformer

__all__ = ["TextTranslator", "Translation", "load_demo", "DEMO_EXAMPLES"]

_DEMO_FILE = os.path.join(os.path.dirname(__file__), "data", "dates.safetensors")

#: Inputs the demo shows when given none.
DEMO_EXAMPLES = [
    "25th of November 2026",
    "11/25/26",
    "Nov 25, 2026",
    "Thursday, July 4, 1996",
    "the 1st of January, 2000",
    "31.12.1999",
    "FEB 29 2024",
    "march 3rd, 1985",
]


@dataclasses.dataclass
class Translation:
    """One translated text: the best hypothesis, its score and (optionally) where it
    looked: ``attention`` [len(output tokens) + 1, len(source tokens) + 1], the last
    decoder layer's cross-attention (rows: output tokens then end-of-sequence;
    columns: source tokens then end-of-sequence)."""

    source: str
    text: str
    score: float
    seconds: float
    source_tokens: List[str]
    target_tokens: List[str]
    attention: Optional[np.ndarray] = None


class TextTranslator:
    """A :class:`Transformer` plus source/target vocabularies."""

    def __init__(self, model: Transformer, src_vocab: Sequence[str], tgt_vocab: Sequence[str],
                 tokenizer: str = "char"):
        if tokenizer not in ("char", "space"):
            raise ValueError(f"tokenizer must be 'char' or 'space', got {tokenizer!r}")
        c = model.config
        if len(src_vocab) != c.src_vocab_size or len(tgt_vocab) != c.tgt_vocab_size:
            raise ValueError(f"vocabulary sizes ({len(src_vocab)}, {len(tgt_vocab)}) do not match the model "
                             f"({c.src_vocab_size}, {c.tgt_vocab_size})")
        self.model = model
        self.src_vocab = list(src_vocab)
        self.tgt_vocab = list(tgt_vocab)
        self.tokenizer = tokenizer
        self._src_index = {t: i for i, t in enumerate(self.src_vocab)}

    @classmethod
    def load(cls, path: "os.PathLike[str] | str", *, compute_type: Optional[str] = None) -> "TextTranslator":
        """A model file written by Transformer.save(..., metadata={"vocab": ...});
        compute_type as for :meth:`Transformer.load`."""
        model = Transformer.load(path, compute_type=compute_type)
        if "vocab" not in model.metadata:
            raise ValueError(f"{os.fspath(path)!r} has no vocabulary (metadata 'vocab'): translate token ids instead")
        try:
            vocab = json.loads(model.metadata["vocab"])
            return cls(model, vocab["src"], vocab["tgt"], vocab.get("tokenizer", "char"))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{os.fspath(path)!r} has a malformed vocabulary: {e}") from None

    def tokenize(self, text: str) -> List[str]:
        return list(text) if self.tokenizer == "char" else text.split()

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens) if self.tokenizer == "char" else " ".join(tokens)

    def encode_text(self, text: str) -> List[int]:
        """Source ids of ``text`` followed by end-of-sequence; unknown tokens raise."""
        ids = []
        for tok in self.tokenize(text):
            if tok not in self._src_index:
                raise ValueError(f"{tok!r} in {text!r} is not in the model's source vocabulary")
            ids.append(self._src_index[tok])
        ids.append(self.model.config.eos_id)
        if len(ids) > self.model.config.max_length:
            raise ValueError(f"{text!r} is longer than the model's max_length ({self.model.config.max_length})")
        return ids

    def translate(self, texts: Sequence[str], *, beam_size: int = 4, max_length: int = 64,
                  attention: bool = False, **options: Any) -> List[Translation]:
        """Translate each text (one batch); options as for Transformer.generate."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings")
        if not texts:
            return []
        encoded = [self.encode_text(t) for t in texts]
        lengths = np.array([len(e) for e in encoded], np.int32)
        src = np.full((len(texts), int(lengths.max())), self.model.config.pad_id, np.int32)
        for i, e in enumerate(encoded):
            src[i, :len(e)] = e
        t0 = time.perf_counter()
        results = self.model.generate(src, lengths, beam_size=beam_size, max_length=max_length, **options)
        seconds = (time.perf_counter() - t0) / len(texts)
        out = []
        for i, (text, r) in enumerate(zip(texts, results)):
            ids = r.sequences[0]
            tokens = [self.tgt_vocab[t] for t in ids]
            att = None
            if attention:
                c = self.model.config
                tgt = np.array([[c.bos_id] + ids], np.int32)
                mem = self.model.encode(src[i:i + 1, :lengths[i]])
                _, att = self.model.decode(tgt, mem, return_attention=True)
                att = att[0]
            out.append(Translation(text, self.detokenize(tokens), float(r.scores[0]) if r.scores else float("nan"),
                                   seconds, self.tokenize(text), tokens, att))
        return out


def load_demo(*, compute_type: Optional[str] = None) -> TextTranslator:
    """The bundled demo: a small Transformer that rewrites dates as ISO 8601.

    >>> demo = pytransformer.load_demo()
    >>> demo.translate(["25th of November 2026", "11/25/26"])[0].text
    '2026-11-25'

    Trained by tools/train_demo.py (character level, 3+3 layers, d_model 64).
    """
    if not os.path.isfile(_DEMO_FILE):
        raise FileNotFoundError(f"the demo model is missing from the installation ({_DEMO_FILE})")
    return TextTranslator.load(_DEMO_FILE, compute_type=compute_type)

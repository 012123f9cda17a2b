"""The ``pytransformer`` command line (also ``python -m pytransformer``).

Subcommands:
  demo       the bundled model: dates in any common form -> ISO 8601, with beam search
  translate  run a saved pytransformer model over lines of text (or of token ids)
  bench      speed of a Transformer-base-sized model: encoding and greedy generation
  info       runtime and versions
  embed      sentence embeddings (or cosine similarities) with a BERT-style model folder

Errors print one line to stderr and exit with status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional


class CliError(Exception):
    """An error to report as one line, without a traceback."""


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    import pytransformer as pt

    info = pt.runtime_info()
    info["numpy"] = np.__version__
    info["python"] = sys.version.split()[0]
    for name in ("safetensors", "tokenizers", "tqdm", "torch"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "installed")
        except ImportError:
            info[name] = None
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:15s} {value}")
    return 0


def _read_texts(texts: List[str], input_file: Optional[str]) -> List[str]:
    if input_file:
        try:
            with (sys.stdin if input_file == "-" else open(input_file, encoding="utf-8")) as f:
                texts = texts + [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise CliError(f"cannot read {input_file}: {e.strerror}") from None
    if not texts:
        raise CliError("no texts: give them as arguments or with --input FILE (- for stdin)")
    return texts


def _load_model_file(path: str, compute_type=None):
    """A .safetensors file written by Transformer.save or EncoderModel.save."""
    import pytransformer as pt
    from pytransformer.weights import _SafetensorsFile

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file or folder: {path!r}")
    fmt = _SafetensorsFile(path).metadata.get("format")
    cls = pt.EncoderModel if fmt == "pytransformer.EncoderModel" else pt.Transformer
    return cls.load(path, compute_type=compute_type)


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    import pytransformer as pt

    texts = _read_texts(args.texts, args.input)
    if args.threads:
        pt.set_num_threads(args.threads)
    try:
        if os.path.isdir(args.model):
            model = pt.from_pretrained(args.model, compute_type=args.compute_type or "float32")
        else:  # a file of EncoderModel.save (pytransformer quantize writes them): default its own compute type
            model = _load_model_file(args.model, args.compute_type)
    except (OSError, ValueError) as e:
        raise CliError(_one_line(e)) from None
    if not isinstance(model, pt.EncoderModel):
        raise CliError(f"{args.model} is a {type(model).__name__}, not an encoder model: embed needs a BERT-style "
                       "model folder or a file written by EncoderModel.save")
    try:
        vectors = model.embed(texts, batch_size=args.batch_size, normalize=not args.no_normalize,
                              progress=args.progress)
    except (RuntimeError, ValueError) as e:
        raise CliError(str(e)) from None
    if args.similarity:
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sims = unit @ unit.T
        if args.json:
            print(json.dumps({"texts": texts, "similarity": np.round(sims, 6).tolist()}))
        else:
            width = max(len(str(i)) for i in range(len(texts)))
            for i, t in enumerate(texts):
                print(f"[{i:>{width}}] {t}")
            print(" " * (width + 2) + "".join(f"{f'[{j}]':>9s}" for j in range(len(texts))))
            for i in range(len(texts)):
                print(f"[{i:>{width}}] " + "".join(f"{sims[i, j]:9.4f}" for j in range(len(texts))))
        return 0
    if args.json:
        print(json.dumps({"texts": texts, "embeddings": [[round(float(v), 7) for v in row] for row in vectors]}))
    else:
        for t, row in zip(texts, vectors):
            print(t + "\t" + " ".join(f"{v:.{args.precision}g}" for v in row))
    return 0


_SHADES = " .:-=+*#%@"


def _one_line(error: Exception) -> str:
    """A multi-line message (a WeightsError lists problems) folded into one line."""
    lines = [line.strip().lstrip("- ") for line in str(error).splitlines() if line.strip()]
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


def _heat_map(tr) -> List[str]:
    """Cross-attention as text: a row per output token, a column per source char."""
    att = tr.attention
    src = tr.source_tokens + ["</s>"]
    tgt = tr.target_tokens + ["</s>"]
    label = max(len(t) for t in tgt)
    lines = [" " * (label + 3) + "".join(c if len(c) == 1 else "$" for c in src)]
    for i, t in enumerate(tgt):
        row = att[i] / max(float(att[i].max()), 1e-9)
        cells = "".join(_SHADES[min(len(_SHADES) - 1, int(v * (len(_SHADES) - 1) + 0.5))] for v in row)
        lines.append(f"{t:>{label}} | {cells}")
    return lines


def _cmd_demo(args: argparse.Namespace) -> int:
    import pytransformer as pt

    # The demo model is tiny: one thread is as fast, and immune to a busy machine.
    pt.set_num_threads(args.threads or 1)
    try:
        demo = pt.load_demo(compute_type=args.compute_type)
    except (OSError, ValueError) as e:
        raise CliError(str(e)) from None
    texts = args.texts or pt.text.DEMO_EXAMPLES
    try:
        demo.translate(texts[:1], beam_size=args.beam_size)  # warm-up: thread pool and caches
        results = [demo.translate([t], beam_size=args.beam_size, attention=args.attention)[0] for t in texts]
    except ValueError as e:
        raise CliError(str(e)) from None
    width = max(len(t) for t in texts)
    print(f"pytransformer {pt.__version__} demo: dates -> ISO 8601 ({pt.runtime_info()['isa']}, "
          f"{pt.get_num_threads()} threads, beam size {args.beam_size})")
    for r in results:
        print(f"{r.source:>{width}} -> {r.text:10s}  score {r.score:8.4f}  {r.seconds * 1e3:6.2f} ms")
        if args.attention:
            print()
            for line in _heat_map(r):
                print("    " + line)
            print()
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    import numpy as np

    import pytransformer as pt

    if args.threads:
        pt.set_num_threads(args.threads)
    try:
        model = pt.Transformer.load(args.model, compute_type=args.compute_type)
    except (OSError, ValueError) as e:
        raise CliError(_one_line(e)) from None
    try:
        if args.input and args.input != "-":
            with open(args.input, encoding="utf-8") as f:
                lines = [line.rstrip("\n") for line in f]
        else:
            lines = [line.rstrip("\n") for line in sys.stdin]
    except OSError as e:
        raise CliError(f"cannot read {args.input}: {e.strerror}") from None
    text_mode = "vocab" in model.metadata and not args.ids
    translator = pt.TextTranslator.load(args.model) if text_mode else None
    max_length = args.max_length if args.max_length is not None else min(256, model.config.max_length)
    options = dict(beam_size=args.beam_size, max_length=max_length)
    out_lines: List[str] = []
    batches = range(0, len(lines), args.batch_size)
    show = args.progress or (args.progress is None and len(lines) > 200 and sys.stderr.isatty())
    if show:
        try:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=len(batches), unit="batch", desc="translate")
        except ImportError:
            pass
    try:
        for start in batches:
            chunk = lines[start:start + args.batch_size]
            if text_mode:
                out_lines += [r.text for r in translator.translate(chunk, **options)]
                continue
            rows = []
            for n, line in enumerate(chunk, start + 1):
                try:
                    rows.append([int(t) for t in line.split()] + [model.config.eos_id])
                except ValueError:
                    raise CliError(f"line {n}: expected space-separated token ids (this model has no vocabulary), "
                                   f"got {line[:40]!r}") from None
            lengths = np.array([len(r) for r in rows], np.int32)
            src = np.full((len(rows), max(lengths)), model.config.pad_id, np.int64)
            for i, r in enumerate(rows):
                src[i, :len(r)] = r
            out_lines += [" ".join(map(str, r.sequences[0])) for r in model.generate(src, lengths, **options)]
    except ValueError as e:
        raise CliError(str(e)) from None
    text = "".join(line + "\n" for line in out_lines)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise CliError(f"cannot write {args.output}: {e.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    import pytransformer as pt

    src = os.fspath(args.input)
    try:
        if os.path.isdir(src):
            model = pt.from_pretrained(src, compute_type="int8")
        else:
            model = _load_model_file(src, compute_type="int8")
        model.save(args.output, metadata=getattr(model, "metadata", None) or None)
    except (OSError, ValueError) as e:
        raise CliError(_one_line(e)) from None
    original = src if os.path.isfile(src) else os.path.join(src, "model.safetensors")
    a, b = os.path.getsize(original) if os.path.isfile(original) else None, os.path.getsize(args.output)
    ratio = f" ({b / a:.2f}x of {a:,} bytes)" if a else ""
    print(f"wrote {args.output}: int8, {b:,} bytes{ratio}")
    return 0


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def format_transcript(segments, fmt: str, info=None) -> str:
    """segments as txt (one line per segment), srt, vtt or json."""
    if fmt == "txt":
        return "".join(s.text.strip() + "\n" for s in segments)
    if fmt == "srt":
        return "\n".join(f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
                         for i, s in enumerate(segments, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n"
                                         for s in segments)
    if fmt == "json":
        out = {"segments": [{"id": s.id, "seek": s.seek, "start": round(s.start, 3), "end": round(s.end, 3),
                             "text": s.text, "tokens": list(s.tokens), "avg_logprob": s.avg_logprob,
                             "no_speech_prob": s.no_speech_prob, "temperature": s.temperature,
                             "compression_ratio": s.compression_ratio} for s in segments],
               "text": "".join(s.text for s in segments)}
        if info is not None:
            out.update(language=info.language, duration=round(info.duration, 3))
        return json.dumps(out, ensure_ascii=False, indent=1) + "\n"
    raise ValueError(f"unknown output format {fmt!r}")


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import pytransformer as pt
    from pytransformer.audio import AudioError

    if args.threads:
        pt.set_num_threads(args.threads)
    try:
        model = pt.from_pretrained(args.model, compute_type=args.compute_type)
    except (OSError, ValueError) as e:
        raise CliError(_one_line(e)) from None
    if not isinstance(model, pt.WhisperModel):
        raise CliError(f"{args.model} is a {type(model).__name__}, not a Whisper model")
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    failed = 0
    for path in args.audio:
        bar = _ProgressLine(path) if args.progress else None
        try:
            segments, info = model.transcribe(
                path, language=args.language, task=args.task, beam_size=args.beam_size,
                without_timestamps=args.without_timestamps, condition_on_previous_text=not args.no_previous_text,
                temperature=0.0 if args.no_fallback else (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                initial_prompt=args.initial_prompt, progress=bar)
        except (OSError, ValueError, RuntimeError, AudioError) as e:
            if bar:
                bar.close()
            print(f"pytransformer transcribe: error: {path}: {_one_line(e)}", file=sys.stderr)
            failed += 1
            continue
        if bar:
            bar.close()
        text = format_transcript(segments, args.output_format, info)
        if args.output_dir:
            base = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(args.output_dir, f"{base}.{args.output_format}")
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
            print(out, file=sys.stderr)
        else:
            if len(args.audio) > 1 and args.output_format == "txt":
                print(f"== {path}")
            sys.stdout.write(text)
    return 1 if failed else 0


class _ProgressLine:
    """A one-line progress bar on stderr: seconds of audio done / total."""

    def __init__(self, name: str):
        self.name = os.path.basename(name)

    def __call__(self, done: float, total: float) -> None:
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r{self.name}: [{bar:<30s}] {done:7.1f}/{total:.1f} s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytransformer", description="Fast CPU inference for Transformer models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="the bundled demo model: dates -> ISO 8601",
                       description="Rewrite dates given in any common form as ISO 8601 dates with the bundled "
                                   "Transformer (beam search); prints input -> output, score and time.")
    p.add_argument("texts", nargs="*", help="dates to rewrite (default: a few built-in examples)")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--attention", action="store_true",
                   help="show which source characters each output character looked at")
    p.add_argument("--threads", type=int, help="threads to use (default: 1; the model is small)")
    p.add_argument("--compute-type", choices=("float32", "int8"), default=None,
                   help="float32 or int8 (int8 linear layers and embeddings; default: float32)")

    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("translate", help="run a saved model over lines of text or token ids",
                       description="Translate each input line with a pytransformer .safetensors model. Models "
                                   "saved with a vocabulary read and write text; others read and write "
                                   "space-separated token ids (end-of-sequence is appended to inputs).")
    p.add_argument("--model", required=True, help="a .safetensors file written by Transformer.save")
    p.add_argument("--input", metavar="FILE", help="input lines (default: stdin)")
    p.add_argument("--output", metavar="FILE", help="output lines (default: stdout)")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=None,
                   help="most tokens generated per line (default: the model's max_length, at most 256)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ids", action="store_true", help="read/write token ids even if the model has a vocabulary")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on for long inputs when stderr is a terminal; needs tqdm)")
    p.add_argument("--threads", type=int, help="threads to use (default: physical cores)")
    p.add_argument("--compute-type", choices=("float32", "int8"), default=None,
                   help="float32 or int8 (int8 linear layers and embeddings; default: the file's own)")
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser("bench", help="speed on a Transformer-base-sized random model",
                       description="Encoding and greedy generation (64 tokens) of a random Transformer-base model "
                                   "(d_model 512, 6+6 layers, vocab 32000) at a few batch sizes and thread counts.")
    p.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default: 1 and all cores)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes (default: 1 16)")
    p.add_argument("--tokens", type=int, default=64, help="tokens generated per sentence (default 64)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compare", action="store_true",
                   help="also run PyTorch (Hugging Face transformers) and CTranslate2 on the same model when installed")
    p.add_argument("--compute-type", choices=("float32", "int8"), default="float32",
                   help="pytransformer's compute type (default: float32)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("quantize", help="write an int8 copy of a model",
                       description="Load a model (a .safetensors file written by Transformer.save or "
                                   "EncoderModel.save, or a Hugging Face folder: encoder-decoder or BERT-style "
                                   "encoder), quantize its linear layers and embedding tables to int8 (a float32 "
                                   "scale per row) and save it as one file; its metadata (vocabulary; an encoder's "
                                   "tokenizer and pooling) is kept.")
    p.add_argument("input", help="a .safetensors model file or a Hugging Face model folder")
    p.add_argument("output", help="the int8 .safetensors file to write")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("transcribe", help="speech to text with a Whisper model folder",
                       description="Transcribe audio files (WAV; mp3, m4a, flac, ... with PyAV installed) with a "
                                   "Whisper model: a Hugging Face folder or a CTranslate2 folder (faster-whisper's). "
                                   "Decoding follows faster-whisper's defaults.")
    p.add_argument("--model", required=True, help="Whisper model folder (Hugging Face or CTranslate2)")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--language", default=None, help="language code (multilingual models; default: en)")
    p.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--compute-type", choices=("float32", "int8"), default="float32")
    p.add_argument("--without-timestamps", action="store_true", help="decode without timestamp tokens")
    p.add_argument("--no-previous-text", action="store_true",
                   help="do not condition each window on the text before it")
    p.add_argument("--no-fallback", action="store_true", help="temperature 0 only (no sampling fallback)")
    p.add_argument("--initial-prompt", default=None, help="text that conditions the first window")
    p.add_argument("--output-format", choices=("txt", "srt", "vtt", "json"), default="txt")
    p.add_argument("--output-dir", default=None, help="write <audio name>.<format> files here instead of stdout")
    p.add_argument("--threads", type=int, help="threads to use (default: physical cores)")
    p.add_argument("--progress", action="store_true", help="show progress over each file's audio on stderr")
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("info", help="runtime (instruction set, threads) and versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("embed", help="sentence embeddings with a BERT-style model folder",
                       description="Print sentence embeddings (one line per text: the text, a tab, the numbers), "
                                   "or with --similarity the matrix of cosine similarities.")
    p.add_argument("--model", required=True, help="model folder (config.json, model.safetensors, tokenizer.json), "
                                                  "or a file written by EncoderModel.save / pytransformer quantize")
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--input", metavar="FILE", help="read more texts from FILE, one per line (- for stdin)")
    p.add_argument("--similarity", action="store_true", help="print cosine similarities instead of vectors")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-normalize", action="store_true", help="do not scale embeddings to unit length")
    p.add_argument("--threads", type=int, help="threads to use (default: physical cores)")
    p.add_argument("--precision", type=int, default=6, help="significant digits printed (default 6)")
    p.add_argument("--compute-type", choices=("float32", "int8"), default=None,
                   help="float32 or int8 (int8 linear layers and embeddings; default: float32 for a folder, "
                        "the file's own for a file)")

    p.add_argument("--progress", action="store_true", help="show a progress bar (needs tqdm)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_embed)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) < 1:
        parser.error("--batch-size must be >= 1")
    threads = getattr(args, "threads", None)
    if threads is not None and min(threads if isinstance(threads, list) else [threads]) < 1:
        parser.error("--threads must be >= 1")
    for name in ("beam_size", "max_length", "tokens", "repeats"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    try:
        return args.func(args)
    except CliError as e:
        print(f"pytransformer {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``pytransformer`` command line (also ``python -m pytransformer``).

Subcommands:
  info       runtime and versions
  embed      sentence embeddings (or cosine similarities) with a BERT-style model folder

Errors print one line to stderr and exit with status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
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


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    import pytransformer as pt

    texts = _read_texts(args.texts, args.input)
    if args.threads:
        pt.set_num_threads(args.threads)
    try:
        model = pt.from_pretrained(args.model)
    except (OSError, ValueError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    if not isinstance(model, pt.EncoderModel):
        raise CliError(f"{args.model} is a {type(model).__name__}, not an encoder model: embed needs a BERT-style "
                       "model folder")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytransformer", description="Fast CPU inference for Transformer models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="runtime (instruction set, threads) and versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("embed", help="sentence embeddings with a BERT-style model folder",
                       description="Print sentence embeddings (one line per text: the text, a tab, the numbers), "
                                   "or with --similarity the matrix of cosine similarities.")
    p.add_argument("--model", required=True, help="model folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--input", metavar="FILE", help="read more texts from FILE, one per line (- for stdin)")
    p.add_argument("--similarity", action="store_true", help="print cosine similarities instead of vectors")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-normalize", action="store_true", help="do not scale embeddings to unit length")
    p.add_argument("--threads", type=int, help="threads to use (default: physical cores)")
    p.add_argument("--precision", type=int, default=6, help="significant digits printed (default 6)")
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
    if getattr(args, "threads", None) is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
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

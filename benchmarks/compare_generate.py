#!/usr/bin/env python3
"""pytransformer's generate against Hugging Face transformers and CTranslate2, side by side in one run.

One model for everyone: a Hugging Face MarianMTModel of Transformer-base shapes
(d_model 512, 8 heads, 6+6 layers, FFN 2048 ReLU, post-LN, vocabulary 32000,
scale_embedding, shared and tied embeddings, static sinusoidal positions, float32),
random weights (seed 1234), saved with save_pretrained. The three implementations
run those same weights:

    pt     pt.from_pretrained(<the saved folder>).generate(src, max_length=64,
           min_length=64, beam_size=K, return_scores=False)  (no suppress_tokens,
           no forced_eos)
    hf     model.generate(input_ids, attention_mask, num_beams=K, do_sample=False,
           min_new_tokens=64, max_new_tokens=64, early_stopping=False), sdpa attention,
           inference_mode; the config has forced_eos_token_id=None and no bad_words_ids
    ct2    ctranslate2.Translator(<the folder converted with the converter of
           ct2-transformers-converter, float32>).translate_batch(tokens, beam_size=K,
           min_decoding_length=64, max_decoding_length=64), in a worker process of its
           own (see _common.Worker); num_hypotheses 1

Cases (--cases): greedy:1 and greedy:16 (greedy search, batch 1 and 16) and beam4:1
(beam search with 4 beams, batch 1, one hypothesis returned), sources of 32 random
tokens ending in </s>, no padding. min = max length forces exactly 64 new tokens
(end-of-sequence is suppressed until then), and every output is checked to have 64.
tok/s = B * 64 / total time (encoder included; beam search counts the 64 tokens of the
returned hypothesis, not K x 64); ms/step = total time / 64. Ratios pt/x = x's time /
pt's time (> 1: pt faster).

Checks: teacher-forced logits of pt (encode + decode) against HF's forward on the
same weights (max |diff|, must be float32 rounding); for every case and thread count,
the share of pt's and CTranslate2's generated tokens equal to HF's, position by
position ("pt=hf", "ct2=hf"). Near-ties of the logits can make two correct float32
implementations pick different tokens, after which a sequence diverges, so agreement
is reported, and the run stops only when pt agrees with HF on less than half the
tokens of a case. HF's default initialisation (std 0.02) with tied embeddings makes
greedy search repeat one token for every source; the weights of the last decoder
layer's fc2 are multiplied by 100 so that outputs depend on the source and the position
(and the agreement check means something). Cost does not depend on the values.

Method: as compare_model.py (benchmarks/_common.py): per case and thread count every
implementation is warmed up, then --repeats rounds each take one sample of every
implementation in an order that rotates from round to round; the table shows medians.
"other" is the CPU share other processes used while timing (/proc/stat); samples
disturbed by more than --max-other are measured again, rows over 10% are marked "!".
pt and hf run in this process (they take turns on one libgomp); CTranslate2 runs in a
worker process of its own (its own libgomp; sharing one would make libgomp stop
spinning with 4 OpenMP threads on 2 CPUs). CTranslate2 picks its float32 GEMM backend
itself (Intel MKL on Intel CPUs, oneDNN on AMD; the ctranslate2 line names it), and
CT2_USE_MKL=0 / 1 in the environment forces one; on a 2-core Intel VM, MKL decoding did
not get faster with a second thread while oneDNN did, so compare both there.

int8 (--compute-types, default float32,int8): the same weights quantized by each
implementation its own way, timed in the same rounds:

    pt.i8    pt.from_pretrained(<folder>, compute_type="int8"): int8 weights with a float32
             scale per output row, activations quantized per row at run time, int32 sums
    ct2.i8   the folder converted with the converter's quantization="int8" (the command
             line's --quantization int8), Translator(compute_type="int8"), a worker process
    hf.i8    torch.ao.quantization.quantize_dynamic(<the HF model>, {nn.Linear}, qint8)
             (PyTorch dynamic int8 on every Linear, fbgemm), generate as hf

ONNX Runtime is not run here: an ONNX export of Marian's decoder with its KV cache
needs more than torch.onnx.export of the model (compare_model.py and compare_embed.py
run ONNX Runtime on the encoder). pt.i8/pt is pt int8 against pt float32; int8
outputs are compared with HF float32's ("=hf" columns) and reported, not required.

Memory and files (--memory, on by default): for each of pt, pt.i8, ct2 and ct2.i8, a
fresh process imports the library, loads the model (pt: the file model.save() wrote,
float32 or int8; CTranslate2: its converted folder) and runs greedy 1x32 once; the
table gives the file size and the peak RSS above the import's.

Usage:
    python benchmarks/compare_generate.py                  # threads 1 and 2, all cases, hf and ct2
    python benchmarks/compare_generate.py --quick --markdown
    python benchmarks/compare_generate.py --threads 2 --cases greedy:16 --peers ct2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

if __package__:  # imported as benchmarks.compare_generate (asv's discovery, python -m)
    from . import _common as bc
else:  # run as a script: benchmarks/ is on sys.path
    import _common as bc

import pytransformer as pt  # noqa: E402

PEERS = ("hf", "ct2")
CASES = [(1, 1), (1, 16), (4, 1)]  # (beam size, batch)
SRC_LEN = 32
NEW_TOKENS = 64
LIVELY = 100.0  # the last decoder layer's fc2 weights are multiplied by this (see the docstring)
GROUP = "gen"


def case_label(beam: int, batch: int) -> str:
    return f"{'greedy' if beam == 1 else f'beam{beam}'} {batch}x{SRC_LEN}"


# -- CTranslate2 (these run in the worker process) --------------------------------------


def ct2_translate(translator, tokens, beam):
    return translator.translate_batch(tokens, beam_size=beam, num_hypotheses=1, min_decoding_length=NEW_TOKENS,
                                      max_decoding_length=NEW_TOKENS)


def ct2_hypotheses(results):
    return [list(r.hypotheses[0]) for r in results]


# -- the memory probe (these run in a fresh worker process) --------------------------------


def pt_load(path: str):
    pt.set_num_threads(1)
    return pt.Transformer.load(path)


def pt_greedy(model, src):
    return model.generate(src, max_length=NEW_TOKENS, min_length=NEW_TOKENS, beam_size=1, return_scores=False)


def ct2_greedy(translator, tokens):
    return ct2_translate(translator, tokens, 1)


# -- the models ---------------------------------------------------------------------------


class Models:
    """The HF Marian model, pt's copy of it, and CTranslate2's conversion (in a worker)."""

    def __init__(self, wanted, compute_types, workdir):
        self.notes: list[str] = []
        self.wanted = set(wanted)
        self.int8 = "int8" in compute_types
        self.ct2 = self.ct2_worker = self.ct2_i8_worker = None
        self.ct2_loads = []
        self.ct2_backend = ""
        self.workdir = workdir
        try:
            import torch
            import transformers
        except ImportError as e:
            sys.exit(f"compare_generate.py needs torch and transformers to build the Marian model that every "
                     f"implementation runs ({e}): pip install torch==2.13.0 transformers")
        transformers.logging.set_verbosity_error()
        self.torch, self.transformers = torch, transformers
        torch.manual_seed(bc.SEED)
        self.hf = transformers.MarianMTModel(bc.marian_config(transformers)).eval()
        with torch.no_grad():
            self.hf.model.decoder.layers[-1].fc2.weight.mul_(LIVELY)
        self.hf_params = sum(p.numel() for p in self.hf.parameters())
        self.folder = os.path.join(workdir, "marian-generate-hf")
        # The tokenizer.json that save_marian_folder adds is for the converter; pt ignores it.
        bc.save_marian_folder(transformers, self.hf, self.folder)
        self.pt = pt.from_pretrained(self.folder)
        self.pt_i8 = self.hf_i8 = None
        if self.int8:
            self.pt_i8 = pt.from_pretrained(self.folder, compute_type="int8")
            if "hf" in self.wanted:
                import copy

                torch.backends.quantized.engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines \
                    else torch.backends.quantized.engine
                with warnings.catch_warnings():  # torch.ao's deprecation notices
                    warnings.simplefilter("ignore")
                    self.hf_i8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(self.hf), {torch.nn.Linear},
                                                                        dtype=torch.qint8).eval()
        if "ct2" in self.wanted:
            self._build_ct2(workdir)

    def _build_ct2(self, workdir):
        try:
            import ctranslate2
        except ImportError as e:
            self.notes.append(f"ct2: skipped (ctranslate2 not importable: {e}; pip install ctranslate2)")
            self.wanted.discard("ct2")
            return
        try:
            t0 = time.perf_counter()
            self.ct2_dir = os.path.join(workdir, "marian-generate-ct2-float32")
            stamp = {"seed": bc.SEED, "lively": LIVELY, "config": self.hf.config.to_dict(),
                     "torch": self.torch.__version__, "ctranslate2": ctranslate2.__version__}
            if not bc.cached(self.ct2_dir, stamp, lambda out: bc.ct2_convert(self.folder, out)):
                print(f"  converted the Marian model for CTranslate2 in {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
            self.ct2_worker = bc.Worker()
            self.ct2_backend = bc.ct2_backend(self.ct2_worker, "Translator", self.ct2_dir)
            self.ct2_loads = [(self.ct2_worker, self.ct2_dir, "float32")]
            if self.int8:
                self.ct2_i8_dir = os.path.join(workdir, "marian-generate-ct2-int8")
                bc.cached(self.ct2_i8_dir, dict(stamp, quantization="int8"),
                          lambda out: bc.ct2_convert(self.folder, out, quantization="int8"))
                self.ct2_i8_worker = bc.Worker()
                self.ct2_loads.append((self.ct2_i8_worker, self.ct2_i8_dir, "int8"))
            self.ct2 = ctranslate2
        except Exception as e:  # noqa: BLE001 - a peer that cannot be built is skipped, not fatal
            self.notes.append(f"ct2: skipped (conversion or loading failed: {type(e).__name__}: {e})")
            self.wanted.discard("ct2")
            self.close()

    def close(self):
        workers = [self.ct2_worker, self.ct2_i8_worker]
        self.ct2_worker = self.ct2_i8_worker = None
        self.ct2_loads = []
        for worker in workers:
            if worker is not None:
                worker.close()

    def memory_rows(self) -> list[list[str]]:
        """File size and peak RSS (above the library's import) per implementation and
        compute type, each in a fresh process running greedy 1x32 once."""
        src = sources(np.random.default_rng(5), 1)
        tokens = [[bc.marian_token(int(i)) for i in r] for r in src]
        probes = []
        f32 = os.path.join(self.workdir, "pt-float32.safetensors")
        self.pt.save(f32)
        probes.append(("pt", "float32", f32, ("pytransformer", pt_load, (f32,), pt_greedy, (src,))))
        if self.int8:
            i8 = os.path.join(self.workdir, "pt-int8.safetensors")
            self.pt_i8.save(i8)
            probes.append(("pt.i8", "int8", i8, ("pytransformer", pt_load, (i8,), pt_greedy, (src,))))
        for worker, model_dir, compute_type in self.ct2_loads:
            probes.append(("ct2" if compute_type == "float32" else "ct2.i8", compute_type, model_dir,
                           ("ctranslate2", bc.ct2_load, ("Translator", model_dir, 1, compute_type), ct2_greedy,
                            (tokens,))))
        rows, base = [], {}
        for name, compute_type, path, probe in probes:
            size = bc.folder_bytes(path)
            mem = bc.memory_probe(*probe)
            lib = name.split(".")[0]
            base.setdefault(lib, (size, mem["model"]))
            rows.append([name, compute_type, f"{size / 1e6:.1f}", f"{size / base[lib][0]:.2f}x",
                         f"{mem['model'] / 1e6:.0f}", f"{mem['model'] / base[lib][1]:.2f}x",
                         f"{mem['peak'] / 1e6:.0f}"])
        return rows

    def machine_lines(self) -> list[str]:
        lines = bc.base_machine_lines() + [
            bc.torch_line(self.torch),
            f"transformers {self.transformers.__version__}: MarianMTModel, attention "
            f"{self.hf.config._attn_implementation}, {self.hf_params:,} parameters"]
        if self.ct2 is not None:
            lines.append(f"ctranslate2 {self.ct2.__version__} (in a worker process of its own): float32"
                         + (" and int8 (a second worker)" if self.int8 else "") + ", inter_threads=1, "
                         "intra_threads = threads" + (f"; {self.ct2_backend}" if self.ct2_backend else ""))
        if self.int8:
            info = pt.runtime_info()
            lines.append(f"pt int8 kernel: {info.get('int8_kernel')} (float32 ISA {info['isa']})"
                         + (f"; torch dynamic int8 engine {self.torch.backends.quantized.engine}"
                            if self.hf_i8 is not None else ""))
        lines.append(bc.env_line())
        return lines

    def parity_line(self) -> str:
        """Teacher-forced logits, pt against HF, on a 2x32 source and 16 target tokens."""
        torch = self.torch
        rng = np.random.default_rng(7)
        src = sources(rng, 2)
        tgt = rng.integers(3, bc.VOCAB - 1, (2, 16))
        tgt[:, 0] = self.pt.config.bos_id
        with torch.inference_mode():
            ref = self.hf(input_ids=torch.from_numpy(src), decoder_input_ids=torch.from_numpy(tgt)).logits.numpy()
        got = self.pt.decode(tgt, self.pt.encode(src))
        diff, top = float(np.abs(got - ref).max()), float(np.abs(ref).max())
        line = (f"parity pt vs HF (same weights, teacher-forced logits [2,16,32000] on a 2x32 source): "
                f"max|diff| {diff:.1e} (max|logit| {top:.2f})")
        if not diff <= 1e-3 * max(1.0, top):
            sys.exit(f"{line}: pt and HF disagree beyond float32 rounding, the comparison would not be of the "
                     "same model")
        return line


def sources(rng, batch):
    """Random Marian source ids (3 .. 31998: no </s>, <unk> or <pad> inside) ending in </s> = 0."""
    ids = rng.integers(3, bc.VOCAB - 1, (batch, SRC_LEN))
    ids[:, -1] = 0
    return ids


def require(ok: bool, message: str) -> None:
    if not ok:
        sys.exit(f"compare_generate.py: {message}")


def agreement(got: np.ndarray, ref: np.ndarray):
    """(share of equal tokens, rows entirely equal)."""
    return float((got == ref).mean()), int((got == ref).all(axis=1).sum())


def run_case(beam, batch, threads, models, args):
    torch = models.torch
    torch.set_num_threads(threads)
    pt.set_num_threads(threads)
    src = sources(np.random.default_rng([bc.SEED, beam, batch]), batch)
    src_t = torch.from_numpy(src)
    mask_t = torch.ones_like(src_t)
    m, hf = models.pt, models.hf

    def pt_generate():
        return m.generate(src, max_length=NEW_TOKENS, min_length=NEW_TOKENS, beam_size=beam, return_scores=False)

    def hf_generate(model=hf):
        return model.generate(input_ids=src_t, attention_mask=mask_t, num_beams=beam, do_sample=False,
                              min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS, early_stopping=False)

    def pt_i8_generate():
        return models.pt_i8.generate(src, max_length=NEW_TOKENS, min_length=NEW_TOKENS, beam_size=beam,
                                     return_scores=False)

    tokens = [[bc.marian_token(int(i)) for i in r] for r in src]
    impls = {"pt": (bc.local(pt_generate), GROUP)}
    if "hf" in models.wanted:
        impls["hf"] = (bc.local(hf_generate), GROUP)
    if models.ct2 is not None:
        models.ct2_worker.prepare(ct2_translate, tokens, beam)
        impls["ct2"] = (models.ct2_worker.sample, GROUP)
    if models.pt_i8 is not None:
        impls["pt.i8"] = (bc.local(pt_i8_generate), GROUP)
    if models.hf_i8 is not None:
        impls["hf.i8"] = (bc.local(lambda: hf_generate(models.hf_i8)), GROUP)
    if models.ct2_i8_worker is not None:
        models.ct2_i8_worker.prepare(ct2_translate, tokens, beam)
        impls["ct2.i8"] = (models.ct2_i8_worker.sample, GROUP)

    # Outputs: exactly 64 new tokens everywhere, and agreement with HF.
    label = f"{case_label(beam, batch)} threads={threads}"
    got = np.array([r.sequences[0] for r in pt_generate()])
    require(got.shape == (batch, NEW_TOKENS), f"{label}: pt generated {got.shape[1]} tokens, not {NEW_TOKENS}")
    row = {"case": (beam, batch), "threads": threads, "pt=hf": None, "ct2=hf": None,
           "distinct": len(np.unique(got)), "pt.i8=hf": None, "ct2.i8=hf": None, "hf.i8=hf": None}
    with torch.inference_mode():
        out = hf_generate().numpy()
    ref = out[:, 1:]
    require(out.shape == (batch, 1 + NEW_TOKENS) and not (ref == hf.config.eos_token_id).any(),
            f"{label}: HF did not generate {NEW_TOKENS} new tokens (shape {out.shape}, or </s> inside)")
    row["pt=hf"] = agreement(got, ref)
    if row["pt=hf"][0] < 0.5:
        sys.exit(f"{label}: only {100 * row['pt=hf'][0]:.0f}% of pt's tokens equal HF's: not the same model?")
    if models.ct2 is not None:
        hyps = models.ct2_worker.output(ct2_hypotheses)
        lengths = {len(h) for h in hyps}
        require(lengths == {NEW_TOKENS}, f"{label}: CTranslate2 generated {sorted(lengths)} tokens, not {NEW_TOKENS}")
        ids = {bc.marian_token(i): i for i in np.unique(ref)}
        row["ct2=hf"] = agreement(np.array([[ids.get(t, -1) for t in h] for h in hyps]), ref)
    # int8: agreement with HF float32, reported (quantization changes near-ties; not required).
    if models.pt_i8 is not None:
        got8 = np.array([r.sequences[0] for r in pt_i8_generate()])
        require(got8.shape == (batch, NEW_TOKENS), f"{label}: pt int8 generated {got8.shape[1]} tokens")
        row["pt.i8=hf"] = agreement(got8, ref)
    if models.hf_i8 is not None:
        with torch.inference_mode():
            out8 = hf_generate(models.hf_i8).numpy()
        require(out8.shape == (batch, 1 + NEW_TOKENS), f"{label}: HF dynamic int8 output shape {out8.shape}")
        row["hf.i8=hf"] = agreement(out8[:, 1:], ref)
    if models.ct2_i8_worker is not None:
        hyps = models.ct2_i8_worker.output(ct2_hypotheses)
        require({len(h) for h in hyps} == {NEW_TOKENS}, f"{label}: CTranslate2 int8 did not generate {NEW_TOKENS}")
        ids = {bc.marian_token(i): i for i in range(bc.VOCAB)}
        row["ct2.i8=hf"] = agreement(np.array([[ids.get(t, -1) for t in h] for h in hyps]), ref)

    loads = {GROUP: bc.OtherLoad()}
    with torch.inference_mode():
        samples = bc.measure(impls, args, loads)
    row["loads"] = loads
    for name, entry in bc.summarize(samples).items():
        row[name] = dict(entry, tok_s=batch * NEW_TOKENS / entry["median"], step=entry["median"] / NEW_TOKENS)
    return row


# -- arguments and output -------------------------------------------------------------------


def parse_case(s: str):
    """greedy:B or beamK:B (batch B, beam size K)."""
    try:
        mode, b = s.lower().split(":")
        batch = int(b)
        beam = 1 if mode == "greedy" else int(mode[4:]) if mode.startswith("beam") else 0
    except ValueError:
        beam = batch = 0
    if beam < 1 or batch < 1:
        raise argparse.ArgumentTypeError(f"case must be greedy:BATCH or beamK:BATCH (e.g. greedy:16, beam4:1), "
                                         f"got {s!r}")
    return beam, batch


def fmt_agree(a) -> str:
    return "-" if a is None else f"{100 * a[0]:.0f}%"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=parse_case, nargs="+", default=CASES, metavar="CASE",
                   help="greedy:BATCH or beamK:BATCH, sources of 32 tokens (default: greedy:1 greedy:16 beam4:1)")
    p.add_argument("--peers", type=bc.peers_type(PEERS), default=list(PEERS),
                   help="comma-separated peers out of hf,ct2 (default: both; 'none': pt alone)")
    # A sample is one generate call (0.2-5 s): fewer rounds than compare_model.
    p.add_argument("--compute-types", type=bc.compute_types_type, default=["float32", "int8"],
                   help="float32, int8 or float32,int8 (default): int8 adds pt.i8, ct2.i8 and hf.i8")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the file size / peak RSS table (a fresh process per model)")
    bc.add_timing_args(p, repeats=(5, 2))
    args = p.parse_args(argv)
    bc.resolve_timing_args(p, args)

    started = time.time()
    workdir = bc.Workdir(args.workdir, "pt-compare-generate-")
    models = None
    warnings.filterwarnings("ignore", module="transformers")
    try:
        print("  building the models ...", file=sys.stderr, flush=True)
        models = Models(args.peers, args.compute_types, workdir.path)
        info = models.machine_lines()
        checks = [models.parity_line()]
        rows = bc.run_rows(args, models, "Translator",
                           lambda beam, batch, threads: run_case(beam, batch, threads, models, args), case_label)
        memory = models.memory_rows() if args.memory else None
    finally:
        if models is not None:
            models.close()
        workdir.close()

    w = models.wanted
    names = ["pt"] + [n for n in PEERS if n in w]
    cols = [("tok/s", lambda e: bc.fmt_rate(e["tok_s"])), ("ms/step", lambda e: f"{e['step'] * 1e3:.2f}")]
    ratios = [("pt", n) for n in names[1:]]
    extra = [("pt=hf", lambda r: fmt_agree(r["pt=hf"]))]
    if "ct2" in w:
        extra.append(("ct2=hf", lambda r: fmt_agree(r["ct2=hf"])))
    tab = bc.table(rows, GROUP, names, ratios, extra, cols, case=lambda r: case_label(*r["case"]))
    tables = [(f"Generation, float32, {NEW_TOKENS} new tokens (tokens/s, ms per step)", tab, None)]
    if models.int8:
        names8 = ["pt.i8"] + [n for n in ("ct2.i8", "hf.i8") if rows and n in rows[0]]
        ratios8 = [("pt.i8", "pt")] + [("pt.i8", n) for n in names8[1:]]
        extra8 = [(f"{n}=hf", lambda r, n=n: fmt_agree(r[f"{n}=hf"])) for n in names8]
        tables.append((f"Generation, int8, {NEW_TOKENS} new tokens (tokens/s, ms per step)",
                       bc.table(rows, GROUP, names8, ratios8, extra8, cols, case=lambda r: case_label(*r["case"])),
                       None))
    if memory:
        tables.append(("Files and memory (greedy 1x32 once, a fresh process each)",
                       (["impl", "compute", "file MB", "file /f32", "peak RSS above import MB", "RSS /f32",
                         "peak RSS MB"], memory), None))

    model = (f"model: HF MarianMTModel, Transformer-base (d_model {bc.D_MODEL}, {bc.NHEAD} heads, "
             f"{bc.LAYERS}+{bc.LAYERS} layers, FFN {bc.FFN} ReLU, post-LN, vocab {bc.VOCAB}, scale_embedding, shared "
             f"+ tied embeddings, sinusoidal positions), float32, random weights (seed {bc.SEED}, last decoder fc2 "
             f"x{LIVELY:g}); pt loads the saved folder with pt.from_pretrained, CTranslate2 its float32 conversion")
    agree = "; ".join(f"{case_label(*r['case'])} thr {r['threads']}: pt=hf rows {r['pt=hf'][1]}/{r['case'][1]}"
                      + (f", ct2=hf rows {r['ct2=hf'][1]}/{r['case'][1]}" if r["ct2=hf"] else "")
                      + f", {r['distinct']} distinct tokens" for r in rows)
    legend = (
        f"Exactly {NEW_TOKENS} new tokens per source for every implementation (min = max length, checked), "
        f"sources of {SRC_LEN} tokens. tok/s = B*{NEW_TOKENS} / total time (encoder included; beam search: the "
        f"returned hypothesis); ms/step = total time / {NEW_TOKENS}. pt/x: speed ratio (x's time / pt's time; "
        "> 1 = pt faster). pt=hf, ct2=hf: share of generated tokens equal to HF's, position by position "
        "(near-ties can make a sequence diverge; CTranslate2's vocabulary lacks <pad>)."
    )
    tables[-1] = tables[-1][:2] + (legend,)
    bc.print_report(args, [model] + info + checks + models.notes + [bc.method_line(args, started)], tables,
                    ["agreement with HF (whole rows): " + agree, bc.SPREAD_LEGEND])


if __name__ == "__main__":
    main()

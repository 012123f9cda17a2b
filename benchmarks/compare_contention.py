#!/usr/bin/env python3
"""Two processes at once: does a second thread still pay when another process wants the cores?

Two worker processes run the same job at the same moment, first with 2 threads each
and then with 1 thread each, for pytransformer (pt), PyTorch and CTranslate2, and the
script prints each library's 2-thread / 1-thread wall-time ratio under that
contention. On a 2-core machine two workers x 2 threads are 4 threads on 2 cores: a
thread pool that waits for a descheduled thread at every parallel region loses far
more than the second thread ever gained, and the ratio goes well over 1. Ideal is
about 1.0 (the cores are already full with 2 x 1 thread; a second thread can add
nothing but should cost nothing either). The quiet-machine numbers, one worker alone
at 1 and 2 threads, are printed beside them, so a library that got faster under
contention did not get slower without it.

Jobs (--jobs), Transformer-base everywhere (d_model 512, 8 heads, 6+6 layers, FFN
2048 ReLU, post-LN, vocabulary 32000, float32, random weights):

    encode    a 1x32 source through the encoder, repeated
              pt     pt.Transformer.from_torch_state_dict(<the torch weights>).encode(ids)
              torch  nn.TransformerEncoder (nn.Transformer's, batch_first, eval,
                     inference_mode: the fused fast path) on emb(ids) * sqrt(512) + pe,
                     the same weights as pt (checked: max |diff| of the outputs)
              ct2    translate_batch(beam_size=1, max_decoding_length=1): CTranslate2 has no
                     encoder-only API for translation models, so its job is the encoder plus
                     one decoder step and the 32000-way output layer (as compare_model.py's
                     proxy); the ratio compares it only with itself
    generate  greedy generation at batch 1 of exactly --new-tokens (default 32) new
              tokens for a 1x32 source (min length = max length, checked), on the
              HF MarianMTModel of compare_generate.py (seed 1234, last fc2 x100)
              pt     pt.from_pretrained(<the saved folder>).generate(src, max_length=N,
                     min_length=N, beam_size=1, return_scores=False)
              torch  MarianMTModel.generate(num_beams=1, do_sample=False,
                     min_new_tokens=N, max_new_tokens=N), sdpa attention, inference_mode
              ct2    Translator(<the float32 conversion>).translate_batch(beam_size=1,
                     min_decoding_length=N, max_decoding_length=N)

Method. Every library gets four worker processes of its own (started with "spawn", so
none inherits a thread of this process; two with 1 thread, two with 2), and only one
library's workers exist at a time. Threads: OMP_NUM_THREADS, MKL_NUM_THREADS,
OPENBLAS_NUM_THREADS and PYTRANSFORMER_NUM_THREADS are set to n in each worker's
environment, then pt.set_num_threads(n) / torch.set_num_threads(n) / ctranslate2
intra_threads=n, inter_threads=1 (pt and torch workers check their count). Per library and job the
iteration count is calibrated once, alone at 1 thread, so one loop lasts about
--seconds; all four cells run that many calls:

    alone 1T / alone 2T   one worker runs the loop while the others sit idle
    two workers x nT      both workers of n threads wait at a multiprocessing Barrier,
                          then run the loop at the same moment; each times its own
                          loop, and the cell's time is the slower worker's

--repeats rounds take one sample of every cell in an order that rotates from round to
round; the table shows medians, in ms per call. Before each sample the script sleeps
--gap seconds (thread pools that spin after a call would otherwise steal a core). A
loop that runs past --cap x --seconds stops after the call under way (its time per
call is still right; the cell is marked *), which bounds the run when a library
collapses under contention. "other" is the share of the machine's CPU that other processes
used during the timed loops (/proc/stat; ! over 10%): on a shared machine their load
adds contention of its own.

Usage:
    python benchmarks/compare_contention.py
    python benchmarks/compare_contention.py --seconds 0.5 --repeats 1        # a smoke run
    python benchmarks/compare_contention.py --libs pt --jobs encode \\
        --pt-path /work/base --pt-path /work/main                     # same-run A/B
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
import traceback

import numpy as np

if __package__:  # imported as benchmarks.compare_contention (python -m)
    from . import _common as bc
else:  # run as a script: benchmarks/ is on sys.path
    import _common as bc

# Nothing at module level beyond the standard library, numpy and _common: the spawned
# workers import this module, and a pt worker must import pytransformer from its own
# --pt-path (and a CTranslate2 worker must not load torch or pt).

LIBS = ("pt", "torch", "ct2")
JOBS = ("encode", "generate")
SRC_LEN = 32
CELLS = ("a1", "a2", "p1", "p2")  # alone 1T, alone 2T, two workers x 1T, two workers x 2T
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTRANSFORMER_NUM_THREADS")
BARRIER_TIMEOUT = 600.0
SUFFIX = {("torch", "encode"): " (nn.TransformerEncoder)", ("torch", "generate"): " (HF Marian)",
          ("ct2", "encode"): " (encode + 1 decoder step)"}


# -- machine description -------------------------------------------------------------


def lscpu_fields() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    return fields


def cpu_lines() -> list[str]:
    """CPU model, the SIMD flags that matter here, caches, cores; Python and numpy."""
    f = lscpu_fields()
    flags = set(f.get("Flags", "").split())
    if not flags:
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "amx_tile")
    have = [x for x in wanted if x in flags]
    missing = [x for x in ("avx2", "avx512f") if x not in flags]
    caches = ", ".join(f"{k.replace(' cache', '')} {f[k]}" for k in ("L1d cache", "L2 cache", "L3 cache") if k in f)
    topo = ", ".join(f"{f[k]} {k.lower().replace('(s)', 's')}" for k in ("Core(s) per socket", "Thread(s) per core",
                                                                         "Socket(s)") if k in f)
    virt = f.get("Hypervisor vendor")
    return [
        f"CPU: {bc.cpu_model()}, {os.cpu_count()} logical CPUs ({topo or 'topology unknown'})"
        + (f", {virt} guest" if virt else "") + f"; load average at start: {bc.loadavg()}",
        f"CPU flags: {' '.join(have) or 'none of avx/avx2/avx512'}"
        + (f" (no {', '.join(missing)})" if missing else "") + (f"; caches: {caches}" if caches else ""),
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.platform()}",
    ]


def git_head(path: str) -> str:
    try:
        out = subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


# -- building the models (in a spawned process of its own) ----------------------------


def _import_compare(name):
    """compare_model / compare_generate, which import torch-free _common but also pytransformer."""
    if __package__:
        import importlib

        return importlib.import_module(f"{__package__}.{name}")
    return __import__(name)


def _pt_config_kwargs():
    """compare_model's pt config of Transformer-base (nn.Transformer layout)."""
    return dict(d_model=bc.D_MODEL, nhead=bc.NHEAD, num_encoder_layers=bc.LAYERS, num_decoder_layers=bc.LAYERS,
                dim_feedforward=bc.FFN, activation="relu", src_vocab_size=bc.VOCAB, tgt_vocab_size=bc.VOCAB)


def build_models(workdir: str, want: set, new_tokens: int) -> dict:
    """Writes every model the workers load into workdir; returns where, and what is missing.

    encode: compare_model.Peers' nn.Transformer weights (+ embeddings, output layer), as
    npz for pt and as torch state dicts for the torch worker, and torch's encoder output
    on the timed ids (each pt worker checks its own against it). Without torch: random
    weights of the same shapes for pt alone.
    generate: compare_generate.Models' HF Marian folder (pt.from_pretrained, MarianMTModel
    .from_pretrained) and its CTranslate2 conversion, and HF's greedy tokens."""
    out = {"notes": [], "lines": [], "enc": None, "gen": None, "have": {"pt"}}
    rng = np.random.default_rng([bc.SEED, 1, SRC_LEN])
    ids = rng.integers(3, bc.VOCAB - 1, (1, SRC_LEN))
    enc_npz = os.path.join(workdir, "encode-weights.npz")
    try:
        import torch
    except ImportError as e:
        torch = None
        out["notes"].append(f"torch, ct2: skipped (torch not importable: {e}; pip install torch==2.13.0); pt runs "
                            "random weights of the same shapes, generate on the encode model")
    if torch is not None:
        cm = _import_compare("compare_model")
        peers = cm.Peers(["torch"], workdir)
        ids[:, -1] = peers.config.eos_id
        state = {k: v.detach().numpy() for k, v in peers.torch_tr.state_dict().items()}
        for name, mod in (("src_embed", peers.src_embed), ("tgt_embed", peers.tgt_embed),
                          ("generator", peers.generator)):
            for k, v in mod.state_dict().items():
                state[f"{name}.{k}"] = v.detach().numpy()
        np.savez(enc_npz, **state)
        enc_pt = os.path.join(workdir, "encode-torch.pt")
        torch.save({"encoder": peers.torch_tr.encoder.state_dict(), "embed": peers.src_embed.state_dict(),
                    "pe": peers.pe_t[:SRC_LEN].clone()}, enc_pt)
        with torch.inference_mode():
            x = peers.src_embed(torch.from_numpy(ids)) * math.sqrt(bc.D_MODEL) + peers.pe_t[:SRC_LEN]
            ref = peers.torch_tr.encoder(x).numpy()
        eos = peers.config.eos_id
        del peers, state
        out["have"].add("torch")
        out["lines"].append(bc.torch_line(torch))
    else:
        import pytransformer as pt

        config = pt.TransformerConfig(**_pt_config_kwargs())
        ids[:, -1] = config.eos_id
        eos = config.eos_id
        w = {}
        wrng = np.random.default_rng(bc.SEED)
        for name, shape in pt.weights.expected_weight_shapes(config).items():
            a = wrng.standard_normal(shape, dtype=np.float32) * np.float32(bc.D_MODEL**-0.5 if len(shape) == 2
                                                                           else 0.1)
            if name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "norm.weight")):
                a += np.float32(1.0)
            w[name] = a
        np.savez(enc_npz, **w)
        enc_pt = ref = None
    mids = ids.copy()
    mids[:, -1] = 0  # Marian's </s>
    out["enc"] = {"npz": enc_npz, "torch": enc_pt, "config": _pt_config_kwargs(), "ids": ids.tolist(),
                  "ref": None if ref is None else ref.tolist(), "eos": eos,
                  "tokens": [[bc.marian_token(int(i)) for i in r] for r in mids]}

    gen = {"folder": None, "ct2_dir": None, "new_tokens": new_tokens, "src": ids.tolist(), "ref": None}
    out["gen"] = gen
    transformers = None
    if torch is not None:
        try:
            import transformers
        except ImportError as e:
            out["notes"].append(f"torch generate, ct2: skipped (transformers not importable: {e}; pip install "
                                "transformers); pt generates on the encode model")
    if transformers is not None:
        cg = _import_compare("compare_generate")
        models = cg.Models(["ct2"] if "ct2" in want else [], workdir)
        try:
            out["notes"] += models.notes
            src = cg.sources(np.random.default_rng([bc.SEED, 1, 1]), 1)
            gen.update(folder=models.folder, src=src.tolist())
            with torch.inference_mode():
                hf_out = models.hf.generate(input_ids=torch.from_numpy(src), attention_mask=torch.ones_like(
                    torch.from_numpy(src)), num_beams=1, do_sample=False, min_new_tokens=new_tokens,
                    max_new_tokens=new_tokens)
            gen["ref"] = hf_out[0, 1:].tolist()
            out["have"].add("torch_gen")
            out["lines"].append(f"transformers {transformers.__version__}: MarianMTModel, attention "
                                f"{models.hf.config._attn_implementation}, {models.hf_params:,} parameters")
            if models.ct2 is not None:
                gen["ct2_dir"] = models.ct2_dir
                out["have"].add("ct2")
                out["lines"].append(f"ctranslate2 {models.ct2.__version__}: float32, inter_threads=1, intra_threads "
                                    "= threads" + (f"; {models.ct2_backend}" if models.ct2_backend else ""))
        finally:
            models.close()
    return out


def _builder(conn, path, workdir, want, new_tokens):
    try:
        if path:
            sys.path.insert(0, path)
        conn.send(("ok", build_models(workdir, want, new_tokens)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, SystemExit of compare_generate too
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_builder(path, workdir, want, new_tokens) -> dict:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_builder, args=(child, path, workdir, want, new_tokens))
    proc.start()
    child.close()
    try:
        status, out = parent.recv()
    except EOFError:
        status, out = "error", f"the model builder process died (exit code {proc.join(5) or proc.exitcode})"
    proc.join(60)
    if status != "ok":
        sys.exit(f"compare_contention.py: building the models failed: {out}")
    return out


# -- the workers ------------------------------------------------------------------------


def _marian_id(tok: str) -> int:
    return {"</s>": 0, "<unk>": 1, "<pad>": bc.VOCAB - 1}.get(tok, int(tok[1:]) if tok[1:].isdigit() else -1)


def _timed(fn):
    """(fn(), seconds): the check call of a job, which is also the worker's first call."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _setup_pt(spec, threads):
    path = spec["path"]
    if path:
        sys.path.insert(0, path)
    import pytransformer as pt

    where = os.path.dirname(os.path.dirname(os.path.realpath(pt.__file__)))
    if path and where != os.path.realpath(path):
        raise RuntimeError(f"imported pytransformer from {where}, not from {path}")
    pt.set_num_threads(threads)
    if pt.get_num_threads() != threads:
        raise RuntimeError(f"pt.get_num_threads() = {pt.get_num_threads()} after set_num_threads({threads})")
    calls, checks = {}, {}
    enc, model = spec["enc"], None
    if "encode" in spec["jobs"] or not spec["gen"]["folder"]:
        with np.load(enc["npz"]) as f:
            weights = {k: f[k] for k in f.files}
        model = pt.Transformer.from_torch_state_dict(weights, pt.TransformerConfig(**enc["config"]))
        del weights
    if "encode" in spec["jobs"]:
        ids = np.array(enc["ids"], dtype=np.int64)
        calls["encode"] = lambda: model.encode(ids)
        y, dt = _timed(calls["encode"])
        checks["encode"] = {"diff": None if enc["ref"] is None else float(np.abs(y - np.array(enc["ref"])).max()),
                            "seconds": dt}
    if "generate" in spec["jobs"]:
        gen = spec["gen"]
        n = gen["new_tokens"]
        gm = pt.from_pretrained(gen["folder"]) if gen["folder"] else model
        src = np.array(gen["src"], dtype=np.int64)
        calls["generate"] = lambda: gm.generate(src, max_length=n, min_length=n, beam_size=1, return_scores=False)
        res, dt = _timed(calls["generate"])
        toks = [int(t) for t in res[0].sequences[0]]
        if len(toks) != n:
            raise RuntimeError(f"pt generated {len(toks)} tokens, not {n}")
        checks["generate"] = {"tokens": toks, "seconds": dt}
    core = os.path.realpath(pt._core.__file__)
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(core)))
    info = f"{where}, {os.path.relpath(core, os.path.dirname(where))} built {built}: {pt.runtime_info()}"
    return calls, checks, info


def _setup_torch(spec, threads):
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"torch.get_num_threads() = {torch.get_num_threads()} after set_num_threads({threads})")
    nn = torch.nn
    calls, checks = {}, {}
    if "encode" in spec["jobs"]:
        enc = spec["enc"]
        saved = torch.load(enc["torch"])
        layer = nn.TransformerEncoderLayer(bc.D_MODEL, bc.NHEAD, bc.FFN, dropout=0.0, activation="relu",
                                           batch_first=True)
        encoder = nn.TransformerEncoder(layer, bc.LAYERS, norm=nn.LayerNorm(bc.D_MODEL)).eval()
        encoder.load_state_dict(saved["encoder"])
        embed = nn.Embedding(bc.VOCAB, bc.D_MODEL).eval()
        embed.load_state_dict(saved["embed"])
        pe, scale = saved["pe"], math.sqrt(bc.D_MODEL)
        ids = torch.tensor(enc["ids"], dtype=torch.int64)

        def encode():
            with torch.inference_mode():
                return encoder(embed(ids) * scale + pe)

        calls["encode"] = encode
        y, dt = _timed(encode)
        checks["encode"] = {"diff": float(np.abs(y.numpy() - np.array(enc["ref"])).max()), "seconds": dt}
    if "generate" in spec["jobs"]:
        import transformers

        transformers.logging.set_verbosity_error()
        gen = spec["gen"]
        n = gen["new_tokens"]
        hf = transformers.MarianMTModel.from_pretrained(gen["folder"]).eval()
        src = torch.tensor(gen["src"], dtype=torch.int64)
        mask = torch.ones_like(src)

        def generate():
            with torch.inference_mode():
                return hf.generate(input_ids=src, attention_mask=mask, num_beams=1, do_sample=False,
                                   min_new_tokens=n, max_new_tokens=n)

        calls["generate"] = generate
        res, dt = _timed(generate)
        toks = res[0, 1:].tolist()
        if len(toks) != n or hf.config.eos_token_id in toks:
            raise RuntimeError(f"HF generated {len(toks)} tokens (or </s> among them), not {n}")
        checks["generate"] = {"tokens": toks, "seconds": dt}
    return calls, checks, f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}"


def _setup_ct2(spec, threads):
    import ctranslate2

    translator = bc.ct2_load("Translator", spec["gen"]["ct2_dir"], threads)
    calls, checks = {}, {}
    if "encode" in spec["jobs"]:
        tokens = spec["enc"]["tokens"]
        calls["encode"] = lambda: translator.translate_batch(tokens, beam_size=1, max_decoding_length=1)
        checks["encode"] = {"diff": None, "seconds": _timed(calls["encode"])[1]}
    if "generate" in spec["jobs"]:
        gen = spec["gen"]
        n = gen["new_tokens"]
        tokens = [[bc.marian_token(int(i)) for i in r] for r in gen["src"]]
        calls["generate"] = lambda: translator.translate_batch(tokens, beam_size=1, num_hypotheses=1,
                                                               min_decoding_length=n, max_decoding_length=n)
        res, dt = _timed(calls["generate"])
        hyp = list(res[0].hypotheses[0])
        if len(hyp) != n:
            raise RuntimeError(f"CTranslate2 generated {len(hyp)} tokens, not {n}")
        checks["generate"] = {"tokens": [_marian_id(t) for t in hyp], "seconds": dt}
    return calls, checks, f"ctranslate2 {ctranslate2.__version__}, intra_threads={threads}, inter_threads=1"


def _worker(conn, barrier, spec, threads):
    """A worker: builds its library's models, then runs timed loops on request.

    ("run", (job, calls, limit, paired)) -> (t0, t1, calls done): the loop runs `calls`
    calls, or stops after the first call that ends past t0 + limit; paired loops start
    when both workers of the pair have reached the barrier."""
    try:
        setup = {"pt": _setup_pt, "torch": _setup_torch, "ct2": _setup_ct2}[spec["lib"]]
        calls, checks, info = setup(spec, threads)
        conn.send(("ok", {"checks": checks, "info": info}))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    perf = time.perf_counter
    while True:
        try:
            op, a = conn.recv()
        except EOFError:
            return
        if op == "exit":
            return
        try:
            job, number, limit, paired = a
            fn = calls[job]
            if paired:
                barrier.wait(BARRIER_TIMEOUT)
            t0 = perf()
            deadline = t0 + limit
            done = 0
            while done < number:
                fn()
                done += 1
                if perf() > deadline:
                    break
            t1 = perf()
            conn.send(("ok", (t0, t1, done)))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Team:
    """One library's four workers: two with 1 thread and two with 2, each pair sharing a
    Barrier. Each is spawned with the thread variables set to its count."""

    def __init__(self, spec):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.procs, self.conns = {}, {}
        # The barriers must outlive the children's unpickling of them (spawn: after start()).
        self.barriers = []
        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        try:
            for n in (1, 2):
                barrier = ctx.Barrier(2)
                self.barriers.append(barrier)
                for i in range(2):
                    for k in THREAD_VARS:
                        os.environ[k] = str(n)
                    parent, child = ctx.Pipe()
                    proc = ctx.Process(target=_worker, args=(child, barrier, spec, n), daemon=True)
                    proc.start()
                    child.close()
                    self.procs[n, i], self.conns[n, i] = proc, parent
                    bc.WORKER_PIDS.append(proc.pid)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.ready = {key: self._recv(key) for key in self.conns}

    def _recv(self, key):
        try:
            status, out = self.conns[key].recv()
        except EOFError:
            self.procs[key].join(5)
            raise RuntimeError(f"worker {key[0]}T #{key[1] + 1} died (exit code {self.procs[key].exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"worker {key[0]}T #{key[1] + 1}: {out}")
        return out

    def run(self, keys, job, number, limit):
        paired = len(keys) > 1
        for key in keys:
            self.conns[key].send(("run", (job, number, limit, paired)))
        return [self._recv(key) for key in keys]

    def close(self):
        for key, conn in self.conns.items():
            try:
                conn.send(("exit", ()))
            except OSError:
                pass
        for proc in self.procs.values():
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.pid in bc.WORKER_PIDS:
                bc.WORKER_PIDS.remove(proc.pid)


# -- measurement ---------------------------------------------------------------------------


def measure_job(team, job, args):
    """Calibrates once (alone, 1 thread), then --repeats rotating rounds of the four cells."""
    # Every worker made one call of the job when it started (its check); cheap calls get
    # 0.3 s more of warm-up, one worker at a time.
    for key in sorted(team.conns):
        if team.ready[key]["checks"][job]["seconds"] < 0.1:
            time.sleep(args.gap)
            team.run([key], job, 1 << 30, 0.3)
    bc.quiet_before_case(args)
    time.sleep(args.gap)
    t0, t1, done = team.run([(1, 0)], job, 1 << 30, max(0.3, args.seconds / 5))[0]
    per_call = (t1 - t0) / done
    number = max(1, round(args.seconds / per_call))
    limit = args.cap * args.seconds
    samples = {c: [] for c in CELLS}
    cut = {c: False for c in CELLS}
    load = bc.OtherLoad()
    skew = overlap = None
    for r in range(args.repeats):
        for cell in CELLS[r % 4:] + CELLS[: r % 4]:
            n = int(cell[1])
            keys = [(n, r % 2)] if cell[0] == "a" else [(n, 0), (n, 1)]
            time.sleep(args.gap)
            load.start()
            res = team.run(keys, job, number, limit)
            load.stop()
            load.keep()
            # The job's time is the slower worker's (per call, in case a loop was cut short).
            samples[cell].append(max((b - a) / d for a, b, d in res))
            cut[cell] |= any(d < number for _, _, d in res)
            if len(res) == 2:
                s = abs(res[0][0] - res[1][0])
                o = (min(res[0][1], res[1][1]) - max(res[0][0], res[1][0])) / (max(res[0][1], res[1][1])
                                                                                  - min(res[0][0], res[1][0]))
                skew = s if skew is None else max(skew, s)
                overlap = o if overlap is None else min(overlap, o)
    med = {c: float(np.median(v)) for c, v in samples.items()}
    spread = max((max(v) - min(v)) / med[c] for c, v in samples.items())
    return {"median": med, "samples": samples, "cut": cut, "number": number, "load": load, "spread": spread,
            "skew": skew, "overlap": overlap}


# -- arguments, main and output -------------------------------------------------------------


def list_type(choices):
    def parse(s):
        names = [x.strip() for x in s.split(",") if x.strip()]
        bad = [x for x in names if x not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)} (comma-separated), got {s!r}")
        return [c for c in choices if c in names]

    return parse


def pt_path_type(s):
    path = os.path.abspath(os.path.expanduser(s))
    if not os.path.isfile(os.path.join(path, "pytransformer", "__init__.py")):
        raise argparse.ArgumentTypeError(f"{s!r} holds no pytransformer/__init__.py (give the folder that holds the "
                                         "package, e.g. /work/base)")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--libs", type=list_type(LIBS), default=list(LIBS), help="comma-separated, out of pt,torch,ct2 "
                   "(default: all)")
    p.add_argument("--jobs", type=list_type(JOBS), default=list(JOBS), help="comma-separated, out of encode,generate "
                   "(default: both)")
    p.add_argument("--pt-path", type=pt_path_type, action="append", default=None, metavar="DIR",
                   help="run pt from the pytransformer package in DIR (e.g. /work/base); repeatable, one row "
                   "each (default: the pytransformer that Python finds)")
    p.add_argument("--seconds", type=float, default=3.0, help="target duration of each timed loop, calibrated once "
                   "alone at 1 thread (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the four cells; the table shows medians "
                   "(default 3)")
    p.add_argument("--new-tokens", type=int, default=32, help="generate: exactly this many new tokens (default 32)")
    p.add_argument("--gap", type=float, default=0.15, help="sleep before each loop, seconds (default 0.15)")
    p.add_argument("--cap", type=float, default=2.0, help="stop a loop after the first call that ends past CAP x "
                   "--seconds (default 2; a library that collapses under contention would otherwise stretch the run)")
    p.add_argument("--wait-quiet", type=float, default=0.0, help="before each job's timed rounds, wait up to this "
                   "many seconds until other processes use < 10%% of the CPU (default 0: do not wait)")
    p.add_argument("--workdir", default=None, help="keep the saved / converted models here and reuse the CTranslate2 "
                   "conversion in later runs (default: a temporary folder, removed at exit)")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or args.cap < 1 or args.gap < 0:
        p.error("--seconds > 0, --repeats >= 1, --cap >= 1 and --gap >= 0")
    if not 1 <= args.new_tokens <= 256:
        p.error("--new-tokens must be in 1 .. 256")
    paths = []
    for path in args.pt_path or [None]:
        if path not in paths:
            paths.append(path)

    started = time.time()
    header = cpu_lines()
    workdir = bc.Workdir(args.workdir, "pt-compare-contention-")
    notes: list[str] = []
    rows = {job: [] for job in args.jobs}
    checks = {job: {} for job in args.jobs}
    info: list[str] = []
    try:
        print("  building the models ...", file=sys.stderr, flush=True)
        built = run_builder(paths[0], workdir.path, set(args.libs), args.new_tokens)
        notes += built["notes"]
        have = built["have"]
        info += [line for line in built["lines"]
                 if (line.startswith("torch") and "torch" in args.libs)
                 or (line.startswith("transformers") and "torch" in args.libs and "generate" in args.jobs)
                 or (line.startswith("ctranslate2") and "ct2" in args.libs)]
        teams = []
        for lib in args.libs:
            if lib == "pt":
                for path in paths:
                    label = "pt" if path is None else f"pt {path}" + (f" ({git_head(path)})" if git_head(path) else "")
                    teams.append((label, {"lib": "pt", "path": path}))
            elif lib in have:
                teams.append((lib, {"lib": lib, "path": None}))
            elif not any(n.startswith((lib, "torch")) for n in notes):
                notes.append(f"{lib}: skipped (not available)")
        for label, spec in teams:
            jobs = [j for j in args.jobs if not (spec["lib"] == "torch" and j == "generate" and "torch_gen" not in have)]
            if not jobs:
                continue
            spec = dict(spec, jobs=jobs, enc=built["enc"], gen=built["gen"])
            print(f"  [{time.time() - started:.0f} s] {label}: starting 4 workers ...", file=sys.stderr, flush=True)
            team = None
            try:
                team = Team(spec)
                first = team.ready[1, 0]
                if spec["lib"] == "pt":
                    info.append(f"{label}: {first['info']} (its 1-thread worker's runtime_info)")
                for job in jobs:
                    checks[job][label] = [team.ready[key]["checks"][job] for key in sorted(team.ready)]
                    res = measure_job(team, job, args)
                    rows[job].append((label, res))
                    print(f"  [{time.time() - started:.0f} s] done {label} {job}: {res['number']} calls per loop",
                          file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - one library's failure is a note, not the end of the run
                notes.append(f"{label}: failed ({type(e).__name__}: {e})")
            finally:
                if team is not None:
                    team.close()
    finally:
        workdir.close()

    info.append(bc.env_line())
    method = (f"4 workers per library (spawned, 2 x 1 thread + 2 x 2 threads; {'='.join(THREAD_VARS)}=n in their "
              f"environment), iteration count calibrated once alone "
              f"at 1 thread for ~{args.seconds:g} s per loop; median of {args.repeats} rotating rounds; "
              f"{args.gap * 1e3:.0f} ms gap before each loop; {time.time() - started:.0f} s in all; load average at "
              f"end: {bc.loadavg()}")
    for line in header + info + notes + [method]:
        print(f"- {line}")

    n_new = args.new_tokens
    titles = {"encode": f"encode 1x{SRC_LEN} (ms per call)",
              "generate": f"greedy generate, batch 1, source {SRC_LEN}, exactly {n_new} new tokens (ms per call)"}
    for job in args.jobs:
        if not rows[job]:
            continue
        print(f"\n**{titles[job]}**\n")
        head = ["library", "alone 1T", "alone 2T", "two workers x 1T", "two workers x 2T", "ratio (2x2T / 2x1T)",
                "alone 2T/1T", "calls", "spread", "other"]
        print("| " + " | ".join(head) + " |")
        print("|---|" + "--:|" * (len(head) - 1))
        for label, res in rows[job]:
            m = res["median"]
            other = res["load"].share()
            cells = [bc.fmt_ms(m[c]) + ("*" if res["cut"][c] else "") for c in CELLS]
            print("| " + " | ".join([label + SUFFIX.get((label, job), "")]
                                     + cells + [f"{m['p2'] / m['p1']:.2f}", f"{m['a2'] / m['a1']:.2f}",
                                                str(res["number"]), f"{100 * res['spread']:.0f}%",
                                                "?" if math.isnan(other) else f"{100 * other:.0f}%"
                                                + (" !" if other > 0.10 else "")]) + " |")
        print()
        print(job_checks(job, rows[job], checks[job], built))
    print("\nratio (2x2T / 2x1T): the slower worker's time per call when two workers run at once with 2 threads each, "
          "over the same with 1 thread each (1.0: the second thread costs nothing under contention; > 1: it costs). "
          "alone 2T/1T: the same for one worker on a quiet machine (< 1: the second thread helps). calls: iterations "
          f"per loop (* = a loop stopped at {args.cap:g} x --seconds). spread: largest (max - min) / median over the "
          "rounds in the row. other: other processes' CPU share during the row's loops (! over 10%: contention of "
          "their own).")


def job_checks(job, rows, checks, built) -> str:
    """Outputs of every worker: encode against torch's output, generate against HF's tokens."""
    parts = []
    for label, res in rows:
        cs = checks[label]
        if job == "encode":
            diffs = [c["diff"] for c in cs if c["diff"] is not None]
            parts.append(f"{label}: " + (f"max|diff| vs torch's output {max(diffs):.1e}" if diffs else
                                         "output not compared"))
        else:
            toks = [c["tokens"] for c in cs]
            n = built["gen"]["new_tokens"]
            same = all(t == toks[0] for t in toks)
            s = f"{label}: {n} tokens" + ("" if same else " (differ between its workers!)")
            ref = built["gen"]["ref"]
            if ref is not None:
                s += f", {100 * float(np.mean(np.array(toks[0]) == np.array(ref))):.0f}% equal to HF's"
            parts.append(s)
        if res["skew"] is not None:
            parts[-1] += f", pair start skew <= {res['skew'] * 1e3:.2f} ms, overlap >= {100 * res['overlap']:.0f}%"
    return "checks: " + "; ".join(parts)


if __name__ == "__main__":
    main()

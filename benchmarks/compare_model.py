#!/usr/bin/env python3
"""pytransformer's Transformer-base encoder against PyTorch and CTranslate2, side by side in one run.

The model is Transformer-base: d_model 512, 8 heads, 6 encoder (+ 6 decoder) layers,
FFN 2048 with ReLU, post-LN, vocabulary 32000, sinusoidal positions, embeddings
scaled by sqrt(512), float32. Inputs are random token ids ending in EOS, no padding.

Encoder (table 1), the same work for everyone: embedding lookup, positions, 6 layers.

    pt      pt.Transformer(...).encode(ids), built with Transformer.from_torch_state_dict
            from the weights of the "torch" model below
    torch   nn.Transformer(batch_first=True).encoder (an nn.TransformerEncoder, eval,
            inference_mode: PyTorch's fused fast path) on emb(ids) * sqrt(512) + pe
    hf      transformers MarianMTModel (MarianConfig with the shapes above, random weights):
            model.get_encoder()(input_ids), inference_mode, sdpa attention

Encoder + one decoder step (table 2): CTranslate2 has no encoder-only API for
translation models, so it is timed with translate_batch(beam_size=1,
max_decoding_length=1), which also runs the cross-attention K/V projection of the
memory, one decoder step and the 32000-way output layer. It is compared with the
same work done by

    pt+1    pt.encode(ids), then pt.decode on [B, 1] start tokens (logits [B, 1, 32000])
    hf+1    MarianMTModel(input_ids, decoder_input_ids=[B, 1] start tokens)
    ct2     ctranslate2.Translator(<the hf model converted with the converter of
            ct2-transformers-converter, float32>).translate_batch(tokens, beam_size=1,
            max_decoding_length=1), in a worker process of its own (see Ct2Worker)

pt and torch share one set of random weights, and pt's encoder output is checked
against torch's (max abs diff, printed). hf and ct2 run the Marian model, with other
random weights of the same shapes: Marian lays its sinusoids out sin-first /
cos-second while pt only supports the paper's interleaved layout, so Marian weights are
not mapped into pt. Cost does not depend on the weight values. ct2's token is checked
against hf's argmax (the conversion is faithful).

Method (as benchmarks/compare_gemm.py): per case and thread count, every
implementation is warmed up and calibrated so one sample (back-to-back calls) lasts at
least --min-time. Then --repeats rounds each take one sample of every implementation
(both tables), in an order that rotates from round to round, so slow drifts of a noisy
machine hit all of them alike. Before each sample the script sleeps --gap seconds (the
OpenMP pools of torch, CTranslate2 and pt spin a while after a call and would steal a
core from the next library) and, for calls under 50 ms, makes one untimed call to wake
the thread pool. Tables show the median time per call, GFLOP/s (the FLOP model of the
performance anchors, see flop_encoder / flop_step) and speed ratios (> 1: pt faster).
"other" is the share of the machine's CPU that other processes used during the timed
windows (/proc/stat); a sample during which they used more than --max-other is measured
again after a pause, and rows where they still used over 10% are marked "!". Before
each case the script waits (up to --wait-quiet seconds) for other processes to quiet
down. On 2 cores, another busy process makes 2-thread OpenMP timings collapse (one
thread of each parallel region waits for a descheduled one), so such rows are noise.

pt, torch and hf run in this process; pt and torch share one libgomp and take turns.
CTranslate2 runs in a worker process of its own, driven from the same interleaved
rounds (it times its samples itself; the pipe round trip is not timed). In this process
it would bind to that same libgomp (torch loads it RTLD_GLOBAL before ctranslate2 is
imported) and its translate thread would start a second OpenMP team: 4 OpenMP threads
on 2 CPUs make libgomp stop spinning between parallel regions, which slowed pt's
2-thread 1x32 encode from ~4.5 to ~8.4 ms on the 2-core test machine.

Usage:
    python benchmarks/compare_model.py                     # threads 1 and 2, all cases, all peers
    python benchmarks/compare_model.py --quick --markdown
    python benchmarks/compare_model.py --threads 2 --cases 1x32 32x64 --peers torch,ct2
"""

from __future__ import annotations

import os

# Quiet, offline Hugging Face libraries: the Marian model is built locally from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")

import pytransformer as pt  # noqa: E402

PEERS = ("torch", "hf", "ct2")
CASES = [(1, 32), (1, 128), (32, 64)]

# Transformer-base.
D_MODEL, NHEAD, LAYERS, FFN, VOCAB = 512, 8, 6, 2048, 32000
MAX_POS = 512  # positions in the Marian model (as in the anchors: 61,046,784 parameters)
SEED = 1234

ENC_GROUP, STEP_GROUP = "enc", "step"


# -- FLOP model (the anchors file's) ----------------------------------------------------


def flop_encoder(b: int, s: int) -> float:
    """6 x [2*S*(4*d^2 + 2*d*d_ff) + 4*S^2*d] per sequence: projections, FFN, QK^T and AV."""
    d, f = D_MODEL, FFN
    return b * LAYERS * (2.0 * s * (4 * d * d + 2 * d * f) + 4.0 * s * s * d)


def flop_step(b: int, s: int) -> float:
    """Encoder + one decoder step: cross-attention K/V of the S memory positions, one
    target position through the decoder layers (self-attention projections, cross Q/out,
    attention over 1 and S keys, FFN) and the 2*d*V output layer."""
    d, f = D_MODEL, FFN
    per_layer = 4.0 * s * d * d + 8.0 * d * d + 4.0 * d + 4.0 * d * d + 4.0 * s * d + 4.0 * d * f
    return flop_encoder(b, s) + b * (LAYERS * per_layer + 2.0 * d * VOCAB)


# -- machine description -------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "PYTRANSFORMER_", "CT2_", "DNNL_", "ONEDNN_")


def machine_lines(peers) -> list[str]:
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start: "
        + " ".join(f"{v:.2f}" for v in os.getloadavg()),
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.platform()}",
        f"pytransformer {pt.__version__}: {pt.runtime_info()}",
    ]
    if peers.torch is not None:
        torch = peers.torch
        cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
        lines.append(f"torch {torch.__version__}: CPU capability {cap}, MKL {torch.backends.mkl.is_available()}, "
                     f"oneDNN {torch.backends.mkldnn.is_available()}")
    if peers.hf_model is not None:
        lines.append(f"transformers {peers.transformers.__version__}: MarianMTModel, attention "
                     f"{peers.hf_model.config._attn_implementation}, {peers.hf_params:,} parameters")
    if peers.ct2 is not None:
        lines.append(f"ctranslate2 {peers.ct2.__version__} (in a worker process of its own): float32, inter_threads=1, "
                     "intra_threads = threads"
                     + (f"; {peers.ct2_backend}" if peers.ct2_backend else ""))
    env = sorted(k for k in os.environ if k.startswith(_ENV_PREFIXES))
    lines.append("environment: " + (", ".join(f"{k}={os.environ[k]}" for k in env) if env else
                                    "no OMP_/GOMP_/KMP_/MKL_/OPENBLAS_/PYTRANSFORMER_/CT2_/DNNL_ variables set"))
    return lines


# -- CPU accounting: how much did other processes run while we timed? --------------


def _machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait
    return sum(fields[:8]) - fields[3] - fields[4]


# Worker processes of this script (CTranslate2's): their CPU time is ours, not "other".
WORKER_PIDS: list = []


def _process_ticks(pid) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:  # a worker that has exited
        return 0
    return int(rest[11]) + int(rest[12])  # utime + stime, all threads


def _own_ticks() -> int:
    return _process_ticks("self") + sum(_process_ticks(pid) for pid in WORKER_PIDS)


class OtherLoad:
    """Other processes' share of the machine's CPU over timed windows (Linux only)."""

    def __init__(self):
        self.available = os.path.exists("/proc/stat")
        self.hz = os.sysconf("SC_CLK_TCK") if self.available else 100
        self.ncpu = os.cpu_count() or 1
        self.other = 0
        self.wall = 0.0
        self.remeasured = 0

    def start(self):
        if self.available:
            self._m, self._o, self._t = _machine_busy_ticks(), _own_ticks(), time.perf_counter()

    def stop(self) -> float:
        """Ends a window and returns other processes' share of the CPU during it."""
        if not self.available:
            return 0.0
        self._window = ((_machine_busy_ticks() - self._m) - (_own_ticks() - self._o), time.perf_counter() - self._t)
        return max(0.0, self._window[0] / self.hz / (self._window[1] * self.ncpu))

    def keep(self):
        if self.available:
            self.other += self._window[0]
            self.wall += self._window[1]

    def share(self) -> float:
        if not self.available or self.wall <= 0:
            return float("nan")
        return max(0.0, self.other / self.hz / (self.wall * self.ncpu))


def wait_for_quiet(max_wait: float, window: float = 0.5) -> float:
    """Waits (up to max_wait s) until other processes use < 10% of the CPU over a window."""
    load = OtherLoad()
    if not load.available or max_wait <= 0:
        return 0.0
    t0 = time.perf_counter()
    while True:
        load.start()
        time.sleep(window)
        if load.stop() < 0.10 or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0


# -- the models ------------------------------------------------------------------------


def sinusoid_table(length: int, d: int):
    """The paper's positions, interleaved: sin on even, cos on odd features (float64 math)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    ang = pos / np.power(10000.0, np.arange(0, d, 2, dtype=np.float64) / d)
    pe = np.empty((length, d), dtype=np.float64)
    pe[:, 0::2], pe[:, 1::2] = np.sin(ang), np.cos(ang)
    return pe.astype(np.float32)


class Peers:
    """pt and whichever peers import; notes say why a peer is missing."""

    def __init__(self, wanted, workdir):
        self.notes: list[str] = []
        self.torch = self.transformers = self.ct2 = None
        self.hf_model = None
        self.hf_params = 0
        self.ct2_dir = None
        self.ct2_backend = ""
        self.wanted = set(wanted)
        self.workdir = workdir

        need_torch = bool(self.wanted)  # every peer runs on torch (ct2: to build and convert the model)
        if need_torch:
            try:
                import torch

                self.torch = torch
            except ImportError as e:
                self.notes.append(f"torch, hf, ct2: skipped (torch not importable: {e}; pip install torch==2.13.0)")
                self.wanted.clear()
        self._build_pt_and_torch()
        if self.wanted & {"hf", "ct2"}:
            try:
                import transformers

                transformers.logging.set_verbosity_error()
                self.transformers = transformers
            except ImportError as e:
                self.notes.append(f"hf, ct2: skipped (transformers not importable: {e}; pip install transformers)")
                self.wanted -= {"hf", "ct2"}
        if self.wanted & {"hf", "ct2"}:
            self._build_hf()
        if "ct2" in self.wanted:
            self._build_ct2()

    # pt + torch nn.Transformer, one set of weights --------------------------------------

    def _build_pt_and_torch(self):
        self.config = pt.TransformerConfig(d_model=D_MODEL, nhead=NHEAD, num_encoder_layers=LAYERS,
                                           num_decoder_layers=LAYERS, dim_feedforward=FFN, activation="relu",
                                           src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
        self.pe = sinusoid_table(self.config.max_length, D_MODEL)
        rng = np.random.default_rng(SEED)
        scale = D_MODEL**-0.5
        if self.torch is not None:
            torch, nn = self.torch, self.torch.nn
            torch.manual_seed(SEED)
            tr = nn.Transformer(d_model=D_MODEL, nhead=NHEAD, num_encoder_layers=LAYERS, num_decoder_layers=LAYERS,
                                dim_feedforward=FFN, dropout=0.0, activation="relu", batch_first=True).eval()
            # Random LayerNorm and bias values too, so the parity check covers them.
            with torch.no_grad():
                for name, p in tr.named_parameters():
                    if p.ndim == 1:
                        p.copy_((1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight")
                                 or name.endswith("norm3.weight") or name.endswith("norm.weight") else 0.0)
                                + 0.1 * torch.randn(p.shape))
            self.torch_tr = tr
            self.src_embed = nn.Embedding(VOCAB, D_MODEL).eval()
            self.tgt_embed = nn.Embedding(VOCAB, D_MODEL).eval()
            self.generator = nn.Linear(D_MODEL, VOCAB).eval()
            with torch.no_grad():
                for mod in (self.src_embed, self.tgt_embed, self.generator):
                    mod.weight.copy_(torch.randn(mod.weight.shape) * scale)
            state = dict(tr.state_dict())
            state["src_embed.weight"] = self.src_embed.weight
            state["tgt_embed.weight"] = self.tgt_embed.weight
            state["generator.weight"] = self.generator.weight
            state["generator.bias"] = self.generator.bias
            self.pt_model = pt.Transformer.from_torch_state_dict(state, self.config)
            self.pe_t = torch.from_numpy(self.pe)
        else:  # pt alone: random weights of the same shapes
            w = {}
            for name, shape in pt.weights.expected_weight_shapes(self.config).items():
                a = rng.standard_normal(shape, dtype=np.float32)
                a *= np.float32(scale if len(shape) == 2 else 0.1)
                if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith(
                        "norm3.weight") or name.endswith("norm.weight"):
                    a += np.float32(1.0)
                w[name] = a
            self.pt_model = pt.Transformer(self.config, w)
        self.pt_params = sum(a.size for a in self.pt_model.state_dict().values())

    # HF Marian ---------------------------------------------------------------------------

    def marian_config(self):
        tf = self.transformers
        return tf.MarianConfig(
            vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=LAYERS, decoder_layers=LAYERS,
            encoder_attention_heads=NHEAD, decoder_attention_heads=NHEAD, encoder_ffn_dim=FFN,
            decoder_ffn_dim=FFN, activation_function="relu", scale_embedding=True,
            max_position_embeddings=MAX_POS, share_encoder_decoder_embeddings=True,
            # Marian's ids: </s> = 0, <unk> = 1, <pad> = last (also the decoder start).
            pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1, eos_token_id=0,
            # The default forced_eos_token_id=0 would force </s> as the last token.
            forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)

    def _build_hf(self):
        try:
            self.torch.manual_seed(SEED)
            self.hf_model = self.transformers.MarianMTModel(self.marian_config()).eval()
            self.hf_params = sum(p.numel() for p in self.hf_model.parameters())
            self.hf_encoder = self.hf_model.get_encoder()
        except Exception as e:  # noqa: BLE001 - a peer that cannot be built is skipped, not fatal
            self.notes.append(f"hf, ct2: skipped (building the Marian model failed: {type(e).__name__}: {e})")
            self.wanted -= {"hf", "ct2"}
            self.hf_model = None

    # CTranslate2 ---------------------------------------------------------------------------

    def _build_ct2(self):
        try:
            import ctranslate2
            from ctranslate2.converters import TransformersConverter
        except ImportError as e:
            self.notes.append(f"ct2: skipped (ctranslate2 not importable: {e}; pip install ctranslate2)")
            self.wanted.discard("ct2")
            return
        stamp = json.dumps({"seed": SEED, "config": self.marian_config().to_dict(),
                            "ctranslate2": ctranslate2.__version__,
                            "torch": self.torch.__version__}, sort_keys=True, default=str)
        hf_dir, ct2_dir = os.path.join(self.workdir, "marian-hf"), os.path.join(self.workdir, "marian-ct2-float32")
        stamp_file = os.path.join(ct2_dir, "compare_model.stamp")
        try:
            with open(stamp_file) as f:
                reuse = f.read() == stamp and os.path.exists(os.path.join(ct2_dir, "model.bin"))
        except OSError:
            reuse = False
        try:
            if not reuse:
                t0 = time.perf_counter()
                self._save_hf(hf_dir)
                # The converter behind the ct2-transformers-converter command line.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    TransformersConverter(hf_dir).convert(ct2_dir, force=True)
                with open(stamp_file, "w") as f:
                    f.write(stamp)
                shutil.rmtree(hf_dir, ignore_errors=True)
                print(f"  converted the Marian model for CTranslate2 in {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
            self.ct2_dir = ct2_dir
            self.ct2_worker = Ct2Worker(ct2_dir)
            self.ct2_backend = self.ct2_worker.backend()
            self.ct2 = ctranslate2
        except Exception as e:  # noqa: BLE001
            self.notes.append(f"ct2: skipped (conversion or loading failed: {type(e).__name__}: {e})")
            self.wanted.discard("ct2")
            self.ct2 = None
            self.close()

    def close(self):
        worker, self.ct2_worker = getattr(self, "ct2_worker", None), None
        if worker is not None:
            worker.close()

    def _save_hf(self, hf_dir):
        """The Marian model plus the tokenizer the converter insists on: a 32000-entry
        word-level tokenizer.json (ids 0 </s>, 1 <unk>, 31999 <pad>, else w<id>)."""
        from tokenizers import Tokenizer, models, pre_tokenizers

        os.makedirs(hf_dir, exist_ok=True)
        self.hf_model.save_pretrained(hf_dir)
        tok = Tokenizer(models.WordLevel({marian_token(i): i for i in range(VOCAB)}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        fast = self.transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                                         pad_token="<pad>")
        fast.save_pretrained(hf_dir)


# -- CTranslate2 in a worker process ------------------------------------------------------


def _ct2_worker_main(conn):
    """Serves Ct2Worker: load a Translator, keep the source tokens, time samples."""
    import ctranslate2

    translator = tokens = None

    def translate():
        return translator.translate_batch(tokens, beam_size=1, max_decoding_length=1)

    while True:
        op, *a = conn.recv()
        try:
            if op == "exit":
                break
            if op == "load":  # (model dir, threads)
                translator = None
                translator = ctranslate2.Translator(a[0], device="cpu", compute_type="float32", intra_threads=a[1],
                                                    inter_threads=1)
                out = None
            elif op == "tokens":
                tokens, out = a[0], None
            elif op == "run":  # (calls, wake): seconds for the calls
                if a[1]:
                    translate()
                t0 = time.perf_counter()
                for _ in range(a[0]):
                    translate()
                out = time.perf_counter() - t0
            elif op == "first_tokens":
                out = [r.hypotheses[0][0] if r.hypotheses[0] else "" for r in translate()]
            elif op == "backend":  # CTranslate2's log of its ISA and GEMM backends (C++ stderr)
                ctranslate2.set_log_level(logging.INFO)
                with tempfile.TemporaryFile() as f:
                    sys.stderr.flush()
                    saved = os.dup(2)
                    os.dup2(f.fileno(), 2)
                    try:
                        ctranslate2.Translator(a[0], device="cpu", compute_type="float32", intra_threads=1,
                                               inter_threads=1)
                    finally:
                        os.dup2(saved, 2)
                        os.close(saved)
                        ctranslate2.set_log_level(logging.WARNING)
                    f.seek(0)
                    out = f.read().decode(errors="replace")
            else:
                raise ValueError(f"unknown op {op!r}")
            conn.send(("ok", out))
        except Exception as e:  # noqa: BLE001 - reported to the parent
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Ct2Worker:
    """CTranslate2 in a process of its own, driven from the interleaved rounds.

    In the process that imported torch, CTranslate2 would share pt's and torch's libgomp
    and, with a second OpenMP team, make it stop spinning (see the module docstring).
    The worker imports ctranslate2 without torch, so it uses the libgomp it bundles.
    Samples are timed inside the worker; the pipe round trip is not timed.
    """

    def __init__(self, model_dir):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process with OpenMP threads
        self.model_dir = model_dir
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_ct2_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        WORKER_PIDS.append(self.proc.pid)

    def _call(self, *msg):
        self.conn.send(msg)
        status, out = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"CTranslate2 worker: {out}")
        return out

    def backend(self) -> str:
        keep = []
        for line in self._call("backend", self.model_dir).splitlines():
            msg = line.split("] ")[-1].strip().lstrip("- ").strip()
            if msg.startswith(("Selected ISA", "Use Intel MKL", "SGEMM backend")):
                keep.append(msg)
        return ", ".join(keep)

    def load(self, threads):
        self._call("load", self.model_dir, threads)

    def set_tokens(self, tokens):
        self._call("tokens", tokens)

    def first_tokens(self):
        return self._call("first_tokens")

    def sample(self, number, wake):
        return self._call("run", number, wake)

    def close(self):
        try:
            self.conn.send(("exit",))
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.pid in WORKER_PIDS:
            WORKER_PIDS.remove(self.proc.pid)


def marian_token(i: int) -> str:
    return "</s>" if i == 0 else "<unk>" if i == 1 else "<pad>" if i == VOCAB - 1 else f"w{i}"


# -- checks ------------------------------------------------------------------------------


def parity_lines(peers) -> list[str]:
    """pt against torch nn.Transformer on a padded batch: encoder output at the valid
    positions, and teacher-forced decoder logits (causal target, padded memory)."""
    if peers.torch is None:
        return ["parity: no torch, pt's outputs are not checked"]
    torch = peers.torch
    rng = np.random.default_rng(7)
    lengths = np.array([24, 17, 5])
    ids = rng.integers(3, VOCAB, (3, 24))
    tgt = rng.integers(3, VOCAB, (3, 6))
    tgt[:, 0] = peers.config.bos_id
    pad = np.arange(24)[None, :] >= lengths[:, None]
    scale = math.sqrt(D_MODEL)
    with torch.inference_mode():
        x = peers.src_embed(torch.from_numpy(ids)) * scale + peers.pe_t[:24]
        mask = torch.from_numpy(pad)
        mem = peers.torch_tr.encoder(x, src_key_padding_mask=mask)
        y = peers.tgt_embed(torch.from_numpy(tgt)) * scale + peers.pe_t[:6]
        causal = torch.nn.Transformer.generate_square_subsequent_mask(6)
        h = peers.torch_tr.decoder(y, mem, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=mask)
        logits_t = peers.generator(h).numpy()
        mem_t = mem.numpy()
    mem_p = peers.pt_model.encode(ids, lengths)
    logits_p = peers.pt_model.decode(tgt, mem_p, lengths)
    valid = ~pad
    enc_diff = float(np.abs(mem_p[valid] - mem_t[valid]).max())
    dec_diff = float(np.abs(logits_p - logits_t).max())
    lines = [f"parity pt vs torch nn.Transformer (same weights, padded batch 3x24, lengths {lengths.tolist()}): "
             f"encoder max|diff| {enc_diff:.1e} at valid positions (max|y| {np.abs(mem_t[valid]).max():.2f}); "
             f"decode logits [3,6,32000] max|diff| {dec_diff:.1e} (max|logit| {np.abs(logits_t).max():.2f})"]
    if enc_diff > 1e-3 * max(1.0, float(np.abs(mem_t[valid]).max())) or dec_diff > 1e-3 * max(
            1.0, float(np.abs(logits_t).max())):
        lines.append("WARNING: pt and torch disagree beyond float32 rounding; the comparison is not of equal work")
    return lines


# -- timing ------------------------------------------------------------------------------

WAKE_BELOW = 0.05  # seconds per call: shorter calls get an untimed call before each sample


def local(fn):
    """A sampler: (calls, wake) -> seconds for the calls, after one untimed call if wake."""

    def sample(number, wake):
        if wake:
            fn()  # wake this library's thread pool
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0

    return sample


def calibrate(sample, min_time: float):
    """(calls per sample, seconds per call) after a warm-up."""
    sample(1, False)
    t = sample(1, False)
    if t < WAKE_BELOW:  # cheap: warm up a little more and time again
        t = sample(1, True)
    return max(1, math.ceil(min_time / max(t, 1e-7))), t


def measure(impls: dict, args, loads: dict) -> dict:
    cal = {name: calibrate(sample, args.min_time) for name, (sample, _) in impls.items()}
    samples = {name: [] for name in impls}
    names = list(impls)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            (sample, group), (number, per_call) = impls[name], cal[name]
            load = loads[group]
            for attempt in range(args.retries + 1):
                time.sleep(args.gap if attempt == 0 else 0.5)
                load.start()
                t = sample(number, per_call < WAKE_BELOW)
                # Another process was busy: pause and measure again, within a budget of
                # --repeats re-measurements per row, so a machine that stays busy ends the run.
                if load.stop() <= args.max_other or attempt == args.retries or load.remeasured >= args.repeats:
                    break
                load.remeasured += 1
            load.keep()
            samples[name].append(t / number)
    return samples


def quartiles(xs):
    q = np.percentile(np.asarray(xs), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def run_case(b, s, threads, peers, args):
    rng = np.random.default_rng([SEED, b, s])
    ids = rng.integers(3, VOCAB - 1, (b, s))
    ids[:, -1] = peers.config.eos_id  # pt / torch: EOS = 2
    start = np.full((b, 1), peers.config.bos_id)
    m = peers.pt_model
    impls = {
        "pt": (local(lambda: m.encode(ids)), ENC_GROUP),
        "pt+1": (local(lambda: m.decode(start, m.encode(ids))), STEP_GROUP),
    }
    row = {"case": (b, s), "threads": threads, "diff": None, "agree": None}
    torch = peers.torch
    if torch is not None:
        torch.set_num_threads(threads)
    pt.set_num_threads(threads)
    if "torch" in peers.wanted:
        ids_t = torch.from_numpy(ids)
        emb, enc, pe, scale = peers.src_embed, peers.torch_tr.encoder, peers.pe_t[:s], math.sqrt(D_MODEL)
        impls["torch"] = (local(lambda: enc(emb(ids_t) * scale + pe)), ENC_GROUP)
        with torch.inference_mode():
            row["diff"] = float(np.abs(m.encode(ids) - enc(emb(ids_t) * scale + pe).numpy()).max())
    if "hf" in peers.wanted or "ct2" in peers.wanted:
        mids = ids.copy()
        mids[:, -1] = 0  # Marian: </s> = 0
        mids_t = torch.from_numpy(mids)
        start_t = torch.full((b, 1), VOCAB - 1)  # Marian's decoder start: <pad>
        hf, hf_enc = peers.hf_model, peers.hf_encoder
        if "hf" in peers.wanted:
            impls["hf"] = (local(lambda: hf_enc(input_ids=mids_t)), ENC_GROUP)
            impls["hf+1"] = (local(lambda: hf(input_ids=mids_t, decoder_input_ids=start_t)), STEP_GROUP)
    if peers.ct2 is not None:
        worker = peers.ct2_worker
        worker.set_tokens([[marian_token(int(i)) for i in r] for r in mids])
        impls["ct2"] = (worker.sample, STEP_GROUP)
        # Faithful conversion: CT2's token = the argmax of HF's logits over CT2's 31999-entry vocabulary.
        with torch.inference_mode():
            ref = hf(input_ids=mids_t, decoder_input_ids=start_t).logits[:, -1, : VOCAB - 1].argmax(-1).tolist()
        got = worker.first_tokens()
        row["agree"] = (sum(g == marian_token(t) for g, t in zip(got, ref)), b)

    loads = {ENC_GROUP: OtherLoad(), STEP_GROUP: OtherLoad()}
    if torch is not None:
        with torch.inference_mode():
            samples = measure(impls, args, loads)
    else:
        samples = measure(impls, args, loads)

    row["loads"] = loads
    for name, xs in samples.items():
        q1, med, q3 = quartiles(xs)
        flop = flop_encoder(b, s) if impls[name][1] == ENC_GROUP else flop_step(b, s)
        row[name] = {"median": med, "gflops": flop / med / 1e9, "iqr": (q3 - q1) / med}
    return row


# -- output ------------------------------------------------------------------------------


def fmt_ms(t: float) -> str:
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def fmt_load(load) -> list[str]:
    other = load.share()
    return ["?" if math.isnan(other) else f"{100 * other:.0f}%" + (" !" if other > 0.10 else ""),
            str(load.remeasured)]


def table(rows, group, names, ratios, extra):
    """Wide table: one row per case and thread count; names = implementations present."""
    head = ["case", "thr"]
    for n in names:
        head += [f"{n} ms", f"{n} GF/s"]
    head += [f"{a}/{b}" for a, b in ratios] + [h for h, _ in extra] + ["spread", "other", "re"]
    body = []
    for r in rows:
        cells = [f"{r['case'][0]}x{r['case'][1]}", str(r["threads"])]
        for n in names:
            cells += [fmt_ms(r[n]["median"]), f"{r[n]['gflops']:.1f}"]
        cells += [f"{r[b]['median'] / r[a]['median']:.2f}x" for a, b in ratios]
        cells += [f(r) for _, f in extra]
        cells.append(f"{100 * max(r[n]['iqr'] for n in names):.0f}%")
        cells += fmt_load(r["loads"][group])
        body.append(cells)
    return head, body


def print_text(head, body):
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def print_markdown(head, body):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 2 else "--:" for i in range(len(head))) + "|")
    for row in body:
        print("| " + " | ".join(row) + " |")


def parse_case(s: str):
    try:
        b, length = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"case must be BATCHxLENGTH (e.g. 1x32), got {s!r}") from None
    if b < 1 or length < 2 or length > 512:
        raise argparse.ArgumentTypeError(f"case {s!r}: batch >= 1 and 2 <= length <= 512")
    return b, length


def parse_peers(s: str):
    names = [p.strip() for p in s.split(",") if p.strip() and p.strip() != "none"]
    bad = [p for p in names if p not in PEERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {bad}; choose from {','.join(PEERS)} (or 'none')")
    return names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="rounds, one sample of each implementation per round (default 7, --quick 3)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per sample (default 0.1, --quick 0.03)")
    p.add_argument("--gap", type=float, default=0.15, help="sleep before each sample, seconds (default 0.15)")
    p.add_argument("--max-other", type=float, default=0.25,
                   help="re-measure a sample when other processes used more than this share of the CPU "
                   "(default 0.25)")
    p.add_argument("--retries", type=int, default=3,
                   help="re-measurements per sample at most (default 3; at most --repeats per row and table)")
    p.add_argument("--wait-quiet", type=float, default=None,
                   help="before each case, wait up to this many seconds until other processes use < 10%% of "
                   "the CPU (default 60, --quick 10; 0: do not wait)")
    p.add_argument("--cases", type=parse_case, nargs="+", default=CASES, metavar="BxL",
                   help="batch x source length (default: 1x32 1x128 32x64)")
    p.add_argument("--peers", type=parse_peers, default=list(PEERS),
                   help="comma-separated peers out of torch,hf,ct2 (default: all; 'none': pt alone)")
    p.add_argument("--workdir", default=None,
                   help="keep the converted CTranslate2 model here and reuse it in later runs "
                   "(default: a temporary folder, removed at exit)")
    p.add_argument("--quick", action="store_true", help="fewer and shorter samples (a smoke run, noisier)")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.min_time is None:
        args.min_time = 0.03 if args.quick else 0.1
    if args.wait_quiet is None:
        args.wait_quiet = 10.0 if args.quick else 60.0
    if args.repeats < 1 or any(t < 1 for t in args.threads):
        p.error("--repeats and --threads must be >= 1")

    started = time.time()
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="pt-compare-model-")
        workdir = tmp
    else:
        os.makedirs(workdir, exist_ok=True)
    peers = None
    try:
        print("  building the models ...", file=sys.stderr, flush=True)
        peers = Peers(args.peers, workdir)
        info = machine_lines(peers)
        checks = parity_lines(peers)
        rows = []
        for threads in args.threads:
            if peers.ct2 is not None:
                peers.ct2_worker.load(threads)
            for b, s in args.cases:
                waited = wait_for_quiet(args.wait_quiet)
                if waited > 2:
                    print(f"  waited {waited:.0f} s for other processes to quiet down", file=sys.stderr, flush=True)
                rows.append(run_case(b, s, threads, peers, args))
                print(f"  done {b}x{s} threads={threads}", file=sys.stderr, flush=True)
    finally:
        if peers is not None:
            peers.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    w = peers.wanted
    enc_names = ["pt"] + [n for n in ("torch", "hf") if n in w]
    enc_ratios = [("pt", n) for n in enc_names[1:]]
    enc_extra = [("diff", lambda r: f"{r['diff']:.1e}")] if "torch" in w else []
    step_names = ["pt+1"] + (["hf+1"] if "hf" in w else []) + (["ct2"] if "ct2" in w else [])
    step_ratios = [("pt+1", n) for n in step_names[1:]]
    step_extra = [("ct2=hf", lambda r: f"{r['agree'][0]}/{r['agree'][1]}")] if "ct2" in w else []
    t1 = table(rows, ENC_GROUP, enc_names, enc_ratios, enc_extra)
    t2 = table(rows, STEP_GROUP, step_names, step_ratios, step_extra)

    method = (
        f"median of {args.repeats} interleaved rounds (all implementations of both tables rotate), "
        f">= {args.min_time * 1e3:.0f} ms per sample, {args.gap * 1e3:.0f} ms gap before each sample "
        f"(+1 untimed call for calls under {WAKE_BELOW * 1e3:.0f} ms); {time.time() - started:.0f} s in all; "
        "load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    model = (f"model: Transformer-base, d_model {D_MODEL}, {NHEAD} heads, {LAYERS}+{LAYERS} layers, FFN {FFN} ReLU, "
             f"post-LN, vocab {VOCAB}, sinusoidal positions, embeddings x sqrt({D_MODEL}), float32, random weights; "
             f"pt {peers.pt_params:,} parameters (separate source/target embeddings and output layer)")
    legend1 = (
        "pt: pt.Transformer.encode(ids). torch: nn.Transformer(batch_first=True).encoder (fast path) on "
        "emb(ids)*sqrt(d)+pe, same weights as pt. hf: MarianMTModel.get_encoder()(input_ids), other random "
        "weights of the same shapes. GF/s = encoder FLOP / time, FLOP = B*6*[2S(4d^2+2d*d_ff) + 4S^2*d]. "
        "pt/x: speed ratio (x's time / pt's time; > 1 = pt faster). diff: max|pt - torch| of the encoder output "
        "(all positions valid)."
    )
    legend2 = (
        "CTranslate2 has no encoder-only API, so its translate_batch(beam_size=1, max_decoding_length=1) is the "
        "proxy: encoder + cross-attention K/V + one decoder step + the 32000-way output layer. pt+1: pt.encode + "
        "pt.decode on [B,1] start tokens (same work). hf+1: MarianMTModel(input_ids, decoder_input_ids=[B,1]). "
        "GF/s uses the encoder + one step FLOP model. pt+1 runs the nn.Transformer weights, hf+1 and ct2 the "
        "Marian model (CT2 float32, converted by the ct2-transformers-converter converter): random weights of "
        "the same shapes, since cost does not depend on values (Marian's sin-first/cos-second positions are not "
        "mapped into pt, which supports the interleaved layout only). CT2's vocabulary has 31999 entries (its "
        "Marian loader drops <pad>) and its decoder starts from a zero embedding. ct2=hf: rows where CT2's token "
        "is the argmax of HF's logits (a check of the conversion)."
    )
    legend3 = (
        "spread: largest (p75 - p25) / median in the row. other: CPU share of other processes in the kept timing "
        "windows of the row (! = over 10%, untrustworthy). re: samples measured again because another process "
        "was busy."
    )
    notes = peers.notes
    if args.markdown:
        for line in [model] + info + checks + notes + [method]:
            print(f"- {line}")
        print("\n**Encoder** (latency ms, GFLOP/s)\n")
        print_markdown(*t1)
        print(f"\n{legend1}\n\n**Encoder + one decoder step** (the CTranslate2 proxy)\n")
        print_markdown(*t2)
        print(f"\n{legend2}\n\n{legend3}")
    else:
        for line in [model] + info + checks + notes + [method]:
            print(line)
        print("\nEncoder (latency ms, GFLOP/s)")
        print_text(*t1)
        print(f"\n{legend1}\n\nEncoder + one decoder step (the CTranslate2 proxy)")
        print_text(*t2)
        print(f"\n{legend2}\n\n{legend3}")


if __name__ == "__main__":
    main()

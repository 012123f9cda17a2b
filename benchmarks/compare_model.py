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
            max_decoding_length=1), in a worker process of its own (see _common.Worker)

pt and torch share one set of random weights, and pt's encoder output is checked
against torch's (max abs diff, printed). hf and ct2 run a Marian model with other
random weights of the same shapes (cost does not depend on the weight values; for
pt on Marian's own weights, through pt.from_pretrained, see compare_generate.py).
ct2's token is checked against hf's argmax (the conversion is faithful).

int8 (tables 3 and 4; --compute-types, default float32,int8), timed in the same rounds,
each implementation quantizing the weights its own way:

    pt.i8     pt.Transformer(config, <pt's weights>, compute_type="int8").encode (int8
              weights and embedding tables, a float32 scale per row, activations per row)
    hf.i8     torch.ao.quantization.quantize_dynamic(<the Marian model>, {nn.Linear},
              qint8) (PyTorch dynamic int8, fbgemm): its encoder, and its encoder + step
    ort.i8    ONNX Runtime on the Marian encoder exported with torch.onnx.export
              (dynamo=True) and quantized by onnxruntime.quantization.quantize_dynamic
              (per_channel=True, QInt8); needs onnx and onnxscript
    ct2.i8    the Marian model converted with quantization="int8",
              Translator(compute_type="int8"), the proxy above, a second worker process
    pt.i8+1   pt.i8's encode + one decode step

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

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

if __package__:  # imported as benchmarks.compare_model (asv's discovery, python -m)
    from . import _common as bc
else:  # run as a script: benchmarks/ is on sys.path
    import _common as bc

warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")

import pytransformer as pt  # noqa: E402

PEERS = ("torch", "hf", "ct2")
CASES = [(1, 32), (1, 128), (32, 64)]

D_MODEL, NHEAD, LAYERS, FFN, VOCAB, SEED = bc.D_MODEL, bc.NHEAD, bc.LAYERS, bc.FFN, bc.VOCAB, bc.SEED

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


def machine_lines(peers) -> list[str]:
    lines = bc.base_machine_lines()
    if peers.torch is not None:
        lines.append(bc.torch_line(peers.torch))
    if peers.hf_model is not None:
        lines.append(f"transformers {peers.transformers.__version__}: MarianMTModel, attention "
                     f"{peers.hf_model.config._attn_implementation}, {peers.hf_params:,} parameters")
    if peers.ct2 is not None:
        lines.append(f"ctranslate2 {peers.ct2.__version__} (in a worker process of its own): float32"
                     + (" and int8 (a second worker)" if peers.int8 else "") + ", inter_threads=1, "
                     "intra_threads = threads" + (f"; {peers.ct2_backend}" if peers.ct2_backend else ""))
    if peers.ort is not None:
        lines.append(f"onnxruntime {peers.ort.__version__} (CPUExecutionProvider): the Marian encoder, int8 by "
                     "quantize_dynamic(per_channel=True, QInt8)")
    if peers.int8:
        info = pt.runtime_info()
        lines.append(f"pt int8 kernel: {info.get('int8_kernel')} (float32 ISA {info['isa']})"
                     + (f"; torch dynamic int8 engine {peers.torch.backends.quantized.engine}"
                        if peers.hf_i8 is not None else ""))
    lines.append(bc.env_line())
    return lines


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

    def __init__(self, wanted, compute_types, workdir):
        self.notes: list[str] = []
        self.int8 = "int8" in compute_types
        self.torch = self.transformers = self.ct2 = self.ort = None
        self.hf_model = self.hf_i8 = self.pt_i8 = self.ct2_i8_worker = None
        self.ct2_loads = []
        self.ort_sessions: dict = {}
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
        if self.int8:
            self.pt_i8 = pt.Transformer(self.config, self.pt_model.state_dict(), compute_type="int8")
            if self.hf_model is not None:
                self._build_int8_peers()

    def _build_int8_peers(self):
        import copy

        torch = self.torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.hf_i8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(self.hf_model), {torch.nn.Linear},
                                                                dtype=torch.qint8).eval()
        self.hf_i8_encoder = self.hf_i8.get_encoder()
        try:
            import onnxruntime
        except ImportError as e:
            self.notes.append(f"ort.i8: skipped (onnxruntime not importable: {e}; pip install onnxruntime onnx "
                              "onnxscript)")
            return
        stamp = {"seed": SEED, "torch": torch.__version__, "config": self.hf_model.config.to_dict()}
        f32 = os.path.join(self.workdir, "marian-encoder-onnx", "model.onnx")
        i8 = os.path.join(self.workdir, "marian-encoder-onnx-int8", "model.onnx")
        try:
            t0 = time.perf_counter()

            class Encoder(torch.nn.Module):
                def __init__(self, enc):
                    super().__init__()
                    self.enc = enc

                def forward(self, input_ids):
                    return self.enc(input_ids=input_ids).last_hidden_state

            bc.cached(os.path.dirname(f32), stamp, lambda out: bc.onnx_export(
                torch, Encoder(self.hf_encoder), (torch.full((2, 16), 5),), f32, ["input_ids"],
                ["last_hidden_state"]))
            bc.cached(os.path.dirname(i8), stamp, lambda out: bc.onnx_quantize(f32, i8))
            print(f"  ONNX export + int8 quantization of the Marian encoder: {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
            self.ort, self.ort_path = onnxruntime, i8
        except Exception as e:  # noqa: BLE001 - a peer that cannot be built is skipped, not fatal
            self.notes.append(f"ort.i8: skipped (ONNX export or quantization failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0]}; it needs onnx and onnxscript)")

    def ort_session(self, threads):
        if threads not in self.ort_sessions:
            self.ort_sessions[threads] = bc.ort_session(self.ort, self.ort_path, threads)
        return self.ort_sessions[threads]

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

    def _build_hf(self):
        try:
            self.torch.manual_seed(SEED)
            self.hf_model = self.transformers.MarianMTModel(bc.marian_config(self.transformers)).eval()
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
        except ImportError as e:
            self.notes.append(f"ct2: skipped (ctranslate2 not importable: {e}; pip install ctranslate2)")
            self.wanted.discard("ct2")
            return
        try:
            t0 = time.perf_counter()
            self.ct2_dir, reused = bc.marian_ct2(self.transformers, self.hf_model, self.workdir, "marian-ct2-float32",
                                                 {"seed": SEED, "torch": self.torch.__version__})
            if not reused:
                print(f"  converted the Marian model for CTranslate2 in {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
            self.ct2_worker = bc.Worker()
            self.ct2_backend = bc.ct2_backend(self.ct2_worker, "Translator", self.ct2_dir)
            self.ct2_loads = [(self.ct2_worker, self.ct2_dir, "float32")]
            if self.int8:
                i8_dir, _ = bc.marian_ct2(self.transformers, self.hf_model, self.workdir, "marian-ct2-int8",
                                          {"seed": SEED, "torch": self.torch.__version__}, quantization="int8")
                self.ct2_i8_worker = bc.Worker()
                self.ct2_loads.append((self.ct2_i8_worker, i8_dir, "int8"))
            self.ct2 = ctranslate2
        except Exception as e:  # noqa: BLE001
            self.notes.append(f"ct2: skipped (conversion or loading failed: {type(e).__name__}: {e})")
            self.wanted.discard("ct2")
            self.ct2 = None
            self.close()

    def close(self):
        workers = [getattr(self, "ct2_worker", None), self.ct2_i8_worker]
        self.ct2_worker = self.ct2_i8_worker = None
        self.ct2_loads = []
        for worker in workers:
            if worker is not None:
                worker.close()


# -- CTranslate2 (in a worker process of its own: see _common.Worker) --------------------


def ct2_proxy(translator, tokens):
    """The timed call: the encoder + one decoder step."""
    return translator.translate_batch(tokens, beam_size=1, max_decoding_length=1)


def ct2_first_tokens(results):
    return [r.hypotheses[0][0] if r.hypotheses[0] else "" for r in results]


marian_token = bc.marian_token


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


def run_case(b, s, threads, peers, args):
    rng = np.random.default_rng([SEED, b, s])
    ids = rng.integers(3, VOCAB - 1, (b, s))
    ids[:, -1] = peers.config.eos_id  # pt / torch: EOS = 2
    start = np.full((b, 1), peers.config.bos_id)
    m = peers.pt_model
    impls = {
        "pt": (bc.local(lambda: m.encode(ids)), ENC_GROUP),
        "pt+1": (bc.local(lambda: m.decode(start, m.encode(ids))), STEP_GROUP),
    }
    row = {"case": (b, s), "threads": threads, "diff": None, "agree": None}
    torch = peers.torch
    if torch is not None:
        torch.set_num_threads(threads)
    pt.set_num_threads(threads)
    if "torch" in peers.wanted:
        ids_t = torch.from_numpy(ids)
        emb, enc, pe, scale = peers.src_embed, peers.torch_tr.encoder, peers.pe_t[:s], math.sqrt(D_MODEL)
        impls["torch"] = (bc.local(lambda: enc(emb(ids_t) * scale + pe)), ENC_GROUP)
        with torch.inference_mode():
            row["diff"] = float(np.abs(m.encode(ids) - enc(emb(ids_t) * scale + pe).numpy()).max())
    if "hf" in peers.wanted or "ct2" in peers.wanted:
        mids = ids.copy()
        mids[:, -1] = 0  # Marian: </s> = 0
        mids_t = torch.from_numpy(mids)
        start_t = torch.full((b, 1), VOCAB - 1)  # Marian's decoder start: <pad>
        hf, hf_enc = peers.hf_model, peers.hf_encoder
        if "hf" in peers.wanted:
            impls["hf"] = (bc.local(lambda: hf_enc(input_ids=mids_t)), ENC_GROUP)
            impls["hf+1"] = (bc.local(lambda: hf(input_ids=mids_t, decoder_input_ids=start_t)), STEP_GROUP)
    if peers.ct2 is not None:
        worker = peers.ct2_worker
        worker.prepare(ct2_proxy, [[marian_token(int(i)) for i in r] for r in mids])
        impls["ct2"] = (worker.sample, STEP_GROUP)
        # Faithful conversion: CT2's token = the argmax of HF's logits over CT2's 31999-entry vocabulary.
        with torch.inference_mode():
            ref = hf(input_ids=mids_t, decoder_input_ids=start_t).logits[:, -1, : VOCAB - 1].argmax(-1).tolist()
        got = worker.output(ct2_first_tokens)
        row["agree"] = (sum(g == marian_token(t) for g, t in zip(got, ref)), b)
    # int8, in the same rounds.
    if peers.pt_i8 is not None:
        m8 = peers.pt_i8
        impls["pt.i8"] = (bc.local(lambda: m8.encode(ids)), ENC_GROUP)
        impls["pt.i8+1"] = (bc.local(lambda: m8.decode(start, m8.encode(ids))), STEP_GROUP)
    if peers.hf_i8 is not None and ("hf" in peers.wanted or "ct2" in peers.wanted):
        hf8, hf8_enc = peers.hf_i8, peers.hf_i8_encoder
        impls["hf.i8"] = (bc.local(lambda: hf8_enc(input_ids=mids_t)), ENC_GROUP)
        impls["hf.i8+1"] = (bc.local(lambda: hf8(input_ids=mids_t, decoder_input_ids=start_t)), STEP_GROUP)
    if peers.ort is not None:
        sess, feed = peers.ort_session(threads), {"input_ids": mids.astype(np.int64)}
        impls["ort.i8"] = (bc.local(lambda: sess.run(["last_hidden_state"], feed)), ENC_GROUP)
    if peers.ct2_i8_worker is not None:
        peers.ct2_i8_worker.prepare(ct2_proxy, [[marian_token(int(i)) for i in r] for r in mids])
        impls["ct2.i8"] = (peers.ct2_i8_worker.sample, STEP_GROUP)

    loads = {ENC_GROUP: bc.OtherLoad(), STEP_GROUP: bc.OtherLoad()}
    if torch is not None:
        with torch.inference_mode():
            samples = bc.measure(impls, args, loads)
    else:
        samples = bc.measure(impls, args, loads)

    row["loads"] = loads
    for name, entry in bc.summarize(samples).items():
        flop = flop_encoder(b, s) if impls[name][1] == ENC_GROUP else flop_step(b, s)
        row[name] = dict(entry, gflops=flop / entry["median"] / 1e9)
    return row


# -- arguments ---------------------------------------------------------------------------


def parse_case(s: str):
    try:
        b, length = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"case must be BATCHxLENGTH (e.g. 1x32), got {s!r}") from None
    if b < 1 or length < 2 or length > 512:
        raise argparse.ArgumentTypeError(f"case {s!r}: batch >= 1 and 2 <= length <= 512")
    return b, length


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=parse_case, nargs="+", default=CASES, metavar="BxL",
                   help="batch x source length (default: 1x32 1x128 32x64)")
    p.add_argument("--peers", type=bc.peers_type(PEERS), default=list(PEERS),
                   help="comma-separated peers out of torch,hf,ct2 (default: all; 'none': pt alone)")
    p.add_argument("--compute-types", type=bc.compute_types_type, default=["float32", "int8"],
                   help="float32, int8 or float32,int8 (default): int8 adds tables 3 and 4")
    bc.add_timing_args(p)
    args = p.parse_args(argv)
    bc.resolve_timing_args(p, args)

    started = time.time()
    workdir = bc.Workdir(args.workdir, "pt-compare-model-")
    peers = None
    try:
        print("  building the models ...", file=sys.stderr, flush=True)
        peers = Peers(args.peers, args.compute_types, workdir.path)
        info = machine_lines(peers)
        checks = parity_lines(peers)
        rows = bc.run_rows(args, peers, "Translator", lambda b, s, threads: run_case(b, s, threads, peers, args),
                           lambda b, s: f"{b}x{s}")
    finally:
        if peers is not None:
            peers.close()
        workdir.close()

    w = peers.wanted
    enc_names = ["pt"] + [n for n in ("torch", "hf") if n in w]
    enc_ratios = [("pt", n) for n in enc_names[1:]]
    enc_extra = [("diff", lambda r: f"{r['diff']:.1e}")] if "torch" in w else []
    step_names = ["pt+1"] + (["hf+1"] if "hf" in w else []) + (["ct2"] if "ct2" in w else [])
    step_ratios = [("pt+1", n) for n in step_names[1:]]
    step_extra = [("ct2=hf", lambda r: f"{r['agree'][0]}/{r['agree'][1]}")] if "ct2" in w else []
    cols = [("ms", lambda e: bc.fmt_ms(e["median"])), ("GF/s", lambda e: f"{e['gflops']:.1f}")]
    t1 = bc.table(rows, ENC_GROUP, enc_names, enc_ratios, enc_extra, cols)
    t2 = bc.table(rows, STEP_GROUP, step_names, step_ratios, step_extra, cols)
    tables = [("Encoder (latency ms, GFLOP/s)", t1, None),
              ("Encoder + one decoder step (the CTranslate2 proxy)", t2, None)]
    if peers.int8 and rows:
        e8 = [n for n in ("pt.i8", "hf.i8", "ort.i8") if n in rows[0]]
        s8 = [n for n in ("pt.i8+1", "hf.i8+1", "ct2.i8") if n in rows[0]]
        tables.append(("int8: encoder (latency ms, GFLOP/s)",
                       bc.table(rows, ENC_GROUP, e8, [("pt.i8", "pt")] + [("pt.i8", n) for n in e8[1:]], [], cols),
                       "pt.i8/pt: pt int8 against pt float32 (same weights); pt.i8/x: against x's int8 (hf.i8: "
                       "PyTorch dynamic int8 of the Marian model, ort.i8: ONNX Runtime dynamic int8 of its export)."))
        tables.append(("int8: encoder + one decoder step (the CTranslate2 proxy)",
                       bc.table(rows, STEP_GROUP, s8, [("pt.i8+1", "pt+1")] + [("pt.i8+1", n) for n in s8[1:]], [],
                                cols), "ct2.i8: CTranslate2 int8 (converted with quantization=\"int8\")."))

    method = bc.method_line(args, started)
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
        "the same shapes, since cost does not depend on values. CT2's vocabulary has 31999 entries (its "
        "Marian loader drops <pad>) and its decoder starts from a zero embedding. ct2=hf: rows where CT2's token "
        "is the argmax of HF's logits (a check of the conversion)."
    )
    tables[0] = tables[0][:2] + (legend1,)
    tables[1] = tables[1][:2] + (legend2,)
    bc.print_report(args, [model] + info + checks + peers.notes + [method], tables,
                    [bc.SPREAD_LEGEND])


if __name__ == "__main__":
    main()

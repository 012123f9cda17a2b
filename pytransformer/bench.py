"""``pytransformer bench``: speed on a Transformer-base-sized random model.

Encoding (source length 32) and greedy generation of exactly --tokens tokens at a
few batch sizes and thread counts, tokens/s. With --compare (and torch,
transformers, ctranslate2 installed) the same random model, built as a Hugging
Face MarianMTModel, also runs through transformers' generate and CTranslate2
(float32), so all three compute the same thing. Medians of --repeats runs, in one
process: a quick look, not a controlled benchmark (see benchmarks/ for those).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable, List

import numpy as np

VOCAB, D_MODEL, LAYERS, HEADS, FFN, SRC_LEN, PAD, EOS = 32000, 512, 6, 8, 2048, 32, 31999, 0


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _random_pt_model(compute_type="float32"):
    import pytransformer as pt

    config = pt.TransformerConfig(d_model=D_MODEL, nhead=HEADS, num_encoder_layers=LAYERS, num_decoder_layers=LAYERS,
                                  dim_feedforward=FFN, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB,
                                  share_embeddings=True, tie_output=True, max_length=512, pad_id=PAD, bos_id=PAD,
                                  eos_id=EOS)
    rng = np.random.default_rng(1234)
    weights = {}
    for name, shape in pt.weights.expected_weight_shapes(config).items():
        if "norm" in name:
            weights[name] = np.ones(shape, np.float32) if name.endswith("weight") else np.zeros(shape, np.float32)
        else:
            weights[name] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    return pt.Transformer(config, weights, compute_type=compute_type)


def _marian(workdir: str):
    """A random MarianMTModel of Transformer-base size, saved for pt and CTranslate2."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(1234)
    cfg = MarianConfig(vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=LAYERS, decoder_layers=LAYERS,
                       encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN,
                       decoder_ffn_dim=FFN, activation_function="relu", max_position_embeddings=512,
                       scale_embedding=True, pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=EOS,
                       forced_eos_token_id=None)
    model = MarianMTModel(cfg).eval()
    model.save_pretrained(workdir)
    return model


def _save_tokenizer(workdir: str) -> None:
    """CTranslate2's converter wants a tokenizer: a word-level one over ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(VOCAB)}
    vocab.pop(f"w{EOS}")
    vocab.pop(f"w{PAD}")
    vocab.pop("w1")
    vocab.update({"</s>": EOS, "<unk>": 1, "<pad>": PAD})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(workdir)


def run(args) -> int:
    import pytransformer as pt

    threads = args.threads or sorted({1, pt.runtime_info()["physical_cores"]})
    notes: List[str] = []
    workdir = tempfile.mkdtemp(prefix="pytransformer-bench-")
    hf = None
    if args.compare:
        try:
            hf = _marian(workdir)
            model = pt.from_pretrained(workdir, compute_type=args.compute_type)
        except ImportError as e:
            notes.append(f"--compare needs torch and transformers ({e}); running pytransformer alone")
            model = _random_pt_model(args.compute_type)
    else:
        model = _random_pt_model(args.compute_type)
    ct2 = None
    if hf is not None:
        try:
            import ctranslate2
            from ctranslate2.converters import TransformersConverter

            _save_tokenizer(workdir)
            TransformersConverter(workdir).convert(os.path.join(workdir, "ct2"), force=True)
            ct2 = ctranslate2
        except Exception as e:  # noqa: BLE001 - an optional peer
            notes.append(f"CTranslate2 skipped: {type(e).__name__}: {e}")

    rng = np.random.default_rng(7)
    print(f"pytransformer {pt.__version__} bench: random Transformer-base (d_model {D_MODEL}, {LAYERS}+{LAYERS} layers, "
          f"vocab {VOCAB}), source length {SRC_LEN}, {args.tokens} generated tokens, greedy; "
          f"{pt.runtime_info()['isa']}, compute_type {model.compute_type}"
          f"{' (int8 kernel ' + pt.runtime_info()['int8_kernel'] + ')' if model.compute_type == 'int8' else ''}, "
          f"median of {args.repeats}")
    for note in notes:
        print("note: " + note)
    header = f"{'threads':>7} {'batch':>5} {'impl':>14} {'encode ms':>10} {'generate ms':>12} {'tokens/s':>9}"
    print(header)
    print("-" * len(header))
    for th in threads:
        pt.set_num_threads(th)
        for batch in args.batch:
            src = rng.integers(3, VOCAB - 1, (batch, SRC_LEN)).astype(np.int64)
            src[:, -1] = EOS
            enc = _median_time(lambda: model.encode(src), args.repeats)
            gen = _median_time(lambda: model.generate(src, max_length=args.tokens, min_length=args.tokens,
                                                      return_scores=False), args.repeats)
            print(f"{th:>7} {batch:>5} {'pytransformer':>14} {enc * 1e3:>10.1f} {gen * 1e3:>12.1f} "
                  f"{batch * args.tokens / gen:>9.1f}", flush=True)
            if hf is not None:
                import torch

                torch.set_num_threads(th)
                ids = torch.from_numpy(src)
                with torch.inference_mode():
                    enc_t = _median_time(lambda: hf.get_encoder()(input_ids=ids), args.repeats)
                    gen_t = _median_time(lambda: hf.generate(input_ids=ids, num_beams=1, do_sample=False,
                                                             min_new_tokens=args.tokens, max_new_tokens=args.tokens),
                                         args.repeats)
                print(f"{th:>7} {batch:>5} {'transformers':>14} {enc_t * 1e3:>10.1f} {gen_t * 1e3:>12.1f} "
                      f"{batch * args.tokens / gen_t:>9.1f}", flush=True)
            if ct2 is not None:
                translator = ct2.Translator(os.path.join(workdir, "ct2"), device="cpu", compute_type="float32",
                                            intra_threads=th, inter_threads=1)
                tokens = [["</s>" if t == EOS else f"w{t}" for t in row] for row in src.tolist()]
                gen_c = _median_time(lambda: translator.translate_batch(
                    tokens, beam_size=1, min_decoding_length=args.tokens, max_decoding_length=args.tokens),
                    args.repeats)
                print(f"{th:>7} {batch:>5} {'ctranslate2':>14} {'-':>10} {gen_c * 1e3:>12.1f} "
                      f"{batch * args.tokens / gen_c:>9.1f}", flush=True)
                del translator
    return 0

"""The Transformer-base Marian model that the peers run (built from a config with random
weights, saved as a Hugging Face folder, converted for CTranslate2).

Part of the comparison scripts' shared helpers (see _common.py); standard library and
numpy only at module level."""

from __future__ import annotations

import os
import shutil

if __package__:  # imported as benchmarks._common (python -m)
    from ._args import cached
    from ._ct2 import ct2_convert
else:  # benchmarks/ is on sys.path
    from _args import cached
    from _ct2 import ct2_convert

# -- the Transformer-base Marian model of the peers --------------------------------------

# Transformer-base.
D_MODEL, NHEAD, LAYERS, FFN, VOCAB = 512, 8, 6, 2048, 32000
MAX_POS = 512  # positions in the Marian model (as in the performance anchors: 61,046,784 parameters)
SEED = 1234


def marian_config(transformers, **overrides):
    """MarianConfig of Transformer-base: shared + tied embeddings, scale_embedding,
    sinusoidal positions, ReLU, post-LN, no dropout."""
    kw = dict(
        vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=LAYERS, decoder_layers=LAYERS,
        encoder_attention_heads=NHEAD, decoder_attention_heads=NHEAD, encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN, activation_function="relu", scale_embedding=True,
        max_position_embeddings=MAX_POS, share_encoder_decoder_embeddings=True,
        # Marian's ids: </s> = 0, <unk> = 1, <pad> = last (also the decoder start).
        pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1, eos_token_id=0,
        # The default forced_eos_token_id=0 would force </s> as the last token.
        forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    kw.update(overrides)
    return transformers.MarianConfig(**kw)


def marian_token(i: int) -> str:
    """The token string of id i in the word-level vocabulary of save_marian_folder."""
    return "</s>" if i == 0 else "<unk>" if i == 1 else "<pad>" if i == VOCAB - 1 else f"w{i}"


def save_marian_folder(transformers, model, folder: str) -> None:
    """save_pretrained plus the tokenizer ct2-transformers-converter insists on: a
    32000-entry word-level tokenizer.json (ids 0 </s>, 1 <unk>, 31999 <pad>, else w<id>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({marian_token(i): i for i in range(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                                pad_token="<pad>")
    fast.save_pretrained(folder)


def marian_ct2(transformers, model, workdir: str, name: str, stamp: dict,
               quantization: str | None = None) -> tuple[str, bool]:
    """Converts the Marian model for CTranslate2 (float32, or quantization="int8") into
    workdir/name, or reuses the conversion there when it was made with the same stamp
    (seed, config, versions). Returns (model dir, reused)."""
    import ctranslate2

    hf_dir = os.path.join(workdir, name + "-hf")

    def build(out_dir):
        save_marian_folder(transformers, model, hf_dir)
        try:
            ct2_convert(hf_dir, out_dir, quantization)
        finally:
            shutil.rmtree(hf_dir, ignore_errors=True)

    ct2_dir = os.path.join(workdir, name)
    full = dict(stamp, ctranslate2=ctranslate2.__version__, config=model.config.to_dict(), quantization=quantization)
    return ct2_dir, cached(ct2_dir, full, build)

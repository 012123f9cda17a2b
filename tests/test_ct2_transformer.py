"""The CTranslate2 reader on the Transformer spec: a random-weight Marian model (weights
redrawn at a scale where outputs depend on the input), converted by CTranslate2's own
converter (what ct2-transformers-converter runs), float32 and --quantization int8,
loaded with pt.from_pretrained and decoded: the same tokens as ctranslate2.Translator
on the same folder, greedy and beam 4 (CTranslate2's beam semantics)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import pytransformer as pt
from pytransformer.families import _ctranslate2

V = 60


def _token(i: int) -> str:
    return "</s>" if i == 0 else "<unk>" if i == 1 else "<pad>" if i == V - 1 else f"w{i}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    from ctranslate2.converters import TransformersConverter
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg = transformers.MarianConfig(
        vocab_size=V, decoder_vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
        max_position_embeddings=64, pad_token_id=V - 1, eos_token_id=0, decoder_start_token_id=V - 1,
        forced_eos_token_id=None, share_encoder_decoder_embeddings=True, activation_function="relu",
        scale_embedding=True)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue  # fixed sinusoids
            if "shared" in name or "embed_tokens" in name:
                p.normal_(0.0, 1.0)
            elif p.ndim == 2:
                p.normal_(0.0, (3.0 if "encoder_attn" in name else 1.0) / np.sqrt(p.shape[1]))
            elif "layer_norm" in name:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            else:
                p.normal_(0.0, 0.2)
        model.model.shared.weight[V - 1] = 0.0  # Marian's <pad> row
    hf = str(tmp_path_factory.mktemp("marian_hf"))
    model.save_pretrained(hf)
    tok = Tokenizer(models.WordLevel({_token(i): i for i in range(V)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                         pad_token="<pad>").save_pretrained(hf)
    out = {}
    for quant in (None, "int8"):
        d = str(tmp_path_factory.mktemp(f"marian_ct2_{quant or 'float32'}"))
        TransformersConverter(hf).convert(d, quantization=quant, force=True)
        out[quant or "float32"] = d
    return out


@pytest.mark.parametrize("kind", ["float32", "int8"])
@pytest.mark.parametrize("beam_size", [1, 4])
def test_same_tokens_as_ctranslate2(folders, kind, beam_size):
    import ctranslate2

    folder = folders[kind]
    spec, _, variables, _ = _ctranslate2.read_model_bin(os.path.join(folder, "model.bin"))
    assert spec == "TransformerSpec"
    assert any(a.dtype == np.int8 and a.ndim == 2 for a in variables.values()) == (kind == "int8")
    model = pt.from_pretrained(folder, compute_type=kind)
    assert isinstance(model, pt.Transformer) and model.compute_type == kind
    translator = ctranslate2.Translator(folder, device="cpu", compute_type=kind)
    rng = np.random.default_rng(beam_size)
    outputs = set()
    for _ in range(12):
        ids = rng.integers(2, V - 2, int(rng.integers(3, 12))).tolist() + [0]
        ref = translator.translate_batch([[model.vocabulary[i] for i in ids]], beam_size=beam_size,
                                         max_decoding_length=16)[0].hypotheses[0]
        memory = model.encode(np.array([ids], np.int32))
        got = model.generate_from_memory(memory, max_length=16, beam_size=beam_size, beam_semantics="ct2",
                                         renormalize=True, **model.generation_defaults)[0].sequences[0]
        assert [model.vocabulary[i] for i in got] == ref
        outputs.add(tuple(ref))
    assert len(outputs) >= 4, "outputs do not depend on the input: the test would be weak"


def test_unsupported_spec_is_a_clear_error(folders, tmp_path):
    import shutil

    folder = str(tmp_path / "m")
    shutil.copytree(folders["float32"], folder)
    path = os.path.join(folder, "model.bin")
    data = bytearray(open(path, "rb").read())
    name = b"TransformerSpec"
    i = data.index(name)
    data[i:i + len(name)] = b"LanguageModelXX"
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="LanguageModelXX"):
        pt.from_pretrained(folder)


def test_corrupted_model_bin_raises_clean_errors(folders, tmp_path):
    """Random byte changes in the header region and truncations: a clear exception
    (ValueError family, or the loader's own checks), never a crash or a hang."""
    src = open(os.path.join(folders["float32"], "model.bin"), "rb").read()
    rng = np.random.default_rng(0)
    path = str(tmp_path / "model.bin")
    for trial in range(60):
        data = bytearray(src)
        if trial % 3 == 0:
            data = data[:int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                i = int(rng.integers(0, min(len(data), 4000)))
                data[i] = int(rng.integers(0, 256))
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            _ctranslate2.read_model_bin(path)
        except ValueError:
            pass  # CT2FormatError is a ValueError

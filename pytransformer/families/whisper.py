"""Whisper (``model_type`` ``"whisper"``, WhisperForConditionalGeneration) ->
:class:`pytransformer.WhisperModel`.

The encoder-decoder part is a :class:`pytransformer.Transformer` with
``src_vocab_size=0`` (the encoder takes the audio front end's output): pre-LN, GELU,
``model.{encoder,decoder}.layer_norm`` after the stacks, learned decoder positions
(``model.decoder.embed_positions.weight``, [max_target_positions, d_model], no
offset), no embedding scale, the output layer tied to ``model.decoder.embed_tokens``
without bias. The attention key projections have no bias (zeros here). The front end
(``model.encoder.conv1``, ``conv2``) and the encoder's fixed sinusoidal positions
(``model.encoder.embed_positions.weight``) run in :class:`pytransformer.WhisperModel`.

Special tokens and suppression lists come from ``generation_config.json`` (Hugging
Face's ``suppress_tokens``, ``begin_suppress_tokens``, ``lang_to_id``,
``task_to_id``, ``no_timestamps_token_id``), with ``config.json`` as the fallback.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from ..config import TransformerConfig, _check_fits_in_memory
from ..model import Transformer
from ..whisper import WhisperModel, WhisperTokens
from . import _hf, register
from ._hf import HFConfig, take


def _tokens(path: str, hf: HFConfig, vocab: int) -> WhisperTokens:
    gen_file = os.path.join(path, "generation_config.json")
    gen = HFConfig(_hf.read_json(gen_file), gen_file) if os.path.isfile(gen_file) else HFConfig({}, gen_file)

    def get(key, default=None):
        v = gen.get(key)
        return hf.get(key, default) if v is None else v

    def token(key: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
            raise ValueError(f"from_pretrained: {path!r}: {key} must be a token id in [0, {vocab}), got {value!r}")
        return value

    def optional(key: str, value) -> Optional[int]:
        return None if value is None else token(key, value)

    def id_list(key: str) -> tuple:
        v = get(key) or []
        if not isinstance(v, list):
            raise ValueError(f"from_pretrained: {path!r}: {key} must be a list of token ids, got {v!r}")
        return tuple(token(key, t) for t in v)

    eot = get("eos_token_id", 50256)
    if isinstance(eot, list):
        eot = eot[0] if eot else None
    sot = get("decoder_start_token_id", 50257)
    # English-only checkpoints: <|notimestamps|> is 50362 at vocabulary 51864; multilingual 50363
    no_ts = get("no_timestamps_token_id", 50362 if vocab == 51864 else 50363)
    langs = get("lang_to_id") or {}
    tasks = get("task_to_id") or {}
    if not isinstance(langs, dict) or not isinstance(tasks, dict):
        raise ValueError(f"from_pretrained: {path!r}: lang_to_id and task_to_id must be JSON objects")
    languages: Dict[str, int] = {}
    for name, tid in langs.items():
        code = name[2:-2] if name.startswith("<|") and name.endswith("|>") else name
        languages[code] = token("lang_to_id", tid)
    if get("is_multilingual") is False:
        languages = {}
    transcribe = optional("task_to_id", tasks.get("transcribe"))
    translate = optional("task_to_id", tasks.get("translate"))
    no_speech = get("no_speech_token_id")
    if no_speech is None:  # <|nospeech|> (<|nocaptions|> in the first checkpoints) sits right before <|notimestamps|>
        no_speech = no_ts - 1 if isinstance(no_ts, int) and no_ts >= 1 else None
    return WhisperTokens(sot=token("decoder_start_token_id", sot), eot=token("eos_token_id", eot),
                         no_timestamps=token("no_timestamps_token_id", no_ts), transcribe=transcribe,
                         translate=translate, no_speech=optional("no_speech_token_id", no_speech),
                         languages=languages, suppress=id_list("suppress_tokens"),
                         begin_suppress=id_list("begin_suppress_tokens"),
                         sot_prev=optional("prev_sot_token_id", get("prev_sot_token_id")))


def config_of(hf: HFConfig) -> TransformerConfig:
    E = hf.integer("d_model")
    heads = hf.integer("encoder_attention_heads")
    for key, want in (("decoder_attention_heads", heads), ("decoder_ffn_dim", hf.integer("encoder_ffn_dim"))):
        if hf.integer(key, default=want) != want:
            raise _hf.unsupported(f"different encoder/decoder {key}", hf.get(key))
    act = hf.string("activation_function", "gelu")
    if act not in _hf.ACTIVATIONS:
        raise _hf.unsupported("activation_function", act)
    if hf.flag("scale_embedding", False):
        raise _hf.unsupported("scale_embedding", True)
    vocab = hf.integer("vocab_size")
    eos = hf.integer("eos_token_id", 0, default=50256)
    start = hf.integer("decoder_start_token_id", 0, default=50257)
    pad = hf.integer("pad_token_id", 0, default=eos)
    for key, value in (("eos_token_id", eos), ("decoder_start_token_id", start), ("pad_token_id", pad)):
        if value >= vocab:
            raise hf.error(key, f"({value}) must be < vocab_size ({vocab})")
    if E % heads:
        raise hf.error("encoder_attention_heads", f"({heads}) does not divide d_model ({E})")
    return TransformerConfig(
        d_model=E, nhead=heads, num_encoder_layers=hf.integer("encoder_layers"),
        num_decoder_layers=hf.integer("decoder_layers"), dim_feedforward=hf.integer("encoder_ffn_dim"),
        activation=_hf.ACTIVATIONS[act], norm_first=True, layer_norm_eps=1e-5, final_norm=True,
        embedding_scale=1.0, positional="learned", src_vocab_size=0, tgt_vocab_size=vocab,
        share_embeddings=False, tie_output=True, output_bias=False,
        max_length=hf.integer("max_target_positions", default=448), pad_id=pad, bos_id=start, eos_id=eos)


def weights_of(state: Dict[str, np.ndarray], c: TransformerConfig, origin: Dict[str, str]):
    """(pytransformer's Transformer weights, conv1, conv2, encoder positions)."""
    used: set = set()
    w: Dict[str, np.ndarray] = {}
    E = c.d_model
    p = "model."

    put, put_norm = _hf.putters(state, used, w, origin)

    def attention(src: str, dst: str):
        names = [f"{src}{n}_proj.weight" for n in ("q", "k", "v")]
        w[dst + "in_proj_weight"] = _hf.concat_rows(names, [take(state, used, n) for n in names])
        origin[dst + "in_proj_weight"] = " + ".join(names)
        q_b, v_b = take(state, used, src + "q_proj.bias"), take(state, used, src + "v_proj.bias")
        if src + "k_proj.bias" in state:
            raise _hf.WeightsError([f"unexpected {src}k_proj.bias: Whisper's key projections have no bias"])
        w[dst + "in_proj_bias"] = np.concatenate([np.asarray(q_b, np.float32), np.zeros(E, np.float32),
                                                  np.asarray(v_b, np.float32)])
        origin[dst + "in_proj_bias"] = f"{src}q_proj.bias + zeros + {src}v_proj.bias"
        put(dst + "out_proj.weight", src + "out_proj.weight")
        put(dst + "out_proj.bias", src + "out_proj.bias")

    def ffn(src: str, dst: str):
        put(dst + "linear1.weight", src + "fc1.weight")
        put(dst + "linear1.bias", src + "fc1.bias")
        put(dst + "linear2.weight", src + "fc2.weight")
        put(dst + "linear2.bias", src + "fc2.bias")

    for i in range(c.num_encoder_layers):
        s, d = f"{p}encoder.layers.{i}.", f"encoder.layers.{i}."
        attention(s + "self_attn.", d + "self_attn.")
        ffn(s, d)
        put_norm(d + "norm1", s + "self_attn_layer_norm")
        put_norm(d + "norm2", s + "final_layer_norm")
    put_norm("encoder.norm", p + "encoder.layer_norm")
    put("tgt_embed.weight", p + "decoder.embed_tokens.weight")
    put("tgt_pos_embed.weight", p + "decoder.embed_positions.weight")
    for i in range(c.num_decoder_layers):
        s, d = f"{p}decoder.layers.{i}.", f"decoder.layers.{i}."
        attention(s + "self_attn.", d + "self_attn.")
        attention(s + "encoder_attn.", d + "multihead_attn.")
        ffn(s, d)
        put_norm(d + "norm1", s + "self_attn_layer_norm")
        put_norm(d + "norm2", s + "encoder_attn_layer_norm")
        put_norm(d + "norm3", s + "final_layer_norm")
    put_norm("decoder.norm", p + "decoder.layer_norm")
    used.add("proj_out.weight")  # tied to the decoder's token embeddings, when saved
    conv1 = (take(state, used, p + "encoder.conv1.weight"), take(state, used, p + "encoder.conv1.bias"))
    conv2 = (take(state, used, p + "encoder.conv2.weight"), take(state, used, p + "encoder.conv2.bias"))
    positions = take(state, used, p + "encoder.embed_positions.weight")
    _hf.leftovers(state, used, ())
    return w, conv1, conv2, positions


@register("whisper")
def load_whisper(path: str, hf: HFConfig) -> WhisperModel:
    """A WhisperModel from a Hugging Face Whisper folder."""
    config = config_of(hf)
    _check_fits_in_memory(config, f"from_pretrained: {hf.file!r}")
    n_mels = hf.integer("num_mel_bins", default=80)
    pre_file = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(pre_file):
        pre = HFConfig(_hf.read_json(pre_file), pre_file)
        if pre.integer("feature_size", default=n_mels) != n_mels:
            raise pre.error("feature_size", f"({pre.get('feature_size')}) differs from config.json's num_mel_bins "
                                            f"({n_mels})")
        for key, want in (("sampling_rate", 16000), ("hop_length", 160), ("n_fft", 400)):
            if pre.integer(key, default=want) != want:
                raise _hf.unsupported(f"preprocessor_config.json {key}", pre.get(key))
    tokens = _tokens(path, hf, config.tgt_vocab_size)
    state = {k: np.asarray(v, np.float32) for k, v in _hf.load_state_dict(path).items()}
    origin: Dict[str, str] = {}
    weights, conv1, conv2, positions = weights_of(state, config, origin)
    max_source = hf.integer("max_source_positions", default=1500)
    if positions.shape != (max_source, config.d_model):
        raise _hf.WeightsError([f"'model.encoder.embed_positions.weight' has shape {tuple(positions.shape)}, "
                                f"expected {(max_source, config.d_model)} (max_source_positions x d_model)"])
    transformer = _hf.build(Transformer, config, weights, origin)
    return WhisperModel(transformer, conv1, conv2, positions, n_mels, tokens, _hf.folder_tokenizer(path))

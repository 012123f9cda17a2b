"""Textbook PyTorch references for the model tests (torch is imported lazily, so this
module imports without torch; only calling it needs torch).

``TorchTransformer(config, seed)`` builds what a PyTorch user writes for the paper's
model: ``nn.Transformer(batch_first=True, dropout=0.0)``, ``nn.Embedding`` tables
(one if shared), ``x = emb[ids] * scale + PE[pos]`` and an output ``nn.Linear``
(or the embedding table, tied). Every parameter is random and seeded, including the
attention biases and the LayerNorm weights and biases (which PyTorch initialises to
0 and 1), so every weight is really tested.

The PE table is pytransformer's own (``pt.ops.positional_encoding``: the paper's
formula in float64, rounded to float32), so the tests compare the models, not two
roundings of the sine table.

The forward passes run with autograd on and parameters requiring grad: that keeps
PyTorch on its plain (textbook) path instead of the inference "fast path" (nested
tensors, fused kernels).

``tutorial_seq2seq(...)`` is the ``Seq2SeqTransformer`` of PyTorch's translation
tutorial ("Language Translation with nn.Transformer and torchtext"), copied with
its names: seq-first ``nn.Transformer`` under ``transformer.``, ``TokenEmbedding``
with ``.embedding`` and a ``PositionalEncoding`` buffer ``pos_embedding``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

import pytransformer as pt


def _torch():
    import torch

    return torch


def randomize_(module, seed, emb_std=None):
    """Seeded random values for every parameter of ``module`` (in place): matrices keep
    PyTorch's init distribution (re-drawn from the seed), embeddings N(0, emb_std^2),
    biases N(0, 0.1^2), LayerNorm weights uniform in [0.5, 1.5]."""
    torch = _torch()
    nn = torch.nn
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                if isinstance(mod, nn.LayerNorm):
                    if pname == "weight":
                        p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                    else:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                elif isinstance(mod, nn.Embedding):
                    std = emb_std if emb_std is not None else p.shape[1] ** -0.5
                    p.copy_(torch.randn(p.shape, generator=g) * std)
                elif p.dim() == 1:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                else:
                    bound = math.sqrt(3.0 / p.shape[1])  # variance 1 / fan_in
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return module


def _run_stack(stack, x, **kw):
    """nn.TransformerEncoder / nn.TransformerDecoder forward; PyTorch's stacks index
    layers[0] and fail with no layers, so an empty stack applies only its norm."""
    if len(stack.layers):
        return stack(x, **kw)
    return x if stack.norm is None else stack.norm(x)


class TorchTransformer:
    """The textbook PyTorch model for a pytransformer config (batch-first, float32)."""

    def __init__(self, config, seed=0):
        torch = _torch()
        nn = torch.nn
        self.config = c = config
        torch.manual_seed(seed)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ...": the fast path is unused
            warnings.filterwarnings("ignore", message="enable_nested_tensor", category=UserWarning)
            self.transformer = nn.Transformer(
                d_model=c.d_model, nhead=c.nhead, num_encoder_layers=c.num_encoder_layers,
                num_decoder_layers=c.num_decoder_layers, dim_feedforward=c.dim_feedforward, dropout=0.0,
                activation=c.activation, layer_norm_eps=c.layer_norm_eps, batch_first=True,
                norm_first=c.norm_first)
        if not c.final_norm:
            self.transformer.encoder.norm = None
            self.transformer.decoder.norm = None
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.generator = None
        if not c.tie_output:
            self.generator = nn.Linear(c.d_model, c.tgt_vocab_size, bias=c.output_bias)
        self.output_bias = None
        if c.tie_output and c.output_bias:
            self.output_bias = nn.Parameter(torch.zeros(c.tgt_vocab_size))
        self.modules = nn.ModuleDict({"transformer": self.transformer, "src_embed": self.src_embed,
                                      "tgt_embed": self.tgt_embed})
        if self.generator is not None:
            self.modules["generator"] = self.generator
        randomize_(self.modules, seed + 1)
        if self.output_bias is not None:
            with torch.no_grad():
                self.output_bias.copy_(torch.randn(c.tgt_vocab_size, generator=torch.Generator().manual_seed(seed + 2))
                                       * 0.1)
        self.modules.eval()
        self.scale = c.resolved_embedding_scale
        self.pe = torch.from_numpy(pt.ops.positional_encoding(c.max_length, c.d_model))

    # -- forward ------------------------------------------------------------------

    def _embed(self, table, ids):
        torch = _torch()
        ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        return table(ids) * self.scale + self.pe[: ids.shape[1]]

    @staticmethod
    def _padding_mask(lengths, B, S):
        torch = _torch()
        if lengths is None:
            return None
        return torch.arange(S)[None, :] >= torch.as_tensor(np.asarray(lengths, dtype=np.int64))[:, None]

    def encode(self, src_ids, src_lengths=None):
        """float32 numpy [B, S, E], with ``src_key_padding_mask`` from the lengths."""
        B, S = np.shape(src_ids)
        x = self._embed(self.src_embed, src_ids)
        mask = self._padding_mask(src_lengths, B, S)
        out = _run_stack(self.transformer.encoder, x, src_key_padding_mask=mask)
        return out.detach().numpy()

    def decode(self, tgt_ids, memory, src_lengths=None):
        """float32 numpy logits [B, T, V]: causal ``tgt_mask``, ``memory_key_padding_mask``."""
        torch = _torch()
        B, T = np.shape(tgt_ids)
        memory = torch.from_numpy(np.ascontiguousarray(memory, dtype=np.float32))
        y = self._embed(self.tgt_embed, tgt_ids)
        causal = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # True = may not attend
        mask = self._padding_mask(src_lengths, B, memory.shape[1])
        out = _run_stack(self.transformer.decoder, y, memory=memory, tgt_mask=causal, tgt_is_causal=True,
                         memory_key_padding_mask=mask)
        if self.generator is not None:
            logits = self.generator(out)
        else:
            logits = torch.nn.functional.linear(out, self.tgt_embed.weight, self.output_bias)
        return logits.detach().numpy()

    # -- weights ------------------------------------------------------------------

    def pt_weights(self):
        """pytransformer's weights dict (numpy float32 copies) for this model."""
        c = self.config
        w = {"src_embed.weight": self.src_embed.weight}
        if not c.share_embeddings:
            w["tgt_embed.weight"] = self.tgt_embed.weight
        for name, p in self.transformer.state_dict().items():
            w[name] = p
        if self.generator is not None:
            w["generator.weight"] = self.generator.weight
            if c.output_bias:
                w["generator.bias"] = self.generator.bias
        elif self.output_bias is not None:
            w["generator.bias"] = self.output_bias
        return {k: v.detach().numpy().astype(np.float32, copy=True) for k, v in w.items()}


# ---------------------------------------------------------------------------
# PyTorch's translation tutorial
# ---------------------------------------------------------------------------


def tutorial_seq2seq(num_encoder_layers, num_decoder_layers, emb_size, nhead, src_vocab_size, tgt_vocab_size,
                     dim_feedforward=512, seed=0):
    """The tutorial's Seq2SeqTransformer (dropout 0, eval mode, random seeded weights
    incl. biases and LayerNorms), with its PositionalEncoding buffer set to
    pytransformer's PE table."""
    torch = _torch()
    nn = torch.nn
    Tensor = torch.Tensor

    # --- from the tutorial, unchanged apart from dropout defaults ---
    class PositionalEncoding(nn.Module):
        def __init__(self, emb_size: int, dropout: float, maxlen: int = 5000):
            super().__init__()
            den = torch.exp(- torch.arange(0, emb_size, 2) * math.log(10000) / emb_size)
            pos = torch.arange(0, maxlen).reshape(maxlen, 1)
            pos_embedding = torch.zeros((maxlen, emb_size))
            pos_embedding[:, 0::2] = torch.sin(pos * den)
            pos_embedding[:, 1::2] = torch.cos(pos * den)
            pos_embedding = pos_embedding.unsqueeze(-2)
            self.dropout = nn.Dropout(dropout)
            self.register_buffer('pos_embedding', pos_embedding)

        def forward(self, token_embedding: Tensor):
            return self.dropout(token_embedding + self.pos_embedding[:token_embedding.size(0), :])

    class TokenEmbedding(nn.Module):
        def __init__(self, vocab_size: int, emb_size):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, emb_size)
            self.emb_size = emb_size

        def forward(self, tokens: Tensor):
            return self.embedding(tokens.long()) * math.sqrt(self.emb_size)

    class Seq2SeqTransformer(nn.Module):
        def __init__(self, num_encoder_layers: int, num_decoder_layers: int, emb_size: int, nhead: int,
                     src_vocab_size: int, tgt_vocab_size: int, dim_feedforward: int = 512, dropout: float = 0.1):
            super().__init__()
            self.transformer = nn.Transformer(d_model=emb_size, nhead=nhead, num_encoder_layers=num_encoder_layers,
                                              num_decoder_layers=num_decoder_layers,
                                              dim_feedforward=dim_feedforward, dropout=dropout)
            self.generator = nn.Linear(emb_size, tgt_vocab_size)
            self.src_tok_emb = TokenEmbedding(src_vocab_size, emb_size)
            self.tgt_tok_emb = TokenEmbedding(tgt_vocab_size, emb_size)
            self.positional_encoding = PositionalEncoding(emb_size, dropout=dropout)

        def forward(self, src: Tensor, trg: Tensor, src_mask: Tensor, tgt_mask: Tensor, src_padding_mask: Tensor,
                    tgt_padding_mask: Tensor, memory_key_padding_mask: Tensor):
            src_emb = self.positional_encoding(self.src_tok_emb(src))
            tgt_emb = self.positional_encoding(self.tgt_tok_emb(trg))
            outs = self.transformer(src_emb, tgt_emb, src_mask, tgt_mask, None,
                                    src_padding_mask, tgt_padding_mask, memory_key_padding_mask)
            return self.generator(outs)

        def encode(self, src: Tensor, src_mask: Tensor):
            return self.transformer.encoder(self.positional_encoding(self.src_tok_emb(src)), src_mask)

        def decode(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor):
            return self.transformer.decoder(self.positional_encoding(self.tgt_tok_emb(tgt)), memory, tgt_mask)
    # --- end of the tutorial's code ---

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="enable_nested_tensor", category=UserWarning)
        model = Seq2SeqTransformer(num_encoder_layers, num_decoder_layers, emb_size, nhead, src_vocab_size,
                                   tgt_vocab_size, dim_feedforward, dropout=0.0)
    randomize_(model, seed + 1)
    with torch.no_grad():
        maxlen = model.positional_encoding.pos_embedding.shape[0]
        pe = torch.from_numpy(pt.ops.positional_encoding(maxlen, emb_size))
        model.positional_encoding.pos_embedding.copy_(pe[:, None, :])
    return model.eval()


def tutorial_masks(src, tgt, pad_idx):
    """The tutorial's create_mask for seq-first src [S, B], tgt [T, B]."""
    torch = _torch()
    S, T = src.shape[0], tgt.shape[0]
    tgt_mask = torch.triu(torch.ones((T, T)) == 1).transpose(0, 1)
    tgt_mask = tgt_mask.float().masked_fill(tgt_mask == 0, float('-inf')).masked_fill(tgt_mask == 1, float(0.0))
    src_mask = torch.zeros((S, S)).type(torch.bool)
    src_padding_mask = (src == pad_idx).transpose(0, 1)
    tgt_padding_mask = (tgt == pad_idx).transpose(0, 1)
    return src_mask, tgt_mask, src_padding_mask, tgt_padding_mask

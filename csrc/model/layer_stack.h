// The layers of the Transformer, written once: an encoder layer (self-attention,
// feed-forward) and a decoder layer (masked self-attention, encoder-decoder attention,
// feed-forward), each sub-layer applied with its residual and LayerNorm by one helper,
// post-LN (the paper) or pre-LN. Full-sequence encode, teacher-forced decode and the
// incremental decoder (KV cache) all run these; they differ only in how attention
// gets its keys and values, which the caller passes in as a callable.
//
// Shapes: M rows (tokens) of width E = d_model; F = dim_feedforward.
#pragma once

#include <cstdint>
#include <utility>

#include "kernels/kernels.h"
#include "model/layers.h"

namespace pt::model {

// Self-attention with the three projections fused: in_proj [3E, E] is one GEMM.
struct SelfAttentionWeights {
  Linear qkv, out;
};

// Encoder-decoder attention: Q from the decoder, K and V (fused) from the memory.
struct CrossAttentionWeights {
  Linear q, kv, out;
};

struct FeedForwardWeights {
  Linear linear1, linear2;  // [F, E], [E, F]
};

struct EncoderLayerWeights {
  SelfAttentionWeights self_attn;
  FeedForwardWeights ffn;
  LayerNorm norm1, norm2;  // after (post-LN) or before (pre-LN) attention, FFN
};

struct DecoderLayerWeights {
  SelfAttentionWeights self_attn;
  CrossAttentionWeights cross_attn;
  FeedForwardWeights ffn;
  LayerNorm norm1, norm2, norm3;  // of self-attention, cross-attention, FFN
};

// What a layer needs besides its weights.
struct LayerSpec {
  bool norm_first = false;  // false: post-LN; true: pre-LN
  kernels::Activation activation = kernels::Activation::kRelu;
};

// One sub-layer g with its residual and LayerNorm, on the row streams x, t [M, E]:
//   post-LN:  x = LN(x + g(x))          (t: scratch)
//   pre-LN:   x = x + g(LN(x))          (x and t swap)
// sublayer(in, out, residual) writes out [M, E] = g(in) (+ residual when non-null);
// it reads all of `in` before it writes `out` (they may be the same buffer).
template <class Sublayer>
void residual_sublayer(const kernels::KernelTable& kt, const LayerSpec& spec, const LayerNorm& norm, int64_t M,
                       float*& x, float*& t, Sublayer&& sublayer) {
  if (!spec.norm_first) {
    sublayer(static_cast<const float*>(x), t, static_cast<const float*>(nullptr));  // t = g(x)
    norm.forward(kt, x, t, x, M);                                                  // x = LN(x + t)
  } else {
    norm.forward(kt, x, nullptr, t, M);                                            // t = LN(x)
    sublayer(static_cast<const float*>(t), t, static_cast<const float*>(x));       // t = x + g(t)
    std::swap(x, t);
  }
}

// out [M, E] = linear2(act(linear1(in))) (+ residual); hidden [M, F] is scratch.
inline void feed_forward(const kernels::KernelTable& kt, const FeedForwardWeights& ffn, kernels::Activation act,
                         int64_t M, const float* in, float* hidden, float* out, const float* residual) {
  ffn.linear1.forward(kt, in, M, hidden, act);                                     // hidden [M, F]
  ffn.linear2.forward(kt, hidden, M, out, kernels::Activation::kNone, residual);   // out [M, E]
}

// One encoder layer on x [M, E] (t [M, E], ctx [M, E], hidden [M, F]: scratch).
// self_attention(in, ctx) writes the attention context [M, E] of the rows `in`
// (Q, K, V projections and attention; not the output projection).
template <class SelfAttention>
void encoder_layer(const kernels::KernelTable& kt, const LayerSpec& spec, const EncoderLayerWeights& l, int64_t M,
                   float*& x, float*& t, float* ctx, float* hidden, SelfAttention&& self_attention) {
  residual_sublayer(kt, spec, l.norm1, M, x, t, [&](const float* in, float* out, const float* residual) {
    self_attention(in, ctx);
    l.self_attn.out.forward(kt, ctx, M, out, kernels::Activation::kNone, residual);
  });
  residual_sublayer(kt, spec, l.norm2, M, x, t, [&](const float* in, float* out, const float* residual) {
    feed_forward(kt, l.ffn, spec.activation, M, in, hidden, out, residual);
  });
}

// One decoder layer on x [M, E]: self_attention(in, ctx) attends over the target
// positions so far (the whole causal sequence, or the KV cache), cross_attention(in,
// ctx) over the memory; both write the context [M, E] before the output projection.
template <class SelfAttention, class CrossAttention>
void decoder_layer(const kernels::KernelTable& kt, const LayerSpec& spec, const DecoderLayerWeights& l, int64_t M,
                   float*& x, float*& t, float* ctx, float* hidden, SelfAttention&& self_attention,
                   CrossAttention&& cross_attention) {
  residual_sublayer(kt, spec, l.norm1, M, x, t, [&](const float* in, float* out, const float* residual) {
    self_attention(in, ctx);
    l.self_attn.out.forward(kt, ctx, M, out, kernels::Activation::kNone, residual);
  });
  residual_sublayer(kt, spec, l.norm2, M, x, t, [&](const float* in, float* out, const float* residual) {
    cross_attention(in, ctx);
    l.cross_attn.out.forward(kt, ctx, M, out, kernels::Activation::kNone, residual);
  });
  residual_sublayer(kt, spec, l.norm3, M, x, t, [&](const float* in, float* out, const float* residual) {
    feed_forward(kt, l.ffn, spec.activation, M, in, hidden, out, residual);
  });
}

}  // namespace pt::model

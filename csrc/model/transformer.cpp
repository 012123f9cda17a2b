#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/positions.h"

namespace pt::model {

using kernels::Activation;
using kernels::Tensor4View;

namespace {

SelfAttentionWeights load_self_attention(const kernels::KernelTable& kt, const WeightMap& w, const std::string& p,
                                         int64_t E) {
  SelfAttentionWeights a;
  a.qkv = Linear(kt, require_weight(w, p + "in_proj_weight", {3 * E, E}), require_weight(w, p + "in_proj_bias", {3 * E}),
                 3 * E, E);
  a.out = Linear(kt, require_weight(w, p + "out_proj.weight", {E, E}), require_weight(w, p + "out_proj.bias", {E}), E, E);
  return a;
}

CrossAttentionWeights load_cross_attention(const kernels::KernelTable& kt, const WeightMap& w, const std::string& p,
                                           int64_t E) {
  const float* in_w = require_weight(w, p + "in_proj_weight", {3 * E, E});
  const float* in_b = require_weight(w, p + "in_proj_bias", {3 * E});
  CrossAttentionWeights a;
  a.q = Linear(kt, in_w, in_b, E, E);
  a.kv = Linear(kt, in_w + E * E, in_b + E, 2 * E, E);
  a.out = Linear(kt, require_weight(w, p + "out_proj.weight", {E, E}), require_weight(w, p + "out_proj.bias", {E}), E, E);
  return a;
}

FeedForwardWeights load_ffn(const kernels::KernelTable& kt, const WeightMap& w, const std::string& p, int64_t E,
                            int64_t F) {
  FeedForwardWeights f;
  f.linear1 = Linear(kt, require_weight(w, p + "linear1.weight", {F, E}), require_weight(w, p + "linear1.bias", {F}), F, E);
  f.linear2 = Linear(kt, require_weight(w, p + "linear2.weight", {E, F}), require_weight(w, p + "linear2.bias", {E}), E, F);
  return f;
}

LayerNorm load_norm(const WeightMap& w, const std::string& p, int64_t E, float eps) {
  return LayerNorm(require_weight(w, p + "weight", {E}), require_weight(w, p + "bias", {E}), E, eps);
}

// Per-call scratch of one forward pass over M = B*L rows.
struct Workspace {
  AlignedBuffer x, t, qkv, ctx, hidden;
  Workspace(int64_t M, int64_t E, int64_t F, int64_t qkv_width)
      : x(static_cast<size_t>(M * E)),
        t(static_cast<size_t>(M * E)),
        qkv(static_cast<size_t>(M * qkv_width)),
        ctx(static_cast<size_t>(M * E)),
        hidden(static_cast<size_t>(M * F)) {}
};

}  // namespace

Transformer::Transformer(const TransformerConfig& config, const WeightMap& w) : kt_(kernels::active()), cfg_(config) {
  const int64_t E = cfg_.d_model, F = cfg_.dim_feedforward;
  if (E <= 0 || cfg_.nhead <= 0 || E % cfg_.nhead != 0)
    throw std::invalid_argument("d_model must be a positive multiple of nhead");
  src_embed_ = copy_aligned(require_weight(w, "src_embed.weight", {cfg_.src_vocab_size, E}), cfg_.src_vocab_size * E);
  if (!cfg_.share_embeddings)
    tgt_embed_ = copy_aligned(require_weight(w, "tgt_embed.weight", {cfg_.tgt_vocab_size, E}), cfg_.tgt_vocab_size * E);
  positions_ = AlignedBuffer(static_cast<size_t>(cfg_.max_length * E));
  kernels::positional_encoding(positions_.data(), cfg_.max_length, E);

  for (int64_t i = 0; i < cfg_.num_encoder_layers; ++i) {
    const std::string p = "encoder.layers." + std::to_string(i) + ".";
    EncoderLayerWeights l;
    l.self_attn = load_self_attention(kt_, w, p + "self_attn.", E);
    l.ffn = load_ffn(kt_, w, p, E, F);
    l.norm1 = load_norm(w, p + "norm1.", E, cfg_.layer_norm_eps);
    l.norm2 = load_norm(w, p + "norm2.", E, cfg_.layer_norm_eps);
    encoder_.push_back(std::move(l));
  }
  for (int64_t i = 0; i < cfg_.num_decoder_layers; ++i) {
    const std::string p = "decoder.layers." + std::to_string(i) + ".";
    DecoderLayerWeights l;
    l.self_attn = load_self_attention(kt_, w, p + "self_attn.", E);
    l.cross_attn = load_cross_attention(kt_, w, p + "multihead_attn.", E);
    l.ffn = load_ffn(kt_, w, p, E, F);
    l.norm1 = load_norm(w, p + "norm1.", E, cfg_.layer_norm_eps);
    l.norm2 = load_norm(w, p + "norm2.", E, cfg_.layer_norm_eps);
    l.norm3 = load_norm(w, p + "norm3.", E, cfg_.layer_norm_eps);
    decoder_.push_back(std::move(l));
  }
  if (cfg_.final_norm) {
    encoder_norm_ = load_norm(w, "encoder.norm.", E, cfg_.layer_norm_eps);
    decoder_norm_ = load_norm(w, "decoder.norm.", E, cfg_.layer_norm_eps);
  }
  const int64_t V = cfg_.tgt_vocab_size;
  const float* gen_w = cfg_.tie_output ? (cfg_.share_embeddings ? src_embed_.data() : tgt_embed_.data())
                                       : require_weight(w, "generator.weight", {V, E});
  const float* gen_b = cfg_.output_bias ? require_weight(w, "generator.bias", {V}) : nullptr;
  generator_ = Linear(kt_, gen_w, gen_b, V, E);
}

void Transformer::export_weights(const WeightSink& sink) const {
  const int64_t E = cfg_.d_model, V = cfg_.tgt_vocab_size;
  auto put = [&](const std::string& name, const std::vector<int64_t>& shape, const float* src) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::copy(src, src + n, sink(name, shape));
  };
  auto put_linear = [&](const std::string& w_name, const std::string& b_name, const Linear& l) {
    l.export_weight(kt_, sink(w_name, {l.out_features(), l.in_features()}));
    if (l.has_bias()) put(b_name, {l.out_features()}, l.bias());
  };
  auto put_norm = [&](const std::string& p, const LayerNorm& n) {
    put(p + "weight", {n.size()}, n.weight());
    put(p + "bias", {n.size()}, n.bias());
  };
  auto put_self = [&](const std::string& p, const SelfAttentionWeights& a) {
    put_linear(p + "in_proj_weight", p + "in_proj_bias", a.qkv);
    put_linear(p + "out_proj.weight", p + "out_proj.bias", a.out);
  };
  put("src_embed.weight", {cfg_.src_vocab_size, E}, src_embed_.data());
  if (!cfg_.share_embeddings) put("tgt_embed.weight", {V, E}, tgt_embed_.data());
  for (size_t i = 0; i < encoder_.size(); ++i) {
    const std::string p = "encoder.layers." + std::to_string(i) + ".";
    put_self(p + "self_attn.", encoder_[i].self_attn);
    put_linear(p + "linear1.weight", p + "linear1.bias", encoder_[i].ffn.linear1);
    put_linear(p + "linear2.weight", p + "linear2.bias", encoder_[i].ffn.linear2);
    put_norm(p + "norm1.", encoder_[i].norm1);
    put_norm(p + "norm2.", encoder_[i].norm2);
  }
  for (size_t i = 0; i < decoder_.size(); ++i) {
    const std::string p = "decoder.layers." + std::to_string(i) + ".";
    const DecoderLayerWeights& l = decoder_[i];
    put_self(p + "self_attn.", l.self_attn);
    // in_proj of the cross attention = [Wq; Wk; Wv], kept as q and (k, v).
    float* w = sink(p + "multihead_attn.in_proj_weight", {3 * E, E});
    l.cross_attn.q.export_weight(kt_, w);
    l.cross_attn.kv.export_weight(kt_, w + E * E);
    float* b = sink(p + "multihead_attn.in_proj_bias", {3 * E});
    std::copy(l.cross_attn.q.bias(), l.cross_attn.q.bias() + E, b);
    std::copy(l.cross_attn.kv.bias(), l.cross_attn.kv.bias() + 2 * E, b + E);
    put_linear(p + "multihead_attn.out_proj.weight", p + "multihead_attn.out_proj.bias", l.cross_attn.out);
    put_linear(p + "linear1.weight", p + "linear1.bias", l.ffn.linear1);
    put_linear(p + "linear2.weight", p + "linear2.bias", l.ffn.linear2);
    put_norm(p + "norm1.", l.norm1);
    put_norm(p + "norm2.", l.norm2);
    put_norm(p + "norm3.", l.norm3);
  }
  if (cfg_.final_norm) {
    put_norm("encoder.norm.", encoder_norm_);
    put_norm("decoder.norm.", decoder_norm_);
  }
  if (!cfg_.tie_output) put_linear("generator.weight", "generator.bias", generator_);
  else if (cfg_.output_bias) put("generator.bias", {V}, generator_.bias());
}

void Transformer::build_padding_mask(const int32_t* lengths, int64_t B, int64_t S, std::vector<uint8_t>* mask) const {
  mask->assign(static_cast<size_t>(B * S), 0);
  if (!lengths) return;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = lengths[b]; s < S; ++s) (*mask)[static_cast<size_t>(b * S + s)] = 1;
}

void Transformer::encode(const int32_t* src_ids, int64_t B, int64_t S, const int32_t* src_lengths,
                         float* memory) const {
  const int64_t E = cfg_.d_model, H = cfg_.nhead, D = E / H, F = cfg_.dim_feedforward, M = B * S;
  if (M == 0) return;
  Workspace ws(M, E, F, 3 * E);
  std::vector<uint8_t> mask;
  build_padding_mask(src_lengths, B, S, &mask);
  const uint8_t* mp = src_lengths ? mask.data() : nullptr;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  float* x = ws.x.data();
  float* t = ws.t.data();
  kt_.embed(src_embed_.data(), E, src_ids, M, S, 0, cfg_.embedding_scale, positions_.data(), x);

  auto self_attention = [&](const SelfAttentionWeights& a, const float* in) {
    a.qkv.forward(kt_, in, M, ws.qkv.data());
    const Tensor4View q{ws.qkv.data(), S * 3 * E, D, 3 * E}, k{ws.qkv.data() + E, S * 3 * E, D, 3 * E},
        v{ws.qkv.data() + 2 * E, S * 3 * E, D, 3 * E};
    kt_.attention(q, k, v, ws.ctx.data(), S * E, D, E, B, H, S, S, D, D, mp, false, 0, scale);
  };
  for (const EncoderLayerWeights& l : encoder_) {
    if (!cfg_.norm_first) {
      self_attention(l.self_attn, x);
      l.self_attn.out.forward(kt_, ws.ctx.data(), M, t);
      l.norm1.forward(kt_, x, t, x, M);  // x = LN(x + attn)
      l.ffn.linear1.forward(kt_, x, M, ws.hidden.data(), cfg_.activation);
      l.ffn.linear2.forward(kt_, ws.hidden.data(), M, t);
      l.norm2.forward(kt_, x, t, x, M);  // x = LN(x + ffn)
    } else {
      l.norm1.forward(kt_, x, nullptr, t, M);
      self_attention(l.self_attn, t);
      l.self_attn.out.forward(kt_, ws.ctx.data(), M, t, Activation::kNone, x);  // t = x + attn
      std::swap(x, t);
      l.norm2.forward(kt_, x, nullptr, t, M);
      l.ffn.linear1.forward(kt_, t, M, ws.hidden.data(), cfg_.activation);
      l.ffn.linear2.forward(kt_, ws.hidden.data(), M, t, Activation::kNone, x);  // t = x + ffn
      std::swap(x, t);
    }
  }
  if (cfg_.final_norm)
    encoder_norm_.forward(kt_, x, nullptr, memory, M);
  else
    std::copy(x, x + M * E, memory);
}

void Transformer::decode(const int32_t* tgt_ids, int64_t B, int64_t T, const float* memory, int64_t S,
                         const int32_t* src_lengths, float* logits) const {
  const int64_t E = cfg_.d_model, H = cfg_.nhead, D = E / H, F = cfg_.dim_feedforward, M = B * T;
  if (M == 0) return;
  Workspace ws(M, E, F, 3 * E);
  AlignedBuffer kv(static_cast<size_t>(B * S * 2 * E));
  std::vector<uint8_t> mask;
  build_padding_mask(src_lengths, B, S, &mask);
  const uint8_t* mp = src_lengths ? mask.data() : nullptr;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  float* x = ws.x.data();
  float* t = ws.t.data();
  const float* table = cfg_.share_embeddings ? src_embed_.data() : tgt_embed_.data();
  kt_.embed(table, E, tgt_ids, M, T, 0, cfg_.embedding_scale, positions_.data(), x);

  auto self_attention = [&](const SelfAttentionWeights& a, const float* in) {
    a.qkv.forward(kt_, in, M, ws.qkv.data());
    const Tensor4View q{ws.qkv.data(), T * 3 * E, D, 3 * E}, k{ws.qkv.data() + E, T * 3 * E, D, 3 * E},
        v{ws.qkv.data() + 2 * E, T * 3 * E, D, 3 * E};
    kt_.attention(q, k, v, ws.ctx.data(), T * E, D, E, B, H, T, T, D, D, nullptr, true, 0, scale);
  };
  auto cross_attention = [&](const CrossAttentionWeights& a, const float* in) {
    a.q.forward(kt_, in, M, ws.qkv.data());
    if (S > 0) a.kv.forward(kt_, memory, B * S, kv.data());
    const Tensor4View q{ws.qkv.data(), T * E, D, E}, k{kv.data(), S * 2 * E, D, 2 * E},
        v{kv.data() + E, S * 2 * E, D, 2 * E};
    kt_.attention(q, k, v, ws.ctx.data(), T * E, D, E, B, H, T, S, D, D, mp, false, 0, scale);
  };
  for (const DecoderLayerWeights& l : decoder_) {
    if (!cfg_.norm_first) {
      self_attention(l.self_attn, x);
      l.self_attn.out.forward(kt_, ws.ctx.data(), M, t);
      l.norm1.forward(kt_, x, t, x, M);
      cross_attention(l.cross_attn, x);
      l.cross_attn.out.forward(kt_, ws.ctx.data(), M, t);
      l.norm2.forward(kt_, x, t, x, M);
      l.ffn.linear1.forward(kt_, x, M, ws.hidden.data(), cfg_.activation);
      l.ffn.linear2.forward(kt_, ws.hidden.data(), M, t);
      l.norm3.forward(kt_, x, t, x, M);
    } else {
      l.norm1.forward(kt_, x, nullptr, t, M);
      self_attention(l.self_attn, t);
      l.self_attn.out.forward(kt_, ws.ctx.data(), M, t, Activation::kNone, x);
      std::swap(x, t);
      l.norm2.forward(kt_, x, nullptr, t, M);
      cross_attention(l.cross_attn, t);
      l.cross_attn.out.forward(kt_, ws.ctx.data(), M, t, Activation::kNone, x);
      std::swap(x, t);
      l.norm3.forward(kt_, x, nullptr, t, M);
      l.ffn.linear1.forward(kt_, t, M, ws.hidden.data(), cfg_.activation);
      l.ffn.linear2.forward(kt_, ws.hidden.data(), M, t, Activation::kNone, x);
      std::swap(x, t);
    }
  }
  if (cfg_.final_norm) {
    decoder_norm_.forward(kt_, x, nullptr, t, M);
    std::swap(x, t);
  }
  generator_.forward(kt_, x, M, logits);
}

}  // namespace pt::model

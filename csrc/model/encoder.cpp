#include "model/encoder.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "model/transformer.h"

namespace pt::model {

using kernels::Activation;
using kernels::Tensor4View;

SelfAttentionWeights load_self_attention(const kernels::KernelTable& kt, const WeightMap& w,
                                         const names::Attention& n, int64_t E, ComputeType ct) {
  SelfAttentionWeights a;
  a.qkv = Linear(kt, require_linear_weight(w, n.in_proj_weight, {3 * E, E}),
                 require_weight(w, n.in_proj_bias, {3 * E}), 3 * E, E, ct);
  a.out = load_linear(kt, w, n.out_proj, E, E, ct);
  return a;
}

Linear load_linear(const kernels::KernelTable& kt, const WeightMap& w, const names::Pair& n, int64_t out, int64_t in,
                   ComputeType ct) {
  return Linear(kt, require_linear_weight(w, n.weight, {out, in}), require_weight(w, n.bias, {out}), out, in, ct);
}

LayerNorm load_norm(const WeightMap& w, const names::Pair& n, int64_t E, float eps) {
  return LayerNorm(require_weight(w, n.weight, {E}), require_weight(w, n.bias, {E}), E, eps);
}

void export_array(const WeightSink& sink, const std::string& name, const std::vector<int64_t>& shape, const float* src) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::copy(src, src + n, sink(name, shape));
}

void export_linear_weight(const kernels::KernelTable& kt, const WeightSinks& sink, const std::string& name,
                          const Linear& l, int64_t rows, int64_t row0) {
  // rows of the named [rows, in] weight, from row0 on, are this Linear's.
  const int64_t in = l.in_features();
  if (sink.int8 && l.compute_type() == ComputeType::kInt8) {
    l.export_int8(sink.int8(name, {rows, in}) + row0 * in, sink.floats(name + kScaleSuffix, {rows}) + row0);
  } else {
    l.export_weight(kt, sink.floats(name, {rows, in}) + row0 * in);
  }
}

void export_linear(const kernels::KernelTable& kt, const WeightSinks& sink, const names::Pair& n, const Linear& l) {
  export_linear_weight(kt, sink, n.weight, l, l.out_features(), 0);
  if (l.has_bias()) export_array(sink.floats, n.bias, {l.out_features()}, l.bias());
}

void export_self_attention(const kernels::KernelTable& kt, const WeightSinks& sink, const names::Attention& n,
                           const SelfAttentionWeights& a) {
  export_linear(kt, sink, {n.in_proj_weight, n.in_proj_bias}, a.qkv);
  export_linear(kt, sink, n.out_proj, a.out);
}

void export_norm(const WeightSink& sink, const names::Pair& n, const LayerNorm& norm) {
  export_array(sink, n.weight, {norm.size()}, norm.weight());
  export_array(sink, n.bias, {norm.size()}, norm.bias());
}

namespace {
int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || r > (int64_t{1} << 62))
    throw std::invalid_argument(std::string("model config: ") + what + " is too large (its size overflows)");
  return r;
}
}  // namespace

void check_config_sizes(const TransformerConfig& c) {
  constexpr int64_t kInt32Max = 2147483647;
  const std::pair<const char*, int64_t> sizes[] = {
      {"d_model", c.d_model}, {"nhead", c.nhead}, {"dim_feedforward", c.dim_feedforward},
      {"tgt_vocab_size", c.tgt_vocab_size}, {"max_length", c.max_length}};
  for (auto [name, v] : sizes)
    if (v < 1 || v > kInt32Max)
      throw std::invalid_argument(std::string("model config: ") + name + " = " + std::to_string(v) +
                                  " is outside [1, 2147483647]");
  // src_vocab_size 0: the encoder takes float inputs (encode_features), no embeddings.
  const std::pair<const char*, int64_t> counts[] = {{"src_vocab_size", c.src_vocab_size},
                                                    {"num_encoder_layers", c.num_encoder_layers},
                                                    {"num_decoder_layers", c.num_decoder_layers},
                                                    {"type_vocab_size", c.type_vocab_size}};
  for (auto [name, v] : counts)
    if (v < 0 || v > kInt32Max)
      throw std::invalid_argument(std::string("model config: ") + name + " = " + std::to_string(v) +
                                  " is outside [0, 2147483647]");
  if (c.d_model % c.nhead != 0) throw std::invalid_argument("model config: nhead must divide d_model");
  if (!std::isfinite(c.layer_norm_eps) || c.layer_norm_eps < 0)
    throw std::invalid_argument("model config: layer_norm_eps must be finite and >= 0");
  // Every table's element count must fit (with room) in 64 bits.
  checked_mul(c.max_length, c.d_model, "the position table (max_length x d_model)");
  checked_mul(c.src_vocab_size, c.d_model, "the source embedding table");
  checked_mul(c.tgt_vocab_size, c.d_model, "the target embedding table");
  checked_mul(c.dim_feedforward, c.d_model, "the feed-forward weights");
  checked_mul(checked_mul(c.d_model, c.d_model, "d_model^2"), 4, "the attention weights");
}

Encoder::Encoder(const kernels::KernelTable& kt, const TransformerConfig& cfg, const WeightMap& w)
    : kt_(kt), cfg_((check_config_sizes(cfg), cfg)) {
  const int64_t E = cfg.d_model, F = cfg.dim_feedforward, V = cfg.src_vocab_size;
  const float eps = cfg.layer_norm_eps;
  const names::Side n = names::source();
  if (V > 0) {
    auto table = std::make_shared<const EmbeddingTable>(w, n.embed, V, E, cfg.compute);
    const float* learned =
        cfg.positional == Positional::kLearned ? require_weight(w, n.pos_embed, {cfg.max_length, E}) : nullptr;
    const float* types =
        cfg.type_vocab_size > 0 ? require_weight(w, n.type_embed, {cfg.type_vocab_size, E}) : nullptr;
    const float* nw = cfg.embedding_norm ? require_weight(w, n.embed_norm.weight, {E}) : nullptr;
    const float* nb = cfg.embedding_norm ? require_weight(w, n.embed_norm.bias, {E}) : nullptr;
    embeddings_ = Embeddings(std::move(table), V, E, cfg.embedding_scale, cfg.positional, cfg.max_length, learned,
                             types, cfg.type_vocab_size, nw, nb, eps);
  }
  for (int64_t i = 0; i < cfg.num_encoder_layers; ++i) {
    const names::EncoderLayer ln = names::encoder_layer(i);
    EncoderLayerWeights l;
    l.self_attn = load_self_attention(kt, w, ln.self_attn, E, cfg.compute);
    l.ffn = {load_linear(kt, w, ln.linear1, F, E, cfg.compute), load_linear(kt, w, ln.linear2, E, F, cfg.compute)};
    l.norm1 = load_norm(w, ln.norm1, E, eps);
    l.norm2 = load_norm(w, ln.norm2, E, eps);
    layers_.push_back(std::move(l));
  }
  if (cfg.final_norm) final_norm_ = load_norm(w, n.final_norm, E, eps);
}

void Encoder::encode(const int32_t* ids, const int32_t* type_ids, int64_t B, int64_t S, const int32_t* lengths,
                     float* out) const {
  if (!has_embeddings()) throw std::invalid_argument("this encoder takes float inputs (encode_features), not ids");
  run(ids, type_ids, nullptr, B, S, lengths, out);
}

bool Encoder::has_embeddings() const { return cfg_.src_vocab_size > 0; }

void Encoder::encode_features(const float* inputs, int64_t B, int64_t S, const int32_t* lengths, float* out) const {
  if (has_embeddings()) throw std::invalid_argument("this encoder takes token ids (encode), not float inputs");
  run(nullptr, nullptr, inputs, B, S, lengths, out);
}

void Encoder::run(const int32_t* ids, const int32_t* type_ids, const float* inputs, int64_t B, int64_t S,
                  const int32_t* lengths, float* out) const {
  const int64_t E = cfg_.d_model, H = cfg_.nhead, D = E / H, F = cfg_.dim_feedforward, M = B * S;
  if (M == 0) return;
  WorkspaceCache::Lease lease(workspaces_, M, E, F);
  Workspace& ws = *lease;
  const std::vector<uint8_t> mask = lengths ? key_padding_mask(lengths, B, S) : std::vector<uint8_t>();
  const uint8_t* mp = lengths ? mask.data() : nullptr;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  float* x = ws.x.data();
  float* t = ws.t.data();
  if (inputs)
    std::copy(inputs, inputs + M * E, x);
  else
    embeddings_.forward(kt_, ids, type_ids, B, S, 0, x);

  // ctx [B,S,E] = attention over the S positions of each source (padding masked) of
  // in [B*S, E] projected to q, k, v [B*S, 3E].
  auto self_attention = [&](const SelfAttentionWeights& a, const float* in, float* ctx) {
    a.qkv.forward(kt_, in, M, ws.qkv.data());
    const Tensor4View q{ws.qkv.data(), S * 3 * E, D, 3 * E}, k{ws.qkv.data() + E, S * 3 * E, D, 3 * E},
        v{ws.qkv.data() + 2 * E, S * 3 * E, D, 3 * E};
    kt_.attention(q, k, v, ctx, S * E, D, E, B, H, S, S, D, D, mp, false, 0, scale);
  };
  const LayerSpec spec = layer_spec(cfg_);
  for (const EncoderLayerWeights& l : layers_)
    encoder_layer(kt_, spec, l, M, x, t, ws.ctx.data(), ws.hidden.data(),
                  [&](const float* in, float* ctx) { self_attention(l.self_attn, in, ctx); });
  if (cfg_.final_norm)
    final_norm_.forward(kt_, x, nullptr, out, M);
  else
    std::copy(x, x + M * E, out);
}

void Encoder::export_weights(const WeightSinks& sinks) const {
  const WeightSink& sink = sinks.floats;
  const int64_t E = cfg_.d_model;
  const names::Side n = names::source();
  if (has_embeddings()) {
    embeddings_.table()->export_to(sinks, n.embed);
    if (cfg_.positional == Positional::kLearned)
      export_array(sink, n.pos_embed, {cfg_.max_length, E}, embeddings_.positions());
    if (embeddings_.types()) export_array(sink, n.type_embed, {cfg_.type_vocab_size, E}, embeddings_.types());
    if (embeddings_.has_norm()) export_norm(sink, n.embed_norm, embeddings_.norm());
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const names::EncoderLayer ln = names::encoder_layer(static_cast<int64_t>(i));
    const EncoderLayerWeights& l = layers_[i];
    export_self_attention(kt_, sinks, ln.self_attn, l.self_attn);
    export_linear(kt_, sinks, ln.linear1, l.ffn.linear1);
    export_linear(kt_, sinks, ln.linear2, l.ffn.linear2);
    export_norm(sink, ln.norm1, l.norm1);
    export_norm(sink, ln.norm2, l.norm2);
  }
  if (cfg_.final_norm) export_norm(sink, n.final_norm, final_norm_);
}

}  // namespace pt::model

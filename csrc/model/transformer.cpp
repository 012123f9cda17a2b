#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace pt::model {

using kernels::Activation;
using kernels::Tensor4View;

namespace {

CrossAttentionWeights load_cross_attention(const kernels::KernelTable& kt, const WeightMap& w,
                                           const names::Attention& n, int64_t E, ComputeType ct) {
  const LinearSource in_w = require_linear_weight(w, n.in_proj_weight, {3 * E, E});
  const float* in_b = require_weight(w, n.in_proj_bias, {3 * E});
  CrossAttentionWeights a;
  a.q = Linear(kt, in_w, in_b, E, E, ct);
  a.kv = Linear(kt, in_w.rows_from(E, E), in_b + E, 2 * E, E, ct);
  a.out = load_linear(kt, w, n.out_proj, E, E, ct);
  return a;
}

// The config, once its sizes and ids are checked and the weights match its table.
const TransformerConfig& checked(const TransformerConfig& c, const WeightMap& w) {
  check_config_sizes(c);
  if (c.share_embeddings && c.src_vocab_size != c.tgt_vocab_size)
    throw std::invalid_argument("share_embeddings needs src_vocab_size == tgt_vocab_size");
  // Generation embeds bos_id and compares with eos_id; both index the target vocabulary.
  for (auto [name, id] : {std::pair<const char*, int64_t>{"bos_id", c.bos_id}, {"eos_id", c.eos_id},
                          {"pad_id", c.pad_id}})
    if (id < 0 || id >= c.tgt_vocab_size)
      throw std::invalid_argument(std::string(name) + " = " + std::to_string(id) +
                                  " is outside the target vocabulary [0, " + std::to_string(c.tgt_vocab_size) + ")");
  check_weights(w, weight_table(c, false));
  return c;
}


}  // namespace

Transformer::Transformer(const TransformerConfig& config, const WeightMap& w)
    : kt_(kernels::active()), cfg_(checked(config, w)), encoder_(kt_, cfg_, w) {
  const int64_t E = cfg_.d_model, F = cfg_.dim_feedforward, V = cfg_.tgt_vocab_size;
  const float eps = cfg_.layer_norm_eps;
  const names::Side n = names::target();
  std::shared_ptr<const EmbeddingTable> table =
      cfg_.share_embeddings ? encoder_.embedding_table()
                            : std::make_shared<const EmbeddingTable>(w, n.embed, V, E, cfg_.compute);
  const float* learned =
      cfg_.positional == Positional::kLearned ? require_weight(w, n.pos_embed, {cfg_.max_length, E}) : nullptr;
  const float* nw = cfg_.embedding_norm ? require_weight(w, n.embed_norm.weight, {E}) : nullptr;
  const float* nb = cfg_.embedding_norm ? require_weight(w, n.embed_norm.bias, {E}) : nullptr;
  tgt_embeddings_ = Embeddings(table, V, E, cfg_.embedding_scale, cfg_.positional, cfg_.max_length, learned, nullptr,
                               0, nw, nb, eps);
  for (int64_t i = 0; i < cfg_.num_decoder_layers; ++i) {
    const names::DecoderLayer ln = names::decoder_layer(i);
    DecoderLayerWeights l;
    l.self_attn = load_self_attention(kt_, w, ln.self_attn, E, cfg_.compute);
    l.cross_attn = load_cross_attention(kt_, w, ln.cross_attn, E, cfg_.compute);
    l.ffn = {load_linear(kt_, w, ln.linear1, F, E, cfg_.compute), load_linear(kt_, w, ln.linear2, E, F, cfg_.compute)};
    l.norm1 = load_norm(w, ln.norm1, E, eps);
    l.norm2 = load_norm(w, ln.norm2, E, eps);
    l.norm3 = load_norm(w, ln.norm3, E, eps);
    decoder_.push_back(std::move(l));
  }
  if (cfg_.final_norm) decoder_norm_ = load_norm(w, n.final_norm, E, eps);
  const names::Pair gen = names::generator();
  const LinearSource gen_w =
      cfg_.tie_output ? table->as_linear() : require_linear_weight(w, gen.weight, {V, E});
  const float* gen_b = cfg_.output_bias ? require_weight(w, gen.bias, {V}) : nullptr;
  generator_ = Linear(kt_, gen_w, gen_b, V, E, cfg_.compute);
}

void Transformer::export_weights(const WeightSinks& sinks) const {
  const WeightSink& sink = sinks.floats;
  const int64_t E = cfg_.d_model, V = cfg_.tgt_vocab_size;
  const names::Side n = names::target();
  encoder_.export_weights(sinks);
  if (!cfg_.share_embeddings) tgt_embeddings_.table()->export_to(sinks, n.embed);
  if (cfg_.positional == Positional::kLearned)
    export_array(sink, n.pos_embed, {cfg_.max_length, E}, tgt_embeddings_.positions());
  if (tgt_embeddings_.has_norm()) export_norm(sink, n.embed_norm, tgt_embeddings_.norm());
  for (size_t i = 0; i < decoder_.size(); ++i) {
    const names::DecoderLayer ln = names::decoder_layer(static_cast<int64_t>(i));
    const DecoderLayerWeights& l = decoder_[i];
    export_self_attention(kt_, sinks, ln.self_attn, l.self_attn);
    // in_proj of the cross attention = [Wq; Wk; Wv], kept as q and (k, v).
    export_linear_weight(kt_, sinks, ln.cross_attn.in_proj_weight, l.cross_attn.q, 3 * E, 0);
    export_linear_weight(kt_, sinks, ln.cross_attn.in_proj_weight, l.cross_attn.kv, 3 * E, E);
    float* b = sink(ln.cross_attn.in_proj_bias, {3 * E});
    std::copy(l.cross_attn.q.bias(), l.cross_attn.q.bias() + E, b);
    std::copy(l.cross_attn.kv.bias(), l.cross_attn.kv.bias() + 2 * E, b + E);
    export_linear(kt_, sinks, ln.cross_attn.out_proj, l.cross_attn.out);
    export_linear(kt_, sinks, ln.linear1, l.ffn.linear1);
    export_linear(kt_, sinks, ln.linear2, l.ffn.linear2);
    export_norm(sink, ln.norm1, l.norm1);
    export_norm(sink, ln.norm2, l.norm2);
    export_norm(sink, ln.norm3, l.norm3);
  }
  if (cfg_.final_norm) export_norm(sink, n.final_norm, decoder_norm_);
  const names::Pair gen = names::generator();
  if (!cfg_.tie_output)
    export_linear(kt_, sinks, gen, generator_);
  else if (cfg_.output_bias)
    export_array(sink, gen.bias, {V}, generator_.bias());
}

void Transformer::encode(const int32_t* src_ids, int64_t B, int64_t S, const int32_t* src_lengths,
                         float* memory) const {
  encoder_.encode(src_ids, nullptr, B, S, src_lengths, memory);
}

void Transformer::encode_features(const float* inputs, int64_t B, int64_t S, const int32_t* src_lengths,
                                  float* memory) const {
  encoder_.encode_features(inputs, B, S, src_lengths, memory);
}

// probs [B,T,S] = mean over heads of softmax_s(scale * q_t . k_s + mask): q [B*T, E],
// kv [B*S, 2E] (k first). For inspection only (not on the generation path).
void Transformer::attention_probabilities(const float* q, const float* kv, int64_t B, int64_t T, int64_t S,
                                          const uint8_t* mask, float scale, float* probs) const {
  const int64_t E = cfg_.d_model, H = cfg_.nhead, D = E / H;
  std::fill(probs, probs + B * T * S, 0.0f);
  if (S == 0) return;
  std::vector<float> row(static_cast<size_t>(S));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const float* qv = q + (b * T + t) * E + h * D;
        bool any = false;
        for (int64_t s = 0; s < S; ++s) {
          if (mask && mask[b * S + s]) {
            row[static_cast<size_t>(s)] = -std::numeric_limits<float>::infinity();
            continue;
          }
          const float* kvec = kv + (b * S + s) * 2 * E + h * D;
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += qv[d] * kvec[d];
          row[static_cast<size_t>(s)] = dot * scale;
          any = true;
        }
        if (!any) continue;
        kt_.softmax(row.data(), row.data(), 1, S);
        float* out = probs + (b * T + t) * S;
        for (int64_t s = 0; s < S; ++s) out[s] += row[static_cast<size_t>(s)] / static_cast<float>(H);
      }
}

void Transformer::decode(const int32_t* tgt_ids, int64_t B, int64_t T, const float* memory, int64_t S,
                         const int32_t* src_lengths, float* logits, float* attention) const {
  const int64_t E = cfg_.d_model, H = cfg_.nhead, D = E / H, F = cfg_.dim_feedforward, M = B * T;
  if (M == 0) return;
  WorkspaceCache::Lease lease(workspaces_, M, E, F);
  Workspace& ws = *lease;
  AlignedBuffer kv(static_cast<size_t>(B * S * 2 * E));
  const std::vector<uint8_t> mask = src_lengths ? key_padding_mask(src_lengths, B, S) : std::vector<uint8_t>();
  const uint8_t* mp = src_lengths ? mask.data() : nullptr;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  float* x = ws.x.data();
  float* t = ws.t.data();
  tgt_embeddings_.forward(kt_, tgt_ids, nullptr, B, T, 0, x);
  if (attention && decoder_.empty()) std::fill(attention, attention + B * T * S, 0.0f);

  // Masked self-attention over the T target positions: in [B*T, E] -> ctx [B,T,E].
  auto self_attention = [&](const SelfAttentionWeights& a, const float* in, float* ctx) {
    a.qkv.forward(kt_, in, M, ws.qkv.data());
    const Tensor4View q{ws.qkv.data(), T * 3 * E, D, 3 * E}, k{ws.qkv.data() + E, T * 3 * E, D, 3 * E},
        v{ws.qkv.data() + 2 * E, T * 3 * E, D, 3 * E};
    kt_.attention(q, k, v, ctx, T * E, D, E, B, H, T, T, D, D, nullptr, true, 0, scale);
  };
  // Attention over the memory [B,S,E] (K, V projected here, kv [B*S, 2E]).
  auto cross_attention = [&](const CrossAttentionWeights& a, const float* in, float* ctx, float* probs) {
    a.q.forward(kt_, in, M, ws.qkv.data());
    if (S > 0) a.kv.forward(kt_, memory, B * S, kv.data());
    const Tensor4View q{ws.qkv.data(), T * E, D, E}, k{kv.data(), S * 2 * E, D, 2 * E},
        v{kv.data() + E, S * 2 * E, D, 2 * E};
    kt_.attention(q, k, v, ctx, T * E, D, E, B, H, T, S, D, D, mp, false, 0, scale);
    if (probs) attention_probabilities(ws.qkv.data(), kv.data(), B, T, S, mp, scale, probs);
  };
  const LayerSpec spec = layer_spec(cfg_);
  for (const DecoderLayerWeights& l : decoder_) {
    float* probs = &l == &decoder_.back() ? attention : nullptr;
    decoder_layer(kt_, spec, l, M, x, t, ws.ctx.data(), ws.hidden.data(),
                  [&](const float* in, float* ctx) { self_attention(l.self_attn, in, ctx); },
                  [&](const float* in, float* ctx) { cross_attention(l.cross_attn, in, ctx, probs); });
  }
  if (cfg_.final_norm) {
    decoder_norm_.forward(kt_, x, nullptr, t, M);
    std::swap(x, t);
  }
  generator_.forward(kt_, x, M, logits);
}

}  // namespace pt::model

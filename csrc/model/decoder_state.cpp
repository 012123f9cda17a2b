#include "model/decoder_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace pt::model {

using kernels::Activation;
using kernels::Tensor4View;

namespace {
AlignedBuffer zeros(int64_t n) {
  AlignedBuffer b(static_cast<size_t>(n));
  if (n > 0) std::memset(b.data(), 0, static_cast<size_t>(n) * sizeof(float));
  return b;
}
}  // namespace

DecoderState::DecoderState(const Transformer& model, const float* memory, int64_t B, int64_t S,
                           const int32_t* src_lengths, int64_t rows_per_source, int64_t max_steps)
    : model_(model), kt_(model.kernels()) {
  const TransformerConfig& c = model.config();
  if (rows_per_source < 1) throw std::invalid_argument("rows_per_source must be >= 1");
  if (max_steps < 1 || max_steps > c.max_length)
    throw std::invalid_argument("max_steps must be in [1, max_length]");
  E_ = c.d_model;
  H_ = c.nhead;
  D_ = E_ / H_;
  F_ = c.dim_feedforward;
  vocab_ = c.tgt_vocab_size;
  S_ = S;
  const int64_t Bk = kt_.attention_key_block;
  S_pad_ = std::max<int64_t>(1, (S + Bk - 1) / Bk) * Bk;
  T_max_ = max_steps;
  T_pad_ = (T_max_ + Bk - 1) / Bk * Bk;
  sources_ = B;
  rows_per_source_ = rows_per_source;
  const int64_t R = B * rows_per_source;
  const size_t L = model.decoder_layers().size();

  mask_ = key_padding_mask(src_lengths, B, S);

  // Encoder-decoder keys and values: projected once, K stored transposed per head.
  AlignedBuffer kv(static_cast<size_t>(std::max<int64_t>(1, B * S * 2 * E_)));
  for (size_t l = 0; l < L; ++l) {
    self_k_.push_back(zeros(R * E_ * T_pad_));
    self_v_.push_back(AlignedBuffer(static_cast<size_t>(R * T_max_ * E_)));
    cross_k_.push_back(zeros(B * E_ * S_pad_));
    cross_v_.push_back(AlignedBuffer(static_cast<size_t>(B * S * E_)));
    if (B * S == 0) continue;
    model.decoder_layers()[l].cross_attn.kv.forward(kt_, memory, B * S, kv.data());
    float* ck = cross_k_[l].data();
    float* cv = cross_v_[l].data();
    // K transposed in 32 x 32 tiles (a row at a time would write S cache lines per
    // key dimension: slow for Whisper's 1500 positions); V copied row by row.
    constexpr int64_t kTile = 32;
    for (int64_t b = 0; b < B; ++b) {
      const float* src = kv.data() + b * S * 2 * E_;
      for (int64_t s0 = 0; s0 < S; s0 += kTile)
        for (int64_t j0 = 0; j0 < E_; j0 += kTile) {
          const int64_t s1 = std::min(S, s0 + kTile), j1 = std::min(E_, j0 + kTile);
          for (int64_t j = j0; j < j1; ++j)  // j = h*D + d
            for (int64_t s = s0; s < s1; ++s) ck[(b * E_ + j) * S_pad_ + s] = src[s * 2 * E_ + j];
        }
      for (int64_t s = 0; s < S; ++s)
        std::memcpy(cv + (b * S + s) * E_, src + s * 2 * E_ + E_, static_cast<size_t>(E_) * sizeof(float));
    }
  }
  x_ = AlignedBuffer(static_cast<size_t>(R * E_));
  t_ = AlignedBuffer(static_cast<size_t>(R * E_));
  qkv_ = AlignedBuffer(static_cast<size_t>(R * 3 * E_));
  ctx_ = AlignedBuffer(static_cast<size_t>(R * E_));
  hidden_ = AlignedBuffer(static_cast<size_t>(R * F_));
  logits_ = AlignedBuffer(static_cast<size_t>(R * vocab_));
  tmp_k_ = AlignedBuffer(static_cast<size_t>(rows_per_source * E_ * T_pad_));
  tmp_v_ = AlignedBuffer(static_cast<size_t>(rows_per_source * T_max_ * E_));
}

const float* DecoderState::advance(const int32_t* tokens) {
  if (step_ >= T_max_) throw std::logic_error("DecoderState::advance past max_steps");
  const TransformerConfig& c = model_.config();
  const int64_t R = rows(), t = step_, K = rows_per_source_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
  const bool any_padding = std::find(mask_.begin(), mask_.begin() + sources_ * S_, 1) != mask_.begin() + sources_ * S_;
  float* x = x_.data();
  float* tt = t_.data();
  float* qkv = qkv_.data();
  float* ctx = ctx_.data();
  model_.target_embeddings().forward(kt_, tokens, nullptr, R, 1, t, x);

  // The new position's q, k, v [R, 3E]; k, v appended to the cache; ctx [R, E] =
  // attention over positions 0..t of each row.
  auto self_attention = [&](size_t l, const SelfAttentionWeights& a, const float* in, float* ctx) {
    a.qkv.forward(kt_, in, R, qkv);
    float* kc = self_k_[l].data();
    float* vc = self_v_[l].data();
    for (int64_t r = 0; r < R; ++r) {
      const float* row = qkv + r * 3 * E_;
      float* kcol = kc + r * E_ * T_pad_ + t;
      for (int64_t j = 0; j < E_; ++j) kcol[j * T_pad_] = row[E_ + j];
      std::memcpy(vc + (r * T_max_ + t) * E_, row + 2 * E_, static_cast<size_t>(E_) * sizeof(float));
    }
    const Tensor4View q{qkv, 3 * E_, D_, 3 * E_};
    const Tensor4View k{kc, E_ * T_pad_, D_ * T_pad_, T_pad_, true};
    const Tensor4View v{vc, T_max_ * E_, D_, E_};
    kt_.attention(q, k, v, ctx, E_, D_, E_, R, H_, 1, t + 1, D_, D_, nullptr, false, 0, scale);
  };
  // ctx [R, E] = attention over the source's projected memory (K, V cached at construction).
  auto cross_attention = [&](size_t l, const CrossAttentionWeights& a, const float* in, float* ctx) {
    a.q.forward(kt_, in, R, qkv);
    const Tensor4View q{qkv, K * E_, D_, E_};
    const Tensor4View k{cross_k_[l].data(), E_ * S_pad_, D_ * S_pad_, S_pad_, true};
    const Tensor4View v{cross_v_[l].data(), S_ * E_, D_, E_};
    kt_.attention(q, k, v, ctx, K * E_, D_, E_, sources_, H_, K, S_, D_, D_, any_padding ? mask_.data() : nullptr,
                  false, 0, scale);
  };

  const auto& layers = model_.decoder_layers();
  const LayerSpec spec = layer_spec(c);
  for (size_t l = 0; l < layers.size(); ++l) {
    const DecoderLayerWeights& L = layers[l];
    decoder_layer(kt_, spec, L, R, x, tt, ctx, hidden_.data(),
                  [&](const float* in, float* out) { self_attention(l, L.self_attn, in, out); },
                  [&](const float* in, float* out) { cross_attention(l, L.cross_attn, in, out); });
  }
  if (c.final_norm) {
    model_.decoder_norm().forward(kt_, x, nullptr, tt, R);
    std::swap(x, tt);
  }
  model_.generator().forward(kt_, x, R, logits_.data());
  ++step_;
  return logits_.data();
}

void DecoderState::copy_row(int64_t layer, int64_t from, int64_t to, float* k_dst_base, float* v_dst_base) const {
  // Only the first step_ positions hold data; the rest of K stays zero.
  const float* ks = self_k_[layer].data() + from * E_ * T_pad_;
  float* kd = k_dst_base + to * E_ * T_pad_;
  for (int64_t j = 0; j < E_; ++j)
    std::memcpy(kd + j * T_pad_, ks + j * T_pad_, static_cast<size_t>(step_) * sizeof(float));
  std::memcpy(v_dst_base + to * T_max_ * E_, self_v_[layer].data() + from * T_max_ * E_,
              static_cast<size_t>(step_ * E_) * sizeof(float));
}

void DecoderState::reorder(const int32_t* parent) {
  const int64_t K = rows_per_source_;
  for (int64_t s = 0; s < sources_; ++s) {
    const int64_t r0 = s * K;
    bool moved = false;
    for (int64_t i = 0; i < K; ++i) {
      if (parent[r0 + i] < r0 || parent[r0 + i] >= r0 + K)
        throw std::invalid_argument("reorder: a row's parent belongs to another source");
      moved |= parent[r0 + i] != r0 + i;
    }
    if (!moved) continue;
    for (size_t l = 0; l < self_k_.size(); ++l) {
      // Save the source's rows that some other row copies, then write the new rows.
      for (int64_t i = 0; i < K; ++i) copy_row(static_cast<int64_t>(l), r0 + i, i, tmp_k_.data(), tmp_v_.data());
      for (int64_t i = 0; i < K; ++i) {
        if (parent[r0 + i] == r0 + i) continue;
        const int64_t from = parent[r0 + i] - r0;
        const float* ks = tmp_k_.data() + from * E_ * T_pad_;
        float* kd = self_k_[l].data() + (r0 + i) * E_ * T_pad_;
        for (int64_t j = 0; j < E_; ++j)
          std::memcpy(kd + j * T_pad_, ks + j * T_pad_, static_cast<size_t>(step_) * sizeof(float));
        std::memcpy(self_v_[l].data() + (r0 + i) * T_max_ * E_, tmp_v_.data() + from * T_max_ * E_,
                    static_cast<size_t>(step_ * E_) * sizeof(float));
      }
    }
  }
}

void DecoderState::keep_sources(const std::vector<int64_t>& keep) {
  const int64_t K = rows_per_source_;
  for (size_t n = 0; n < keep.size(); ++n) {
    const int64_t s = keep[n], d = static_cast<int64_t>(n);
    if (s < d || s >= sources_ || (n > 0 && s <= keep[n - 1]))
      throw std::invalid_argument("keep_sources: indices must be increasing active sources");
    if (s == d) continue;
    for (size_t l = 0; l < self_k_.size(); ++l) {
      for (int64_t i = 0; i < K; ++i) copy_row(static_cast<int64_t>(l), s * K + i, d * K + i, self_k_[l].data(),
                                               self_v_[l].data());
      std::memcpy(cross_k_[l].data() + d * E_ * S_pad_, cross_k_[l].data() + s * E_ * S_pad_,
                  static_cast<size_t>(E_ * S_pad_) * sizeof(float));
      std::memcpy(cross_v_[l].data() + d * S_ * E_, cross_v_[l].data() + s * S_ * E_,
                  static_cast<size_t>(S_ * E_) * sizeof(float));
    }
    std::memcpy(mask_.data() + d * S_, mask_.data() + s * S_, static_cast<size_t>(S_));
  }
  sources_ = static_cast<int64_t>(keep.size());
}

}  // namespace pt::model

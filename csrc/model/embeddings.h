// Token embeddings: table lookup * scale + token type + position, then an optional
// LayerNorm. Covers the paper (scaled table + sinusoids), BERT (learned positions,
// token types, LayerNorm) and Marian (scaled table + concatenated sinusoids).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/kernels.h"
#include "model/layers.h"

namespace pt::model {

enum class Positional { kSinusoidal, kSinusoidalConcat, kLearned };

class Embeddings {
 public:
  Embeddings() = default;
  // table [vocab, E] (borrowed: owned by the model, which may share it); learned
  // positions [max_length, E] when positional == kLearned; types [type_vocab, E] or
  // null; norm_weight/norm_bias [E] or null (no LayerNorm).
  Embeddings(const float* table, int64_t vocab, int64_t E, float scale, Positional positional, int64_t max_length,
             const float* learned_positions, const float* types, int64_t type_vocab, const float* norm_weight,
             const float* norm_bias, float eps);

  // out [B*L, E] for ids [B, L] at positions first_position..; type_ids [B, L] or null.
  void forward(const kernels::KernelTable& kt, const int32_t* ids, const int32_t* type_ids, int64_t B, int64_t L,
               int64_t first_position, float* out) const;

  const float* table() const { return table_; }
  const float* positions() const { return positions_.data(); }
  const float* types() const { return types_.size() ? types_.data() : nullptr; }
  int64_t type_vocab() const { return type_vocab_; }
  bool has_norm() const { return has_norm_; }
  const LayerNorm& norm() const { return norm_; }

 private:
  const float* table_ = nullptr;
  int64_t vocab_ = 0, E_ = 0, type_vocab_ = 0;
  float scale_ = 1.0f;
  AlignedBuffer positions_;  // [max_length, E], sinusoidal or learned
  AlignedBuffer types_;
  bool has_norm_ = false;
  LayerNorm norm_;
};

}  // namespace pt::model

#include "model/embeddings.h"

#include "kernels/positions.h"

namespace pt::model {

Embeddings::Embeddings(const float* table, int64_t vocab, int64_t E, float scale, Positional positional,
                       int64_t max_length, const float* learned_positions, const float* types, int64_t type_vocab,
                       const float* norm_weight, const float* norm_bias, float eps)
    : table_(table), vocab_(vocab), E_(E), type_vocab_(types ? type_vocab : 0), scale_(scale) {
  if (positional == Positional::kLearned) {
    positions_ = copy_aligned(learned_positions, max_length * E);
  } else {
    positions_ = AlignedBuffer(static_cast<size_t>(max_length * E));
    kernels::positional_encoding(positions_.data(), max_length, E, 0,
                                 positional == Positional::kSinusoidal ? kernels::SinusoidLayout::kInterleaved
                                                                       : kernels::SinusoidLayout::kConcat);
  }
  if (types) types_ = copy_aligned(types, type_vocab * E);
  if (norm_weight) {
    has_norm_ = true;
    norm_ = LayerNorm(norm_weight, norm_bias, E, eps);
  }
}

void Embeddings::forward(const kernels::KernelTable& kt, const int32_t* ids, const int32_t* type_ids, int64_t B,
                         int64_t L, int64_t first_position, float* out) const {
  kt.embed(table_, E_, ids, B * L, L, first_position, scale_, positions_.data(), types(), type_ids, out);
  if (has_norm_) norm_.forward(kt, out, nullptr, out, B * L);
}

}  // namespace pt::model

#include "model/embeddings.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "kernels/positions.h"
#include "runtime/parallel.h"

namespace pt::model {

EmbeddingTable::EmbeddingTable(const WeightMap& w, const std::string& name, int64_t vocab, int64_t E,
                               ComputeType compute)
    : vocab_(vocab), E_(E) {
  const LinearSource src = require_linear_weight(w, name, {vocab, E});
  const size_t n = static_cast<size_t>(vocab * E);
  if (compute == ComputeType::kInt8) {
    scale_ = AlignedBuffer(static_cast<size_t>(std::max<int64_t>(vocab, 1)));
    const int8_t* q = int8_rows(src, vocab, E, q_, scale_.data());
    if (q != q_.data()) q_.assign(q, q + n);  // came int8: keep a copy
    if (q_.empty()) q_.resize(1);
    return;
  }
  std::vector<float> storage;
  const float* f = float_rows(src, vocab, E, storage);
  f_ = AlignedBuffer(n);
  std::copy(f, f + n, f_.data());
}

void EmbeddingTable::gather(const int32_t* ids, int64_t rows, float* out) const {
  for (int64_t r = 0; r < rows; ++r)
    if (ids[r] < 0 || ids[r] >= vocab_)
      throw std::out_of_range("token id " + std::to_string(ids[r]) + " is outside the vocabulary [0, " +
                              std::to_string(vocab_) + ")");
  parallel_for(rows, threads_for(rows * E_, 1 << 15), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t v = ids[r];
      float* o = out + r * E_;
      if (is_int8()) {
        dequantize_rows(q_.data() + v * E_, scale_.data() + v, 1, E_, o);
      } else {
        std::copy(f_.data() + v * E_, f_.data() + (v + 1) * E_, o);
      }
    }
  });
}

void EmbeddingTable::export_to(const WeightSinks& sinks, const std::string& name) const {
  const size_t n = static_cast<size_t>(vocab_ * E_);
  if (is_int8() && sinks.int8) {
    std::copy(q_.data(), q_.data() + n, sinks.int8(name, {vocab_, E_}));
    std::copy(scale_.data(), scale_.data() + vocab_, sinks.floats(name + kScaleSuffix, {vocab_}));
    return;
  }
  float* out = sinks.floats(name, {vocab_, E_});
  if (!is_int8()) {
    std::copy(f_.data(), f_.data() + n, out);
    return;
  }
  dequantize_rows(q_.data(), scale_.data(), vocab_, E_, out);
}

Embeddings::Embeddings(std::shared_ptr<const EmbeddingTable> table, int64_t vocab, int64_t E, float scale, Positional positional,
                       int64_t max_length, const float* learned_positions, const float* types, int64_t type_vocab,
                       const float* norm_weight, const float* norm_bias, float eps)
    : table_(std::move(table)), vocab_(vocab), E_(E), type_vocab_(types ? type_vocab : 0), scale_(scale) {
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
  if (table_->is_int8()) {
    // Dequantize the rows into out, then scale + types + positions in place (null
    // ids: the kernel reads row r of `out` as table row r).
    table_->gather(ids, B * L, out);
    kt.embed(out, E_, nullptr, B * L, L, first_position, scale_, positions_.data(), types(), type_ids, out);
  } else {
    kt.embed(table_->floats(), E_, ids, B * L, L, first_position, scale_, positions_.data(), types(), type_ids, out);
  }
  if (has_norm_) norm_.forward(kt, out, nullptr, out, B * L);
}

}  // namespace pt::model

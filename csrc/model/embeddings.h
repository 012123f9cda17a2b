// Token embeddings: table lookup * scale + token type + position, then an optional
// LayerNorm. Covers the paper (scaled table + sinusoids), BERT (learned positions,
// token types, LayerNorm) and Marian (scaled table + concatenated sinusoids).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/layers.h"

namespace pt::model {

enum class Positional { kSinusoidal, kSinusoidalConcat, kLearned };

// A token embedding table [vocab, E]: float32, or (int8 compute) int8 rows with a
// float32 scale per row, row v = q[v, :] * scale[v] (the symmetric per-row rule of the
// GEMM weights, so a tied output projection is exactly the table's int8 weight).
class EmbeddingTable {
 public:
  EmbeddingTable() = default;
  // The named [vocab, E] weight, float32 or int8 with its scales, held in `compute`'s
  // form (float32 -> int8: quantized per row; int8 -> float32: dequantized).
  EmbeddingTable(const WeightMap& w, const std::string& name, int64_t vocab, int64_t E, ComputeType compute);

  bool is_int8() const { return !q_.empty(); }
  int64_t vocab() const { return vocab_; }
  int64_t dim() const { return E_; }
  const float* floats() const { return f_.data(); }  // float32 tables only
  // As a GEMM weight [vocab, E] (the tied output projection).
  LinearSource as_linear() const {
    return is_int8() ? LinearSource{nullptr, q_.data(), scale_.data()} : LinearSource{f_.data(), nullptr, nullptr};
  }
  // out [rows, E] = row ids[r] of the table (float32), for ids in [0, vocab).
  void gather(const int32_t* ids, int64_t rows, float* out) const;
  // Under `name`: int8 + scales when the sinks take int8 and the table is int8, else float32.
  void export_to(const WeightSinks& sinks, const std::string& name) const;

 private:
  int64_t vocab_ = 0, E_ = 0;
  AlignedBuffer f_;           // float32 [vocab, E]
  std::vector<int8_t> q_;     // int8 [vocab, E]
  AlignedBuffer scale_;       // int8: [vocab]
};

class Embeddings {
 public:
  Embeddings() = default;
  // table [vocab, E] (shared: the encoder's and the decoder's may be one); learned
  // positions [max_length, E] when positional == kLearned; types [type_vocab, E] or
  // null; norm_weight/norm_bias [E] or null (no LayerNorm).
  Embeddings(std::shared_ptr<const EmbeddingTable> table, int64_t vocab, int64_t E, float scale, Positional positional, int64_t max_length,
             const float* learned_positions, const float* types, int64_t type_vocab, const float* norm_weight,
             const float* norm_bias, float eps);

  // out [B*L, E] for ids [B, L] at positions first_position..; type_ids [B, L] or null.
  void forward(const kernels::KernelTable& kt, const int32_t* ids, const int32_t* type_ids, int64_t B, int64_t L,
               int64_t first_position, float* out) const;

  const std::shared_ptr<const EmbeddingTable>& table() const { return table_; }
  const float* positions() const { return positions_.data(); }
  const float* types() const { return types_.size() ? types_.data() : nullptr; }
  int64_t type_vocab() const { return type_vocab_; }
  bool has_norm() const { return has_norm_; }
  const LayerNorm& norm() const { return norm_; }

 private:
  std::shared_ptr<const EmbeddingTable> table_;
  int64_t vocab_ = 0, E_ = 0, type_vocab_ = 0;
  float scale_ = 1.0f;
  AlignedBuffer positions_;  // [max_length, E], sinusoidal or learned
  AlignedBuffer types_;
  bool has_norm_ = false;
  LayerNorm norm_;
};

}  // namespace pt::model

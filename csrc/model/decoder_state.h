// Incremental decoding: the decoder run one position at a time over a batch of
// hypotheses ("rows"), with the self-attention keys/values of past positions kept
// in a cache and the encoder-decoder keys/values projected once per source.
//
// Everything is allocated by the constructor; advance(), reorder() and
// keep_sources() never allocate. Rows are grouped by source: source s owns rows
// [s*rows_per_source, (s+1)*rows_per_source) of the active rows.
#pragma once

#include <cstdint>
#include <vector>

#include "model/transformer.h"
#include "runtime/aligned_buffer.h"

namespace pt::model {

class DecoderState {
 public:
  // memory [B,S,E] from Transformer::encode; src_lengths [B] or null; max_steps:
  // positions the targets may take (start token included), <= max_length.
  DecoderState(const Transformer& model, const float* memory, int64_t B, int64_t S, const int32_t* src_lengths,
               int64_t rows_per_source, int64_t max_steps);

  int64_t sources() const { return sources_; }            // active sources
  int64_t rows_per_source() const { return rows_per_source_; }
  int64_t rows() const { return sources_ * rows_per_source_; }
  int64_t step() const { return step_; }                  // position of the next token
  int64_t vocab_size() const { return vocab_; }

  // Runs the decoder on tokens[r] at position step() for every active row; returns
  // logits [rows(), vocab_size()] (an internal buffer, valid until the next call).
  const float* advance(const int32_t* tokens);

  // Row i becomes a copy of old row parent[i]; parent[i] must be a row of the same
  // source. Caches up to step() are moved.
  void reorder(const int32_t* parent);

  // Keeps the active sources listed in `keep` (increasing indices into the active
  // sources), with their rows, in that order.
  void keep_sources(const std::vector<int64_t>& keep);

 private:
  void copy_row(int64_t layer, int64_t from, int64_t to, float* k_dst_base, float* v_dst_base) const;

  const Transformer& model_;
  const kernels::KernelTable& kt_;
  int64_t E_, H_, D_, F_, vocab_, S_, S_pad_, T_max_, T_pad_;
  int64_t sources_, rows_per_source_, step_ = 0;
  // Per layer: self-attention K transposed [rows][H][D][T_pad] and V [rows][T_max][E];
  // cross-attention K transposed [B][H][D][S_pad] and V [B][S][E].
  std::vector<AlignedBuffer> self_k_, self_v_, cross_k_, cross_v_;
  std::vector<uint8_t> mask_;  // [B][S], 1 = padding
  AlignedBuffer x_, t_, qkv_, ctx_, hidden_, logits_;
  AlignedBuffer tmp_k_, tmp_v_;  // one source's rows of one layer, for reorder()
};

}  // namespace pt::model

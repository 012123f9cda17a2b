// The encoder stack: embeddings, N layers of self-attention + feed-forward with
// residual + LayerNorm (post-LN or pre-LN), an optional final LayerNorm. Used by
// the encoder-decoder Transformer and, alone, by encoder-only models (BERT).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/embeddings.h"
#include "model/layer_stack.h"
#include "model/layers.h"
#include "model/weight_table.h"

namespace pt::model {

struct TransformerConfig;


// Loaders and exporters of the blocks, under the names of weight_table.h.
SelfAttentionWeights load_self_attention(const kernels::KernelTable& kt, const WeightMap& w,
                                         const names::Attention& n, int64_t E, ComputeType ct);
Linear load_linear(const kernels::KernelTable& kt, const WeightMap& w, const names::Pair& n, int64_t out, int64_t in,
                   ComputeType ct);
LayerNorm load_norm(const WeightMap& w, const names::Pair& n, int64_t E, float eps);
// Rows [row0, row0 + l.out_features()) of the named [rows, in] weight from l.
void export_linear_weight(const kernels::KernelTable& kt, const WeightSinks& sink, const std::string& name,
                          const Linear& l, int64_t rows, int64_t row0);
void export_linear(const kernels::KernelTable& kt, const WeightSinks& sink, const names::Pair& n, const Linear& l);
void export_self_attention(const kernels::KernelTable& kt, const WeightSinks& sink, const names::Attention& n,
                           const SelfAttentionWeights& a);
void export_norm(const WeightSink& sink, const names::Pair& n, const LayerNorm& norm);
void export_array(const WeightSink& sink, const std::string& name, const std::vector<int64_t>& shape, const float* src);

// Throws std::invalid_argument unless every size of the config is in range and every
// table's size is representable (the C++ boundary checks it whatever Python passed).
void check_config_sizes(const TransformerConfig& cfg);

class Encoder {
 public:
  Encoder(const kernels::KernelTable& kt, const TransformerConfig& cfg, const WeightMap& weights);

  // ids [B,S] (< src_vocab_size), type_ids [B,S] or null, lengths [B] or null ->
  // out [B,S,E]. Positions past a row's length are padding (masked as keys).
  void encode(const int32_t* ids, const int32_t* type_ids, int64_t B, int64_t S, const int32_t* lengths,
              float* out) const;
  // A model without source embeddings (src_vocab_size 0: Whisper, whose front end
  // runs before): inputs [B,S,E], positions already added -> out [B,S,E].
  void encode_features(const float* inputs, int64_t B, int64_t S, const int32_t* lengths, float* out) const;
  bool has_embeddings() const;

  void export_weights(const WeightSinks& sinks) const;
  const std::shared_ptr<const EmbeddingTable>& embedding_table() const { return embeddings_.table(); }

 private:
  void run(const int32_t* ids, const int32_t* type_ids, const float* inputs, int64_t B, int64_t S,
           const int32_t* lengths, float* out) const;
  const kernels::KernelTable& kt_;
  const TransformerConfig& cfg_;
  Embeddings embeddings_;
  std::vector<EncoderLayerWeights> layers_;
  LayerNorm final_norm_;
  mutable WorkspaceCache workspaces_;
};

}  // namespace pt::model

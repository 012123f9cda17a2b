// The encoder-decoder Transformer of "Attention Is All You Need": embeddings +
// positions, N encoder layers (self-attention, FFN), N decoder layers (masked
// self-attention, encoder-decoder attention, FFN), residual + LayerNorm (post-LN as
// in the paper, or pre-LN), and the output projection. Options cover the layouts of
// real checkpoints (learned positions, token types, embedding LayerNorm, ...).
//
// Weights use torch.nn.Transformer's state_dict names. A Transformer is immutable
// after construction: encode/decode allocate their own workspaces and may run
// from several threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/embeddings.h"
#include "model/encoder.h"
#include "model/layers.h"

namespace pt::model {

struct TransformerConfig;
inline LayerSpec layer_spec(const TransformerConfig& c);

// The model's sizes and layout. Its defaults live in one place, Python's
// pytransformer.TransformerConfig: the bindings fill every field from it
// (config_from_dict), so the fields here are only zero-initialised.
struct TransformerConfig {
  int64_t d_model{};
  int64_t nhead{};
  int64_t num_encoder_layers{};
  int64_t num_decoder_layers{};
  int64_t dim_feedforward{};
  kernels::Activation activation{};
  bool norm_first{};         // false: post-LN (the paper); true: pre-LN
  float layer_norm_eps{};
  bool final_norm{};         // encoder.norm / decoder.norm after the stacks
  float embedding_scale{};   // factor applied to embeddings (sqrt(d_model) in the paper)
  Positional positional{};
  int64_t type_vocab_size{};  // token type embeddings on the source side (0: none)
  bool embedding_norm{};     // LayerNorm after the embeddings
  int64_t src_vocab_size{};
  int64_t tgt_vocab_size{};
  bool share_embeddings{};   // one table: src_embed.weight
  bool tie_output{};         // generator.weight = target embedding table
  bool output_bias{};        // generator.bias present
  int64_t max_length{};      // positions available
  int64_t pad_id{}, bos_id{}, eos_id{};
  // Not part of the architecture: how the GEMMs compute (the model's compute_type,
  // set by the bindings beside the config).
  ComputeType compute{};
};

inline LayerSpec layer_spec(const TransformerConfig& c) { return LayerSpec{c.norm_first, c.activation}; }

class Transformer {
 public:
  // Copies and packs every weight; throws std::invalid_argument naming a missing or
  // misshaped weight. Kernels are those active now (kept for the model's lifetime).
  Transformer(const TransformerConfig& config, const WeightMap& weights);

  const TransformerConfig& config() const { return cfg_; }

  // Every weight under its torch name, exactly as loaded: sink(name, shape) returns
  // where to write that tensor's floats.
  void export_weights(const WeightSinks& sinks) const;

  // src_ids [B,S] (ids < src_vocab_size), src_lengths [B] (<= S) or null (all S)
  // -> memory [B,S,d_model]. Positions past a row's length are padding: masked out
  // as keys; their own outputs are unspecified.
  void encode(const int32_t* src_ids, int64_t B, int64_t S, const int32_t* src_lengths, float* memory) const;

  // A model with src_vocab_size 0 (no source embeddings): inputs [B,S,d_model]
  // (front end and positions applied by the caller) -> memory [B,S,d_model].
  void encode_features(const float* inputs, int64_t B, int64_t S, const int32_t* src_lengths, float* memory) const;
  bool takes_features() const { return cfg_.src_vocab_size == 0; }

  // Teacher forcing: tgt_ids [B,T] (causal), memory [B,S,d_model] from encode,
  // src_lengths [B] or null -> logits [B,T,tgt_vocab_size]. attention: null, or
  // [B,T,S] to receive the last decoder layer's encoder-decoder attention
  // probabilities, averaged over heads (which source positions each target looked at).
  void decode(const int32_t* tgt_ids, int64_t B, int64_t T, const float* memory, int64_t S,
              const int32_t* src_lengths, float* logits, float* attention = nullptr) const;

  // Read-only access for the incremental decoder (decoder_state.h).
  const kernels::KernelTable& kernels() const { return kt_; }
  const std::vector<DecoderLayerWeights>& decoder_layers() const { return decoder_; }
  const LayerNorm& decoder_norm() const { return decoder_norm_; }
  const Linear& generator() const { return generator_; }
  const Embeddings& target_embeddings() const { return tgt_embeddings_; }

 private:
  void attention_probabilities(const float* q, const float* kv, int64_t B, int64_t T, int64_t S, const uint8_t* mask,
                               float scale, float* probs) const;

  const kernels::KernelTable& kt_;
  TransformerConfig cfg_;
  Encoder encoder_;
  Embeddings tgt_embeddings_;
  std::vector<DecoderLayerWeights> decoder_;
  LayerNorm decoder_norm_;
  Linear generator_;
  mutable WorkspaceCache workspaces_;  // of teacher-forced decode
};

}  // namespace pt::model

// The weights of a model, named once. Every name is made here (torch.nn.Transformer's
// state_dict names, plus src_/tgt_ embedding tables); weight_table() lists, for a
// config, every weight the model needs with its shape, in a stable order. The loaders
// (Encoder, Transformer constructors) check the caller's weights against this table
// before reading any, the exporters write under these names, and Python's
// weights.expected_weight_shapes() is this table (pytransformer._core._weight_table).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/layers.h"

namespace pt::model {

struct TransformerConfig;

namespace names {

struct Pair {  // a Linear or a LayerNorm: weight and bias
  std::string weight, bias;
};
inline Pair pair(const std::string& prefix) { return {prefix + "weight", prefix + "bias"}; }

struct Attention {  // nn.MultiheadAttention: fused in_proj [3E, E], out_proj
  std::string in_proj_weight, in_proj_bias;
  Pair out_proj;
};
Attention attention(const std::string& prefix);

struct EncoderLayer {
  Attention self_attn;
  Pair linear1, linear2, norm1, norm2;
};
struct DecoderLayer {
  Attention self_attn, cross_attn;
  Pair linear1, linear2, norm1, norm2, norm3;
};
EncoderLayer encoder_layer(int64_t i);
DecoderLayer decoder_layer(int64_t i);

struct Side {  // the embeddings of one side and the norm after its stack
  std::string embed, pos_embed, type_embed;
  Pair embed_norm, final_norm;
};
Side source();
Side target();
Pair generator();

}  // namespace names

using WeightTable = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// Every weight of a model with this config (an encoder-only model: the source side
// and the encoder), name and shape.
WeightTable weight_table(const TransformerConfig& config, bool encoder_only);

// Throws std::invalid_argument listing (up to a few of) the table's weights that are
// missing from `weights` or have another shape, and the names of `weights` the table
// does not have.
void check_weights(const WeightMap& weights, const WeightTable& table);

}  // namespace pt::model

// Multi-head attention with torch.nn.MultiheadAttention's weights, batch-first.
#pragma once

#include <cstdint>

namespace pt::model {

// query [B,Lq,E], key/value [B,Lk,E]; in_proj_weight [3E,E] (rows: Wq, Wk, Wv),
// in_proj_bias [3E] or null, out_proj_weight [E,E], out_proj_bias [E] or null;
// key_padding_mask null or uint8 [B,Lk] (nonzero = padding); out [B,Lq,E].
// E % num_heads == 0. When query, key and value are the same pointer the three
// projections run as one GEMM; when key and value are, K and V run as one.
// Weights are packed for this call only (the model packs once, at load).
void multi_head_attention(const float* query, const float* key, const float* value, int64_t B, int64_t Lq,
                          int64_t Lk, int64_t E, const float* in_proj_weight, const float* in_proj_bias,
                          const float* out_proj_weight, const float* out_proj_bias, int64_t num_heads,
                          const uint8_t* key_padding_mask, bool causal, float* out);

}  // namespace pt::model

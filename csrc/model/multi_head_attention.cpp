#include "model/multi_head_attention.h"

#include <cmath>

#include "kernels/kernels.h"
#include "runtime/aligned_buffer.h"

namespace pt::model {

void multi_head_attention(const float* query, const float* key, const float* value, int64_t B, int64_t Lq,
                          int64_t Lk, int64_t E, const float* in_proj_weight, const float* in_proj_bias,
                          const float* out_proj_weight, const float* out_proj_bias, int64_t num_heads,
                          const uint8_t* key_padding_mask, bool causal, float* out) {
  using kernels::Activation;
  using kernels::Tensor4View;
  const kernels::KernelTable& kt = kernels::active();
  const int64_t D = E / num_heads;
  const float* wq = in_proj_weight;
  const float* wk = in_proj_weight + E * E;
  const float* wv = in_proj_weight + 2 * E * E;
  const float* bq = in_proj_bias;
  const float* bk = in_proj_bias ? in_proj_bias + E : nullptr;
  const float* bv = in_proj_bias ? in_proj_bias + 2 * E : nullptr;

  // Projections into row-major [B*L, width] buffers; heads are column ranges of
  // width D, read in place by the attention kernel through strides.
  AlignedBuffer qbuf, kbuf, vbuf;
  Tensor4View qv{}, kv{}, vv{};
  if (query == key && key == value && Lq == Lk) {
    qbuf = AlignedBuffer(static_cast<size_t>(B * Lq * 3 * E));
    kt.linear(query, B * Lq, E, wq, 3 * E, bq, Activation::kNone, qbuf.data());
    qv = {qbuf.data(), Lq * 3 * E, D, 3 * E};
    kv = {qbuf.data() + E, Lq * 3 * E, D, 3 * E};
    vv = {qbuf.data() + 2 * E, Lq * 3 * E, D, 3 * E};
  } else {
    qbuf = AlignedBuffer(static_cast<size_t>(B * Lq * E));
    kt.linear(query, B * Lq, E, wq, E, bq, Activation::kNone, qbuf.data());
    qv = {qbuf.data(), Lq * E, D, E};
    if (key == value) {
      kbuf = AlignedBuffer(static_cast<size_t>(B * Lk * 2 * E));
      kt.linear(key, B * Lk, E, wk, 2 * E, bk, Activation::kNone, kbuf.data());
      kv = {kbuf.data(), Lk * 2 * E, D, 2 * E};
      vv = {kbuf.data() + E, Lk * 2 * E, D, 2 * E};
    } else {
      kbuf = AlignedBuffer(static_cast<size_t>(B * Lk * E));
      vbuf = AlignedBuffer(static_cast<size_t>(B * Lk * E));
      kt.linear(key, B * Lk, E, wk, E, bk, Activation::kNone, kbuf.data());
      kt.linear(value, B * Lk, E, wv, E, bv, Activation::kNone, vbuf.data());
      kv = {kbuf.data(), Lk * E, D, E};
      vv = {vbuf.data(), Lk * E, D, E};
    }
  }

  AlignedBuffer context(static_cast<size_t>(B * Lq * E));
  kt.attention(qv, kv, vv, context.data(), Lq * E, D, E, B, num_heads, Lq, Lk, D, D, key_padding_mask, causal, 0,
               1.0f / std::sqrt(static_cast<float>(D)));
  kt.linear(context.data(), B * Lq, E, out_proj_weight, E, out_proj_bias, Activation::kNone, out);
}

}  // namespace pt::model

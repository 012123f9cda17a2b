#include "model/layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace pt::model {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}
}  // namespace

namespace {
const WeightView& find_weight(const WeightMap& weights, const std::string& name, const std::vector<int64_t>& shape) {
  auto it = weights.find(name);
  if (it == weights.end()) throw std::invalid_argument("missing weight '" + name + "'");
  if (it->second.shape != shape)
    throw std::invalid_argument("weight '" + name + "' has shape " + shape_str(it->second.shape) + ", expected " +
                                shape_str(shape));
  return it->second;
}
}  // namespace

const float* require_weight(const WeightMap& weights, const std::string& name, const std::vector<int64_t>& shape) {
  const WeightView& v = find_weight(weights, name, shape);
  if (!v.data)
    throw std::invalid_argument("weight '" + name + "' is int8, but only the weights of linear layers and token embedding tables may be int8");
  return v.data;
}

LinearSource require_linear_weight(const WeightMap& weights, const std::string& name,
                                   const std::vector<int64_t>& shape) {
  const WeightView& v = find_weight(weights, name, shape);
  if (v.data) return {v.data, nullptr, nullptr};
  if (!v.q || !v.scale) throw std::invalid_argument("weight '" + name + "' is int8 without its scales");
  return {nullptr, v.q, v.scale};
}

void quantize_weight_rows(const float* w, int64_t N, int64_t K, int8_t* q, float* scales) {
  // The rule of the activations (Int8Kernels::quantize_rows), from the signed set of
  // the active ISA (signed rows padded to padded_k(K); the same bytes from every set);
  // a NaN scale marks a non-finite row.
  const kernels::Int8Kernels& k = kernels::int8_signed_for(kernels::active());
  const int64_t Kp = k.padded_k(K);
  std::vector<int8_t> rows(static_cast<size_t>(std::max<int64_t>(N * Kp, 1)));
  k.quantize_rows(w, N, K, rows.data(), scales);
  for (int64_t n = 0; n < N; ++n) {
    if (std::isnan(scales[n]))
      throw std::invalid_argument("cannot quantize a weight holding NaN or infinity (row " + std::to_string(n) + ")");
    std::memcpy(q + n * K, rows.data() + n * Kp, static_cast<size_t>(K));
  }
}

void dequantize_rows(const int8_t* q, const float* scale, int64_t N, int64_t K, float* out) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) out[n * K + k] = static_cast<float>(q[n * K + k]) * scale[n];
}

const int8_t* int8_rows(const LinearSource& src, int64_t N, int64_t K, std::vector<int8_t>& storage, float* scales) {
  if (!src.q) {
    storage.resize(static_cast<size_t>(std::max<int64_t>(N * K, 1)));
    quantize_weight_rows(src.w, N, K, storage.data(), scales);
    return storage.data();
  }
  for (int64_t n = 0; n < N; ++n) {
    if (!std::isfinite(src.scale[n]) || src.scale[n] < 0.0f)
      throw std::invalid_argument("an int8 weight's scale must be finite and >= 0");
    scales[n] = src.scale[n];
  }
  for (int64_t i = 0; i < N * K; ++i)
    if (src.q[i] == -128) throw std::invalid_argument("int8 weights must lie in [-127, 127] (found -128)");
  return src.q;
}

const float* float_rows(const LinearSource& src, int64_t N, int64_t K, std::vector<float>& storage) {
  if (src.w) return src.w;
  storage.resize(static_cast<size_t>(std::max<int64_t>(N * K, 1)));
  dequantize_rows(src.q, src.scale, N, K, storage.data());
  return storage.data();
}

AlignedBuffer copy_aligned(const float* src, int64_t count) {
  AlignedBuffer b(static_cast<size_t>(count));
  if (count > 0) std::memcpy(b.data(), src, static_cast<size_t>(count) * sizeof(float));
  return b;
}

namespace {
// Floats of an AlignedBuffer that holds `bytes` bytes.
size_t floats_for(int64_t bytes) { return static_cast<size_t>((bytes + 3) / 4); }
}  // namespace

Linear::Linear(const kernels::KernelTable& kt, const LinearSource& weight, const float* bias, int64_t out, int64_t in,
               ComputeType compute)
    : in_(in), out_(out), has_bias_(bias != nullptr) {
  if (bias) bias_ = copy_aligned(bias, out);
  if (compute == ComputeType::kFloat32) {
    packed_ = AlignedBuffer(static_cast<size_t>(kt.gemm_packed_size(out, in)));
    std::vector<float> storage;  // int8 in, float32 out: dequantized
    kt.gemm_pack(float_rows(weight, out, in, storage), out, in, packed_.data());
    return;
  }
  i8_ = &kernels::int8_for(kt);
  scales_ = AlignedBuffer(static_cast<size_t>(std::max<int64_t>(out, 1)));
  std::vector<int8_t> storage;  // float32 in: quantized
  const int8_t* q = int8_rows(weight, out, in, storage, scales_.data());
  packed_ = AlignedBuffer(floats_for(i8_->packed_bytes(out, in)));
  i8_->pack(q, out, in, reinterpret_cast<int8_t*>(packed_.data()));
}

void Linear::export_int8(int8_t* q, float* scales) const {
  if (!i8_) throw std::logic_error("export_int8 of a float32 Linear");
  i8_->unpack(reinterpret_cast<const int8_t*>(packed_.data()), out_, in_, q);
  std::memcpy(scales, scales_.data(), static_cast<size_t>(out_) * sizeof(float));
}

std::vector<uint8_t> key_padding_mask(const int32_t* lengths, int64_t B, int64_t S) {
  std::vector<uint8_t> mask(static_cast<size_t>(B * S), 0);
  if (lengths)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = lengths[b]; s < S; ++s) mask[static_cast<size_t>(b * S + s)] = 1;
  return mask;
}

void Linear::forward(const kernels::KernelTable& kt, const float* x, int64_t M, float* y, kernels::Activation act,
                     const float* residual) const {
  if (!i8_) {
    kt.linear_packed(x, M, in_, packed_.data(), out_, has_bias_ ? bias_.data() : nullptr, act, residual, y);
    return;
  }
  // x quantized per row into this thread's scratch (kept between calls).
  static thread_local AlignedBuffer qbuf, sbuf;
  const int64_t Kp = i8_->padded_k(in_);
  qbuf.reserve_discard(floats_for(M * Kp));
  sbuf.reserve_discard(static_cast<size_t>(std::max<int64_t>(M, 1)));
  int8_t* q = reinterpret_cast<int8_t*>(qbuf.data());
  i8_->quantize_rows(x, M, in_, q, sbuf.data());
  i8_->linear(q, sbuf.data(), M, in_, reinterpret_cast<const int8_t*>(packed_.data()), scales_.data(), out_,
              has_bias_ ? bias_.data() : nullptr, act, residual, y);
  if (qbuf.size() > (size_t{1} << 24)) qbuf.release();
}

void Linear::export_weight(const kernels::KernelTable& kt, float* weight) const {
  if (!i8_) {
    kt.gemm_unpack(packed_.data(), out_, in_, weight);
    return;
  }
  std::vector<int8_t> q(static_cast<size_t>(out_ * in_));
  i8_->unpack(reinterpret_cast<const int8_t*>(packed_.data()), out_, in_, q.data());
  dequantize_rows(q.data(), scales_.data(), out_, in_, weight);
}

LayerNorm::LayerNorm(const float* weight, const float* bias, int64_t n, float eps)
    : n_(n), eps_(eps), weight_(copy_aligned(weight, n)), bias_(copy_aligned(bias, n)) {}

void LayerNorm::forward(const kernels::KernelTable& kt, const float* x, const float* residual, float* y,
                        int64_t rows) const {
  kt.layer_norm(x, residual, weight_.data(), bias_.data(), eps_, y, rows, n_);
}

void Workspace::reserve(int64_t M, int64_t E, int64_t F) {
  x.reserve_discard(static_cast<size_t>(M * E));
  t.reserve_discard(static_cast<size_t>(M * E));
  qkv.reserve_discard(static_cast<size_t>(M * 3 * E));
  ctx.reserve_discard(static_cast<size_t>(M * E));
  hidden.reserve_discard(static_cast<size_t>(M * F));
}

size_t Workspace::bytes() const {
  return (x.size() + t.size() + qkv.size() + ctx.size() + hidden.size()) * sizeof(float);
}

WorkspaceCache::Lease::Lease(WorkspaceCache& cache, int64_t M, int64_t E, int64_t F) : cache_(cache) {
  {
    std::lock_guard<std::mutex> lock(cache_.mu_);
    ws_ = std::move(cache_.slot_);
  }
  if (!ws_) ws_ = std::make_unique<Workspace>();
  ws_->reserve(M, E, F);
}

WorkspaceCache::Lease::~Lease() {
  if (ws_->bytes() > kKeepBytes) return;  // freed here
  std::lock_guard<std::mutex> lock(cache_.mu_);
  if (!cache_.slot_ || cache_.slot_->bytes() < ws_->bytes()) cache_.slot_ = std::move(ws_);
}

}  // namespace pt::model

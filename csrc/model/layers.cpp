#include "model/layers.h"

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

const float* require_weight(const WeightMap& weights, const std::string& name, const std::vector<int64_t>& shape) {
  auto it = weights.find(name);
  if (it == weights.end()) throw std::invalid_argument("missing weight '" + name + "'");
  if (it->second.shape != shape)
    throw std::invalid_argument("weight '" + name + "' has shape " + shape_str(it->second.shape) + ", expected " +
                                shape_str(shape));
  return it->second.data;
}

AlignedBuffer copy_aligned(const float* src, int64_t count) {
  AlignedBuffer b(static_cast<size_t>(count));
  if (count > 0) std::memcpy(b.data(), src, static_cast<size_t>(count) * sizeof(float));
  return b;
}

Linear::Linear(const kernels::KernelTable& kt, const float* weight, const float* bias, int64_t out, int64_t in)
    : in_(in), out_(out), packed_(static_cast<size_t>(kt.gemm_packed_size(out, in))), has_bias_(bias != nullptr) {
  kt.gemm_pack(weight, out, in, packed_.data());
  if (bias) bias_ = copy_aligned(bias, out);
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
  kt.linear_packed(x, M, in_, packed_.data(), out_, has_bias_ ? bias_.data() : nullptr, act, residual, y);
}

void Linear::export_weight(const kernels::KernelTable& kt, float* weight) const {
  kt.gemm_unpack(packed_.data(), out_, in_, weight);
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

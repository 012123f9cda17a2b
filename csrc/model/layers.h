// Building blocks of the model: weights copied once into aligned buffers, GEMM
// weights packed for the kernel set the model was loaded under.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/aligned_buffer.h"

namespace pt::model {

using WeightSink = std::function<float*(const std::string& name, const std::vector<int64_t>& shape)>;
using Int8Sink = std::function<int8_t*(const std::string& name, const std::vector<int64_t>& shape)>;
// Where exported weights go: float32 tensors, and, when `int8` is set, the weights of
// int8 linear layers and embedding tables as stored (int8 under their name, their scales [rows] float32
// under name + kScaleSuffix). Without `int8`, int8 weights are exported dequantized.
struct WeightSinks {
  WeightSink floats;
  Int8Sink int8;
};
inline constexpr const char* kScaleSuffix = "_scale";

// How a model computes its GEMMs: float32 weights, or int8 weights with a float32
// scale per output row (symmetric) and int8 activations quantized per row at run
// time, int32 sums, the scales applied in the write-back (kernels.h, Int8Kernels).
enum class ComputeType : int { kFloat32 = 0, kInt8 = 1 };

// A weight handed over by the caller: borrowed for the duration of the load. Either
// float32 (data), or, for a GEMM weight [out, in] or a token embedding table [vocab, E]
// stored int8, q (int8) and
// scale [out] (q * scale[row] is the weight).
struct WeightView {
  const float* data = nullptr;
  std::vector<int64_t> shape;
  const int8_t* q = nullptr;
  const float* scale = nullptr;
};
using WeightMap = std::unordered_map<std::string, WeightView>;

// The named weight with exactly this shape; throws std::invalid_argument otherwise
// (also when it is stored int8: only GEMM weights and token embedding tables may be).
const float* require_weight(const WeightMap& weights, const std::string& name, const std::vector<int64_t>& shape);

// A GEMM weight [out, in] as given: float32 (w) or int8 with per-row scales (q, scale).
struct LinearSource {
  const float* w = nullptr;
  const int8_t* q = nullptr;
  const float* scale = nullptr;
  // Rows [r, ...) of a [*, in] matrix.
  LinearSource rows_from(int64_t r, int64_t in) const {
    return {w ? w + r * in : nullptr, q ? q + r * in : nullptr, scale ? scale + r : nullptr};
  }
};
// The named GEMM weight with exactly this shape, float32 or int8.
LinearSource require_linear_weight(const WeightMap& weights, const std::string& name,
                                   const std::vector<int64_t>& shape);

// Symmetric per-row int8 of w [N,K]: scale[n] = max|w[n,:]| / 127 and
// q = round-to-nearest-even(w * (127 / max|w[n,:]|)) in [-127, 127]; a row of zeros
// (or below 1e-30) gets scale 0 and q = 0. Throws std::invalid_argument for a
// non-finite weight.
void quantize_weight_rows(const float* w, int64_t N, int64_t K, int8_t* q, float* scales);

// out [N,K] = q [N,K] * scale[n] (an int8 weight as float32).
void dequantize_rows(const int8_t* q, const float* scale, int64_t N, int64_t K, float* out);

// A [N,K] weight as int8 rows + scales [N]: its own q when it comes int8 (checked:
// scales finite and >= 0, no -128; the scales copied), else quantized per row into
// `storage`. Returns the int8 rows.
const int8_t* int8_rows(const LinearSource& src, int64_t N, int64_t K, std::vector<int8_t>& storage, float* scales);

// A [N,K] weight as float32 rows: its own w, else dequantized into `storage`.
const float* float_rows(const LinearSource& src, int64_t N, int64_t K, std::vector<float>& storage);

// y [M,out] = act(x [M,in] @ W^T + b) (+ residual [M,out]); W stored [out,in] as nn.Linear.
// float32 (W packed for the kernel set), or int8 (W quantized per row, or taken as
// given when it comes int8, packed for the int8 set that goes with the kernel set).
class Linear {
 public:
  Linear() = default;
  // weight [out, in] (rows [row_begin, row_begin + out) of a larger matrix allowed
  // through `weight` already offset), bias [out] or null.
  Linear(const kernels::KernelTable& kt, const float* weight, const float* bias, int64_t out, int64_t in)
      : Linear(kt, LinearSource{weight, nullptr, nullptr}, bias, out, in, ComputeType::kFloat32) {}
  // From float32 or int8 weights, computing in `compute` (an int8 weight is
  // dequantized for float32; a float32 one quantized for int8).
  Linear(const kernels::KernelTable& kt, const LinearSource& weight, const float* bias, int64_t out, int64_t in,
         ComputeType compute);
  ComputeType compute_type() const { return i8_ ? ComputeType::kInt8 : ComputeType::kFloat32; }
  // int8 only: the weight as stored, q [out, in] and scales [out].
  void export_int8(int8_t* q, float* scales) const;
  void forward(const kernels::KernelTable& kt, const float* x, int64_t M, float* y,
               kernels::Activation act = kernels::Activation::kNone, const float* residual = nullptr) const;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool has_bias() const { return has_bias_; }
  // The weight [out, in] as given at construction (an exact copy; int8: q * scale).
  void export_weight(const kernels::KernelTable& kt, float* weight) const;
  const float* bias() const { return has_bias_ ? bias_.data() : nullptr; }

 private:
  int64_t in_ = 0, out_ = 0;
  AlignedBuffer packed_;  // float32 panels, or the int8 set's packed bytes
  AlignedBuffer scales_;  // int8: [out]
  const kernels::Int8Kernels* i8_ = nullptr;  // int8: the set packed_ is for
  AlignedBuffer bias_;
  bool has_bias_ = false;
};

// y = LN(x + residual) * weight + bias over rows of n.
class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(const float* weight, const float* bias, int64_t n, float eps);
  void forward(const kernels::KernelTable& kt, const float* x, const float* residual, float* y, int64_t rows) const;
  const float* weight() const { return weight_.data(); }
  const float* bias() const { return bias_.data(); }
  int64_t size() const { return n_; }

 private:
  int64_t n_ = 0;
  float eps_ = 1e-5f;
  AlignedBuffer weight_, bias_;
};

// Copy of `count` floats into a new aligned buffer.
AlignedBuffer copy_aligned(const float* src, int64_t count);

// Key padding mask [B, S] of the attention kernels: 1 at positions s >= lengths[b]
// (padding), 0 elsewhere; all 0 when lengths is null.
std::vector<uint8_t> key_padding_mask(const int32_t* lengths, int64_t B, int64_t S);

// Scratch of one forward pass of a layer stack over M rows: the residual stream x,
// a second stream t, the fused projections qkv, the attention output ctx and the
// feed-forward hidden layer.
struct Workspace {
  AlignedBuffer x, t, qkv, ctx, hidden;
  // Grows the buffers to M rows (keeps them when already large enough).
  void reserve(int64_t M, int64_t E, int64_t F);
  size_t bytes() const;
};

// Keeps one Workspace between forward passes, so that repeated calls do not map,
// fault in and zero tens of MB of fresh pages each time (~3% of a 2-thread MiniLM
// batch of 32 x 128). One caller at a time uses it; a concurrent caller gets a new
// one. The largest recently used is kept, up to kKeepBytes.
class WorkspaceCache {
 public:
  static constexpr size_t kKeepBytes = size_t{256} << 20;

  // The workspace of one forward pass, returned to the cache when it goes out of scope.
  class Lease {
   public:
    Lease(WorkspaceCache& cache, int64_t M, int64_t E, int64_t F);
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Workspace& operator*() const { return *ws_; }
    Workspace* operator->() const { return ws_.get(); }

   private:
    WorkspaceCache& cache_;
    std::unique_ptr<Workspace> ws_;
  };

 private:
  std::mutex mu_;
  std::unique_ptr<Workspace> slot_;
};

}  // namespace pt::model

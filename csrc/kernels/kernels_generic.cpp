// Portable kernels: plain C++17 with no instruction-set flags, for any CPU.
// Also the reference the SIMD builds are tested against (PYTRANSFORMER_ISA=generic).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "kernels/kernels.h"
#include "runtime/aligned_buffer.h"
#include "runtime/cpu_features.h"
#include "runtime/parallel.h"

namespace pt::kernels::generic {

#include "kernels/simd_generic.h"
#include "kernels/simd_math.h"

constexpr int kGemmMR = 4;
constexpr int kGemmNV = 2;
constexpr int kSkinnyMB = 2;
constexpr int kSkinnyNB(int /*mb*/) { return 4; }  // W rows per block
constexpr int64_t kSkinnyMaxRows = 16;
constexpr int kAttnBq = 32, kAttnRB = 2;

#include "kernels/gemm_impl.h"
#include "kernels/rowwise_impl.h"
#include "kernels/attention_impl.h"

constexpr int kI8MR = 4, kI8NV = 2;  // int8 register tile: 4 rows x 2 vectors of int32
#include "kernels/int8_generic.h"
#include "kernels/int8_impl.h"

}  // namespace pt::kernels::generic

namespace pt::kernels {

const KernelTable& table_generic() {
  static const KernelTable table = {
      "generic",
      &generic::gemm_packed_size,
      &generic::gemm_pack,
      &generic::gemm_unpack,
      &generic::linear_packed,
      &generic::linear,
      &generic::softmax,
      &generic::log_softmax,
      &generic::layer_norm,
      &generic::embed,
      &generic::relu_op,
      &generic::gelu_op,
      &generic::silu_op,
      generic::kAttnBk,
      &generic::attention,
      &generic::gemm_blocking_info,
  };
  return table;
}

const Int8Kernels& int8_generic() {
  static const Int8Kernels table = PT_I8_TABLE(generic, "generic");
  return table;
}

}  // namespace pt::kernels

// AVX2 + FMA kernels. Built with -mavx2 -mfma; reached only through table_avx2(),
// which dispatch.cpp hands out only when the CPU and OS support AVX2 and FMA.
#include <immintrin.h>
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

namespace pt::kernels::avx2 {

#include "kernels/simd_avx2.h"
#include "kernels/transpose_x86.h"
#include "kernels/simd_math.h"

constexpr int kGemmMR = 6;            // 6 x 16 register tile: 12 accumulators of 16 ymm
constexpr int kGemmNV = 2;
constexpr int kSkinnyMB = 2;
constexpr int kSkinnyNB(int mb) { return mb == 1 ? 6 : 4; }  // W rows per block
constexpr int64_t kSkinnyMaxRows = 16;
constexpr int kAttnBq = 32, kAttnRB = 3;

#include "kernels/gemm_impl.h"
#include "kernels/rowwise_impl.h"
#include "kernels/attention_impl.h"

constexpr int kI8MR = 4, kI8NV = 2;  // int8 register tile: 4 rows x 2 vectors of int32
#include "kernels/int8_avx2.h"
#include "kernels/int8_impl.h"

}  // namespace pt::kernels::avx2

namespace pt::kernels {

const KernelTable& table_avx2() {
  static const KernelTable table = {
      "avx2",
      &avx2::gemm_packed_size,
      &avx2::gemm_pack,
      &avx2::gemm_unpack,
      &avx2::linear_packed,
      &avx2::linear,
      &avx2::softmax,
      &avx2::log_softmax,
      &avx2::layer_norm,
      &avx2::embed,
      &avx2::relu_op,
      &avx2::gelu_op,
      &avx2::silu_op,
      avx2::kAttnBk,
      &avx2::attention,
      &avx2::gemm_blocking_info,
  };
  return table;
}

const Int8Kernels& int8_avx2() {
  static const Int8Kernels table = PT_I8_TABLE(avx2, "avx2");
  return table;
}

}  // namespace pt::kernels

// AVX-512 (F/DQ/BW/VL) kernels. Built with -mavx512f -mavx512dq -mavx512bw -mavx512vl;
// reached only through table_avx512(), which dispatch.cpp hands out only when the
// CPU and OS support AVX-512.
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

namespace pt::kernels::avx512 {

#include "kernels/simd_avx512.h"
#include "kernels/transpose_x86.h"
#include "kernels/simd_math.h"

constexpr int kGemmMR = 12;           // 12 x 32 register tile: 24 accumulators of 32 zmm
constexpr int kGemmNV = 2;
constexpr int kSkinnyMB = 4;
constexpr int kSkinnyNB(int /*mb*/) { return 4; }  // W rows per block
constexpr int64_t kSkinnyMaxRows = 16;
constexpr int kAttnBq = 32, kAttnRB = 4;

#include "kernels/gemm_impl.h"
#include "kernels/rowwise_impl.h"
#include "kernels/attention_impl.h"

constexpr int kI8MR = 12, kI8NV = 2;  // int8 register tile: 12 rows x 2 vectors of int32
#include "kernels/int8_avx512.h"
#include "kernels/int8_impl.h"

}  // namespace pt::kernels::avx512

namespace pt::kernels {

const KernelTable& table_avx512() {
  static const KernelTable table = {
      "avx512",
      &avx512::gemm_packed_size,
      &avx512::gemm_pack,
      &avx512::gemm_unpack,
      &avx512::linear_packed,
      &avx512::linear,
      &avx512::softmax,
      &avx512::log_softmax,
      &avx512::layer_norm,
      &avx512::embed,
      &avx512::relu_op,
      &avx512::gelu_op,
      &avx512::silu_op,
      avx512::kAttnBk,
      &avx512::attention,
      &avx512::gemm_blocking_info,
  };
  return table;
}

const Int8Kernels& int8_avx512() {
  static const Int8Kernels table = PT_I8_TABLE(avx512, "avx512");
  return table;
}

}  // namespace pt::kernels

// int8 kernels with VNNI (vpdpbusd), AVX-VNNI on AVX2 CPUs: the int8 part of the
// avx2 set only, built with the avx2 flags plus -mavxvnni; reached only through
// int8_avx2_vnni(), which dispatch.cpp hands out only when the CPU has VNNI.
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

#define PT_I8_VNNI 1

namespace pt::kernels::avx2::vnni {

#include "kernels/simd_avx2.h"
#include "kernels/simd_math.h"

constexpr int kI8MR = 4, kI8NV = 2;
#include "kernels/int8_avx2.h"
#include "kernels/int8_impl.h"

}  // namespace pt::kernels::avx2::vnni

namespace pt::kernels {

const Int8Kernels& int8_avx2_vnni() {
  static const Int8Kernels table = PT_I8_TABLE(avx2::vnni, "avx2_vnni");
  return table;
}

}  // namespace pt::kernels

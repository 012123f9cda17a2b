// int8 kernels with VNNI (vpdpbusd), AVX512-VNNI: the int8 part of the
// avx512 set only, built with the avx512 flags plus -mavx512vnni; reached only through
// int8_avx512_vnni(), which dispatch.cpp hands out only when the CPU has VNNI.
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

namespace pt::kernels::avx512::vnni {

#include "kernels/simd_avx512.h"
#include "kernels/simd_math.h"

constexpr int kI8MR = 12, kI8NV = 2;
#include "kernels/int8_avx512.h"
#include "kernels/int8_impl.h"

}  // namespace pt::kernels::avx512::vnni

namespace pt::kernels {

const Int8Kernels& int8_avx512_vnni() {
  static const Int8Kernels table = PT_I8_TABLE(avx512::vnni, "avx512_vnni");
  return table;
}

}  // namespace pt::kernels

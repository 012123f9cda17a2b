// Small in-register transposes for packing GEMM operands (AVX, 8-float registers).
// Included inside the AVX2 and AVX-512 ISA namespaces.
#pragma once

// dst[c*ldd + r] = src[r*lds + c] for an 8x8 block.
static inline void transpose_8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * lds), r1 = _mm256_loadu_ps(src + 1 * lds);
  __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// dst[c*ldd + r] = src[r*lds + c] for a 4-row x 8-column block.
static inline void transpose_4x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * lds), r1 = _mm256_loadu_ps(src + 1 * lds);
  __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  _mm_storeu_ps(dst + 0 * ldd, _mm256_castps256_ps128(u0));
  _mm_storeu_ps(dst + 1 * ldd, _mm256_castps256_ps128(u1));
  _mm_storeu_ps(dst + 2 * ldd, _mm256_castps256_ps128(u2));
  _mm_storeu_ps(dst + 3 * ldd, _mm256_castps256_ps128(u3));
  _mm_storeu_ps(dst + 4 * ldd, _mm256_extractf128_ps(u0, 1));
  _mm_storeu_ps(dst + 5 * ldd, _mm256_extractf128_ps(u1, 1));
  _mm_storeu_ps(dst + 6 * ldd, _mm256_extractf128_ps(u2, 1));
  _mm_storeu_ps(dst + 7 * ldd, _mm256_extractf128_ps(u3, 1));
}

// dst[c*ldd + r] = src[r*lds + c] for a 2-row x 8-column block: 8 pairs, stored as
// 64-bit halves (the AVX2 tile's 6 rows are a 4-row and a 2-row block).
static inline void transpose_2x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds);
  const __m256 lo = _mm256_unpacklo_ps(r0, r1), hi = _mm256_unpackhi_ps(r0, r1);  // pairs 0 1 4 5, 2 3 6 7
  const __m128 lo0 = _mm256_castps256_ps128(lo), lo1 = _mm256_extractf128_ps(lo, 1);
  const __m128 hi0 = _mm256_castps256_ps128(hi), hi1 = _mm256_extractf128_ps(hi, 1);
  _mm_storel_pi(reinterpret_cast<__m64*>(dst + 0 * ldd), lo0);
  _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 1 * ldd), lo0);
  _mm_storel_pi(reinterpret_cast<__m64*>(dst + 2 * ldd), hi0);
  _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 3 * ldd), hi0);
  _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4 * ldd), lo1);
  _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 5 * ldd), lo1);
  _mm_storel_pi(reinterpret_cast<__m64*>(dst + 6 * ldd), hi1);
  _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 7 * ldd), hi1);
}

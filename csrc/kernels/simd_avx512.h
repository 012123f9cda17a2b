// Vector primitives, AVX-512 (F/DQ/BW/VL): 16 floats per register.
// Included only by kernels_avx512.cpp, inside its ISA namespace.
#pragma once
// (<immintrin.h> is included by the translation unit, outside any namespace.)

struct Vec {
  using F = __m512;
  using Mask = __mmask16;
  static constexpr int W = 16;

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  // Lanes [0, n); n <= 0 gives none, n >= 16 all.
  static Mask first_n(int n) { return static_cast<Mask>(n >= 16 ? 0xffff : n <= 0 ? 0 : ((1u << n) - 1u)); }
  // First n lanes from p (n <= 0: none, n >= W: all), the rest zero; lanes past n
  // are never touched.
  static F load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(first_n(n), p); }
  static void store_n(float* p, F v, int n) { _mm512_mask_storeu_ps(p, first_n(n), v); }

  static F iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  // a*b + c with the fastest rounding this ISA has (here: fused).
  static F muladd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }

  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  // 1 / a within ~1 ulp (not always the correctly rounded quotient) for normal a:
  // rcp14 (relative error < 2^-14) and one Newton step, ~4x cheaper than div here.
  static F recip(F a) {
    const F r = _mm512_rcp14_ps(a);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(a, r, _mm512_set1_ps(1.0f)), r);
  }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c, one rounding
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b, one rounding
  static F fmsub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }    // a*b - c, one rounding
  // max/min return the second operand when either is NaN (x86 semantics).
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F abs(F a) { return _mm512_abs_ps(a); }
  static F round(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

  static Mask lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static Mask gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static Mask ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static Mask isnan(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static Mask mask_or(Mask a, Mask b) { return static_cast<Mask>(a | b); }
  static F select(Mask m, F if_true, F if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }

  // 2^n for integral n in [-126, 127] given as floats.
  static F pow2(F n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }

  static float lane0(F v) { return _mm512_cvtss_f32(v); }
  static float hsum(F v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
  }
  static float hmax(F v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_max_ps(lo, hi);
    __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_max_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
  }
};

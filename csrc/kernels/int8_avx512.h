// int8 primitives of int8_impl.h, AVX-512 (BW): 16 int32 lanes per register.
// With PT_I8_VNNI (a translation unit built with -mavx512vnni): vpdpbusd, u8 x s8
// products summed 4 at a time into int32 (activations kept as u8 = q + 128).
// Without: the sign trick, |a| (u8) x sign(b, a) (s8) with vpmaddubsw, whose int16
// pair sums stay within 2 * 127 * 127 < 32767 (q in [-127, 127]: no saturation),
// widened and summed by vpmaddwd against ones; |a| is read from a copy of x's rows
// made once per product (kAbsA), not recomputed for every panel.
// Included inside an ISA namespace after simd_avx512.h.
#pragma once

struct I8 {
  using Acc = __m512i;
  using B = __m512i;
#ifdef PT_I8_VNNI
  static constexpr bool kUnsignedA = true, kAbsA = false;
  struct A {
    __m512i v;
  };
#else
  static constexpr bool kUnsignedA = false, kAbsA = true;
  struct A {
    __m512i abs;
    __mmask64 neg;
  };
#endif

  static Acc zero() { return _mm512_setzero_si512(); }
  static B loadb(const int8_t* p) { return _mm512_loadu_si512(p); }
  static __m512i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
  }
  // 4 consecutive k of a row of x (p), and of its |x| copy (pa; kAbsA only).
  static A bcast(const int8_t* p, [[maybe_unused]] const int8_t* pa) {
#ifdef PT_I8_VNNI
    return A{bcast4(p)};
#else
    return A{bcast4(pa), _mm512_movepi8_mask(bcast4(p))};
#endif
  }
  static Acc dot(Acc acc, const A& a, B b) {
#ifdef PT_I8_VNNI
    // In place, by hand: GCC 12 does not tie _mm512_dpbusd_epi32's accumulator to
    // its destination in the 12 x 2 tile and copied ~2.75 registers per vpdpbusd.
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a.v), "v"(b));
    return acc;
#else
    const __m512i sb = _mm512_mask_sub_epi8(b, a.neg, _mm512_setzero_si512(), b);
    const __m512i p16 = _mm512_maddubs_epi16(a.abs, sb);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(p16, _mm512_set1_epi16(1)));
#endif
  }
  static Acc sub(Acc a, Acc b) { return _mm512_sub_epi32(a, b); }
  static Acc shl7(Acc a) { return _mm512_slli_epi32(a, 7); }
  static Acc load(const int32_t* p) { return _mm512_loadu_si512(p); }
  static Acc load_n(const int32_t* p, int n) { return _mm512_maskz_loadu_epi32(Vec::first_n(n), p); }
  static void store(int32_t* p, Acc v) { _mm512_storeu_si512(p, v); }
  static void store_n(int32_t* p, Acc v, int n) { _mm512_mask_storeu_epi32(p, Vec::first_n(n), v); }
  static Vec::F to_float(Acc a) { return _mm512_cvtepi32_ps(a); }
  // n (<= 16) floats x * inv -> int8, rounded to nearest even, clamped to [-127, 127].
  static void quantize(const float* x, float inv, int8_t* out, int n) {
    const __m512 v = _mm512_mul_ps(Vec::load_n(x, n), _mm512_set1_ps(inv));
    __m512i i = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f)));
    if (kUnsignedA) i = _mm512_add_epi32(i, _mm512_set1_epi32(128));
    _mm_mask_storeu_epi8(out, Vec::first_n(n), _mm512_cvtepi32_epi8(i));
  }
};

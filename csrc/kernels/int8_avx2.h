// int8 primitives of int8_impl.h, AVX2: 8 int32 lanes per register.
// With PT_I8_VNNI (a translation unit built with -mavxvnni): AVX-VNNI vpdpbusd, u8 x s8
// products summed 4 at a time into int32 (activations kept as u8 = q + 128).
// Without: the sign trick, |a| (u8) x sign(b, a) (s8) with vpmaddubsw, whose int16
// pair sums stay within 2 * 127 * 127 < 32767 (q in [-127, 127]: no saturation),
// widened and summed by vpmaddwd against ones; |a| is read from a copy of x's rows
// made once per product (kAbsA), not recomputed for every panel.
// Included inside an ISA namespace after simd_avx2.h.
#pragma once

struct I8 {
  using Acc = __m256i;
  using B = __m256i;
#ifdef PT_I8_VNNI
  static constexpr bool kUnsignedA = true, kAbsA = false;
  struct A {
    __m256i v;
  };
#else
  static constexpr bool kUnsignedA = false, kAbsA = true;
  struct A {
    __m256i abs, sign;
  };
#endif

  static Acc zero() { return _mm256_setzero_si256(); }
  static B loadb(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static __m256i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
  }
  // 4 consecutive k of a row of x (p), and of its |x| copy (pa; kAbsA only).
  static A bcast(const int8_t* p, [[maybe_unused]] const int8_t* pa) {
#ifdef PT_I8_VNNI
    return A{bcast4(p)};
#else
    return A{bcast4(pa), bcast4(p)};
#endif
  }
  static Acc dot(Acc acc, const A& a, B b) {
#ifdef PT_I8_VNNI
    // In place, by hand (as int8_avx512.h): GCC copies the accumulator otherwise.
    // AVX-VNNI is VEX-encoded: ymm0-15 only ("x").
    asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a.v), "x"(b));
    return acc;
#else
    const __m256i p16 = _mm256_maddubs_epi16(a.abs, _mm256_sign_epi8(b, a.sign));
    const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    // The sum in place, by hand: GCC otherwise adds into a new register and copies
    // it back (and spills), ~10 extra instructions per 8 dot steps of the 4 x 2 tile.
    asm("vpaddd %1, %0, %0" : "+x"(acc) : "x"(p32));
    return acc;
#endif
  }
  static Acc sub(Acc a, Acc b) { return _mm256_sub_epi32(a, b); }
  static Acc shl7(Acc a) { return _mm256_slli_epi32(a, 7); }
  static Acc load(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static Acc load_n(const int32_t* p, int n) { return _mm256_maskload_epi32(p, Vec::first_n(n)); }
  static void store(int32_t* p, Acc v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static void store_n(int32_t* p, Acc v, int n) { _mm256_maskstore_epi32(p, Vec::first_n(n), v); }
  static Vec::F to_float(Acc a) { return _mm256_cvtepi32_ps(a); }
  // n (<= 8) floats x * inv -> int8, rounded to nearest even, clamped to [-127, 127].
  static void quantize(const float* x, float inv, int8_t* out, int n) {
    const __m256 v = _mm256_mul_ps(Vec::load_n(x, n), _mm256_set1_ps(inv));
    __m256i i = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f)));
    if (kUnsignedA) i = _mm256_add_epi32(i, _mm256_set1_epi32(128));
    alignas(32) int32_t t[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), i);
    for (int j = 0; j < n && j < 8; ++j) out[j] = static_cast<int8_t>(t[j]);
  }
};

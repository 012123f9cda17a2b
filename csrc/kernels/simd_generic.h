// Vector primitives, portable C++: a 4-float struct the compiler may map to
// SSE2 (the x86-64 baseline) or NEON. Same interface as simd_avx2.h.
// Included only by kernels_generic.cpp, inside its ISA namespace.
#pragma once

struct Vec {
  struct F {
    float v[4];
  };
  struct Mask {
    bool v[4];
  };
  static constexpr int W = 4;

  template <class Op>
  static F map(F a, Op op) {
    F r;
    for (int i = 0; i < W; ++i) r.v[i] = op(a.v[i]);
    return r;
  }
  template <class Op>
  static F zip(F a, F b, Op op) {
    F r;
    for (int i = 0; i < W; ++i) r.v[i] = op(a.v[i], b.v[i]);
    return r;
  }
  template <class Op>
  static Mask cmp(F a, F b, Op op) {
    Mask r;
    for (int i = 0; i < W; ++i) r.v[i] = op(a.v[i], b.v[i]);
    return r;
  }
  // Fused multiply-add in float via double: a*b is exact in double, so only the
  // add rounds twice (to double, then to float); off by at most 1 ulp from fmaf.
  static float fma1(float a, float b, float c) {
    return static_cast<float>(static_cast<double>(a) * static_cast<double>(b) + static_cast<double>(c));
  }

  static F zero() { return set1(0.0f); }
  static F set1(float x) { return F{{x, x, x, x}}; }
  static F load(const float* p) { return F{{p[0], p[1], p[2], p[3]}}; }
  static void store(float* p, F a) {
    for (int i = 0; i < W; ++i) p[i] = a.v[i];
  }
  static F load_n(const float* p, int n) {
    F r = zero();
    for (int i = 0; i < n && i < W; ++i) r.v[i] = p[i];
    return r;
  }
  static void store_n(float* p, F a, int n) {
    for (int i = 0; i < n && i < W; ++i) p[i] = a.v[i];
  }

  static F iota() { return F{{0.0f, 1.0f, 2.0f, 3.0f}}; }
  // a*b + c with the fastest rounding this ISA has (here: two roundings; fmadd
  // above is exact but emulated, too slow for GEMM).
  static F muladd(F a, F b, F c) { return add(mul(a, b), c); }

  static F add(F a, F b) { return zip(a, b, [](float x, float y) { return x + y; }); }
  static F sub(F a, F b) { return zip(a, b, [](float x, float y) { return x - y; }); }
  static F mul(F a, F b) { return zip(a, b, [](float x, float y) { return x * y; }); }
  static F div(F a, F b) { return zip(a, b, [](float x, float y) { return x / y; }); }
  static F recip(F a) { return div(set1(1.0f), a); }  // 1 / a, correctly rounded
  static F fmadd(F a, F b, F c) {
    F r;
    for (int i = 0; i < W; ++i) r.v[i] = fma1(a.v[i], b.v[i], c.v[i]);
    return r;
  }
  static F fnmadd(F a, F b, F c) {
    F r;
    for (int i = 0; i < W; ++i) r.v[i] = fma1(-a.v[i], b.v[i], c.v[i]);
    return r;
  }
  static F fmsub(F a, F b, F c) {
    F r;
    for (int i = 0; i < W; ++i) r.v[i] = fma1(a.v[i], b.v[i], -c.v[i]);
    return r;
  }
  // Same NaN rule as x86 max/min: the second operand wins when either is NaN.
  static F max(F a, F b) { return zip(a, b, [](float x, float y) { return x > y ? x : y; }); }
  static F min(F a, F b) { return zip(a, b, [](float x, float y) { return x < y ? x : y; }); }
  static F abs(F a) { return map(a, [](float x) { return x < 0.0f || (x == 0.0f && std::signbit(x)) ? -x : x; }); }
  static F round(F a) { return map(a, [](float x) { return std::nearbyint(x); }); }

  static Mask lt(F a, F b) { return cmp(a, b, [](float x, float y) { return x < y; }); }
  static Mask gt(F a, F b) { return cmp(a, b, [](float x, float y) { return x > y; }); }
  static Mask ge(F a, F b) { return cmp(a, b, [](float x, float y) { return x >= y; }); }
  static Mask isnan(F a) { return cmp(a, a, [](float x, float y) { return x != y; }); }
  static Mask mask_or(Mask a, Mask b) {
    Mask r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] || b.v[i];
    return r;
  }
  static F select(Mask m, F if_true, F if_false) {
    F r;
    for (int i = 0; i < W; ++i) r.v[i] = m.v[i] ? if_true.v[i] : if_false.v[i];
    return r;
  }
  static F pow2(F n) {
    return map(n, [](float x) {
      std::uint32_t bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(x) + 127) << 23;
      float r;
      std::memcpy(&r, &bits, sizeof r);
      return r;
    });
  }
  static float lane0(F a) { return a.v[0]; }
  static float hsum(F a) { return (a.v[0] + a.v[2]) + (a.v[1] + a.v[3]); }
  static float hmax(F a) {
    float m01 = a.v[0] > a.v[1] ? a.v[0] : a.v[1];
    float m23 = a.v[2] > a.v[3] ? a.v[2] : a.v[3];
    return m01 > m23 ? m01 : m23;
  }
};

// dst[c*ldd + r] = src[r*lds + c] for an 8x8, a 4-row and a 2-row x 8-column block.
static inline void transpose_8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 8; ++c) dst[c * ldd + r] = src[r * lds + c];
}
static inline void transpose_4x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 8; ++c) dst[c * ldd + r] = src[r * lds + c];
}
static inline void transpose_2x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 8; ++c) dst[c * ldd + r] = src[r * lds + c];
}

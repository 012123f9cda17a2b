// Vectorised exp and gelu over the Vec primitives of the including ISA.
// Included inside an ISA namespace, after simd_<isa>.h.
#pragma once

// mult * e^(a + b), where b is a small correction (|b| <~ 2) to a large a. Range reduction
// (a + b = n ln2 + r) subtracts n ln2 from a alone, in two exact-ish steps
// (Cody-Waite), then adds b, so the rounding of a + b never reaches the result.
// Relative error ~2 ulp. a + b > 88.7228 gives +inf; NaN gives NaN. Results below
// FLT_MIN (a + b < -87.3365) are denormal when kDenormals, else flushed to 0 (the
// cheap choice for softmax, where such terms vanish next to the maximum's 1 and
// producing denormals can cost a microcode assist per lane). `mult` (|mult| <= 256)
// is applied before the last scaling step, so a denormal e^(a+b) times a factor
// keeps its full precision when the product is representable.
template <bool kDenormals>
inline Vec::F exp_sum(Vec::F a, Vec::F b, Vec::F mult) {
  using V = Vec;
  // ln(FLT_MIN); or, with denormals, ln(2^-158): below e^(a+b) * |mult| rounds to 0
  // for any |mult| <= 2^8.
  const V::F lo = V::set1(kDenormals ? -109.5174f : -87.33654f);
  const V::F hi = V::set1(88.72283f);                                // ln(FLT_MAX)
  const V::F s = V::add(a, b);
  const V::F sc = V::min(V::max(s, lo), hi);  // finite even when s is NaN
  const V::F n = V::round(V::mul(sc, V::set1(1.44269504088896341f)));
  V::F r = V::fnmadd(n, V::set1(0.693359375f), a);  // ln2 = 0.693359375 - 2.12194440e-4
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  r = V::add(r, b);
  // e^r on |r| <= ~0.35: Taylor series to degree 7 (truncation < 6e-9 relative).
  V::F p = V::set1(1.0f / 5040.0f);
  p = V::fmadd(p, r, V::set1(1.0f / 720.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 120.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 24.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 6.0f));
  p = V::fmadd(p, r, V::set1(0.5f));
  p = V::fmadd(p, r, V::set1(1.0f));
  p = V::fmadd(p, r, V::set1(1.0f));
  // 2^n as a float exists for n in [-126, 127]; n is in [-158, 128]. Beyond the
  // top, scale by 2^127 then 2; below the bottom, by 2^(n+64) then 2^-64 (one
  // rounding, into the denormal range).
  const V::F n_max = V::set1(127.0f);
  V::F res;
  if constexpr (kDenormals) {
    const V::Mask tiny = V::lt(n, V::set1(-126.0f));
    const V::F n_adj = V::select(tiny, V::add(n, V::set1(64.0f)), V::min(n, n_max));
    const V::F extra = V::select(tiny, V::set1(5.42101086e-20f) /* 2^-64 */,
                                 V::select(V::gt(n, n_max), V::set1(2.0f), V::set1(1.0f)));
    res = V::mul(V::mul(V::mul(p, mult), V::pow2(n_adj)), extra);
  } else {
    res = V::mul(V::mul(p, mult), V::pow2(V::min(n, n_max)));
    res = V::mul(res, V::select(V::gt(n, n_max), V::set1(2.0f), V::set1(1.0f)));
  }
  res = V::select(V::gt(s, hi), V::mul(mult, V::set1(__builtin_inff())), res);
  res = V::select(V::lt(s, lo), V::zero(), res);
  return V::select(V::isnan(s), s, res);
}

// e^x, flushing results below FLT_MIN to zero.
inline Vec::F exp(Vec::F x) { return exp_sum<false>(x, Vec::zero(), Vec::set1(1.0f)); }

// gelu(x) = x * Phi(x) = 0.5 x erfc(-x / sqrt 2), the exact (erf) form.
//
// With s = |x|: erfc(s / sqrt 2) = t exp(-s^2/2 + g(t)), t = 1 / (1 + 0.35 s),
// g a degree-11 polynomial fitted by tools/fit_erfc.py (error ~3e-9). s^2 is split
// exactly into hi + lo with an fma, and exp_sum keeps -hi/2 apart from the small
// terms, so the tail (x << 0, where gelu is tiny) keeps full relative accuracy.
// x >= 0: gelu = x (1 - erfc/2); x < 0: gelu = x erfc/2. No cancellation either way,
// and for x < 0 the factor x t / 2 goes inside exp_sum, ahead of any denormal scaling.
inline Vec::F gelu(Vec::F x) {
  using V = Vec;
  const V::F s = V::min(V::abs(x), V::set1(15.0f));  // gelu(-15) underflows to -0; NaN -> 15
  const V::F t = V::recip(V::fmadd(s, V::set1(0.35f), V::set1(1.0f)));  // in [0.16, 1]
  V::F g = V::set1(-9.190325898e-02f);
  g = V::fmadd(g, t, V::set1(4.578432425e-01f));
  g = V::fmadd(g, t, V::set1(-7.524812019e-01f));
  g = V::fmadd(g, t, V::set1(7.294270655e-02f));
  g = V::fmadd(g, t, V::set1(1.223984154e+00f));
  g = V::fmadd(g, t, V::set1(-1.445112750e+00f));
  g = V::fmadd(g, t, V::set1(6.560179016e-01f));
  g = V::fmadd(g, t, V::set1(-3.700992473e-01f));
  g = V::fmadd(g, t, V::set1(1.559643584e-01f));
  g = V::fmadd(g, t, V::set1(3.676774088e-01f));
  g = V::fmadd(g, t, V::set1(1.000808963e+00f));
  g = V::fmadd(g, t, V::set1(-1.275642280e+00f));
  const V::F sq_hi = V::mul(s, s);
  const V::F sq_lo = V::fmsub(s, s, sq_hi);  // s*s - sq_hi, exact
  const V::F half = V::set1(0.5f);
  const V::Mask positive = V::ge(x, V::zero());
  const V::F half_t = V::mul(t, half);
  // x >= 0: erfc/2; x < 0: x erfc/2 = gelu(x).
  const V::F e = exp_sum<true>(V::mul(sq_hi, V::set1(-0.5f)), V::fnmadd(sq_lo, half, g),
                               V::select(positive, half_t, V::mul(half_t, x)));
  return V::select(positive, V::mul(x, V::sub(V::set1(1.0f), e)), V::select(V::isnan(x), x, e));
}

// silu(x) = x * sigmoid(x). With e = exp(-|x|) (never overflows): x / (1 + e) for
// x >= 0 and x e / (1 + e) for x < 0, where x e is formed inside exp_sum so that the
// tail (x << 0, down to the denormals) keeps full relative accuracy. silu(-inf) = 0.
inline Vec::F silu(Vec::F x) {
  using V = Vec;
  const V::F a = V::sub(V::zero(), V::abs(x));
  const V::Mask positive = V::ge(x, V::zero());
  const V::F e = exp(a);
  const V::F num = V::select(positive, x, exp_sum<true>(a, V::zero(), x));
  return V::select(V::isnan(x), x, V::div(num, V::add(V::set1(1.0f), e)));
}

inline Vec::F relu(Vec::F x) {
  // max(0, x): x86 max returns its second operand when either is NaN, so NaN stays NaN.
  return Vec::max(Vec::zero(), x);
}

// The activation of a GEMM epilogue.
static inline Vec::F apply_activation(Vec::F v, Activation act) {
  if (act == Activation::kRelu) return relu(v);
  if (act == Activation::kGelu) return gelu(v);
  if (act == Activation::kSilu) return silu(v);
  return v;
}

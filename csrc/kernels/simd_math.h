// Vectorised exp and gelu over the Vec primitives of the including ISA.
// Included inside an ISA namespace, after simd_<isa>.h.
#pragma once

// e^(a + b), where b is a small correction (|b| <~ 2) to a large a. Range reduction
// (a + b = n ln2 + r) subtracts n ln2 from a alone, in two exact-ish steps
// (Cody-Waite), then adds b, so the rounding of a + b never reaches the result.
// Relative error ~2 ulp. a + b > 88.7228 gives +inf; a + b < -87.3365 gives 0
// (results that would be denormal flush to zero); NaN gives NaN.
inline Vec::F exp_sum(Vec::F a, Vec::F b) {
  using V = Vec;
  const V::F lo = V::set1(-87.33654f);     // ln(FLT_MIN)
  const V::F hi = V::set1(88.72283f);      // ln(FLT_MAX)
  const V::F s = V::add(a, b);
  const V::F sc = V::min(V::max(s, lo), hi);  // finite even when s is NaN
  V::F n = V::round(V::mul(sc, V::set1(1.44269504088896341f)));
  V::F r = V::fnmadd(n, V::set1(0.693359375f), a);     // ln2 = 0.693359375 - 2.12194440e-4
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
  // n is in [-126, 128]; 2^128 is not a float, so scale by 2^127 * 2 there.
  const V::F n_max = V::set1(127.0f);
  V::F res = V::mul(p, V::pow2(V::min(n, n_max)));
  res = V::mul(res, V::select(V::gt(n, n_max), V::set1(2.0f), V::set1(1.0f)));
  res = V::select(V::gt(s, hi), V::set1(__builtin_inff()), res);
  res = V::select(V::lt(s, lo), V::zero(), res);
  return V::select(V::isnan(s), s, res);
}

inline Vec::F exp(Vec::F x) { return exp_sum(x, Vec::zero()); }

// gelu(x) = x * Phi(x) = 0.5 x erfc(-x / sqrt 2), the exact (erf) form.
//
// With s = |x|: erfc(s / sqrt 2) = t exp(-s^2/2 + g(t)), t = 1 / (1 + 0.35 s),
// g a degree-11 polynomial fitted by tools/fit_erfc.py (error ~3e-9). s^2 is split
// exactly into hi + lo with an fma, and exp_sum keeps -hi/2 apart from the small
// terms, so the tail (x << 0, where gelu is tiny) keeps full relative accuracy.
// x >= 0: gelu = x (1 - erfc/2); x < 0: gelu = x erfc/2. No cancellation either way.
inline Vec::F gelu(Vec::F x) {
  using V = Vec;
  const V::F s = V::min(V::abs(x), V::set1(14.0f));  // erfc(14/sqrt 2) underflows; NaN -> 14
  const V::F t = V::div(V::set1(1.0f), V::fmadd(s, V::set1(0.35f), V::set1(1.0f)));
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
  const V::F e = V::mul(t, exp_sum(V::mul(sq_hi, V::set1(-0.5f)), V::fnmadd(sq_lo, half, g)));
  const V::F half_e = V::mul(e, half);
  const V::F phi = V::select(V::ge(x, V::zero()), V::sub(V::set1(1.0f), half_e), half_e);
  return V::mul(x, phi);
}

inline Vec::F relu(Vec::F x) {
  // max(0, x): x86 max returns its second operand when either is NaN, so NaN stays NaN.
  return Vec::max(Vec::zero(), x);
}

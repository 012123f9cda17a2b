"""Fit the polynomial behind pytransformer's vectorised erfc (used by gelu).

For s >= 0 we write

    erfc(s / sqrt(2)) = t * exp(-s*s/2 + g(t)),    t = 1 / (1 + P * s),

and approximate the smooth function g on t in (t_min, 1] by a degree-11
polynomial: a Chebyshev least-squares fit at Chebyshev nodes in t, against
erfc evaluated with mpmath at 30 digits. The result is printed as C++ ready
to paste into csrc/kernels/simd_math.h. The fit error is ~3e-9 in g
(relative error of erfc); float32 evaluation adds ~1e-7.

Run:  python tools/fit_erfc.py      (needs mpmath)
"""
import mpmath as mp
import numpy as np

P = 0.35
DEGREE = 11
S_MAX = 14.5  # erfc(14.5/sqrt 2) ~ 1e-47: beyond float32's range
NODES = 4000


def g_exact(s: float) -> float:
    z = mp.mpf(s) / mp.sqrt(2)
    t = 1 / (1 + P * mp.mpf(s))
    return float(mp.log(mp.erfc(z) * mp.exp(z * z) / t))


def main() -> None:
    mp.mp.dps = 30
    t_min = 1 / (1 + P * S_MAX)
    k = np.arange(NODES)
    t = (np.cos(np.pi * (k + 0.5) / NODES) + 1) / 2 * (1 - t_min) + t_min
    s = (1 / t - 1) / P
    g = np.array([g_exact(v) for v in s])
    fit = np.polynomial.chebyshev.Chebyshev.fit(t, g, DEGREE, domain=[t_min, 1.0])
    poly = fit.convert(kind=np.polynomial.Polynomial, domain=[-1, 1], window=[-1, 1])

    s_test = np.linspace(0, S_MAX, 3001)
    t_test = 1 / (1 + P * s_test)
    err = np.max(np.abs(poly(t_test) - np.array([g_exact(v) for v in s_test])))
    print(f"// P = {P}, degree {DEGREE}, max |g error| = {err:.2e} on s in [0, {S_MAX}]")
    print("// coefficients of t^0 .. t^%d" % DEGREE)
    print(",\n".join(f"    {c:.9e}f" for c in poly.coef))


if __name__ == "__main__":
    main()

// int8 primitives of int8_impl.h, portable C++: 4 int32 lanes (Vec::W), signed
// products summed 4 at a time. Included inside an ISA namespace after simd_generic.h.
#pragma once

struct I8 {
  struct Acc {
    int32_t v[4];
  };
  struct B {
    int8_t v[16];
  };
  struct A {
    int8_t v[4];
  };
  static constexpr bool kUnsignedA = false, kAbsA = false;

  static Acc zero() { return Acc{{0, 0, 0, 0}}; }
  static B loadb(const int8_t* p) {
    B b;
    std::memcpy(b.v, p, sizeof b.v);
    return b;
  }
  static A bcast(const int8_t* p, const int8_t* /*pa*/) {
    A a;
    std::memcpy(a.v, p, sizeof a.v);
    return a;
  }
  static Acc dot(Acc acc, const A& a, const B& b) {
    for (int j = 0; j < 4; ++j)
      acc.v[j] += a.v[0] * b.v[4 * j] + a.v[1] * b.v[4 * j + 1] + a.v[2] * b.v[4 * j + 2] + a.v[3] * b.v[4 * j + 3];
    return acc;
  }
  static Acc sub(Acc a, Acc b) {
    for (int j = 0; j < 4; ++j) a.v[j] -= b.v[j];
    return a;
  }
  static Acc shl7(Acc a) {
    for (int j = 0; j < 4; ++j) a.v[j] *= 128;
    return a;
  }
  static Acc load(const int32_t* p) { return Acc{{p[0], p[1], p[2], p[3]}}; }
  static Acc load_n(const int32_t* p, int n) {
    Acc a = zero();
    for (int j = 0; j < n && j < 4; ++j) a.v[j] = p[j];
    return a;
  }
  static void store(int32_t* p, Acc a) { std::memcpy(p, a.v, sizeof a.v); }
  static void store_n(int32_t* p, Acc a, int n) {
    for (int j = 0; j < n && j < 4; ++j) p[j] = a.v[j];
  }
  static Vec::F to_float(Acc a) {
    Vec::F f;
    for (int j = 0; j < 4; ++j) f.v[j] = static_cast<float>(a.v[j]);
    return f;
  }
  // n (<= 4) floats x * inv -> int8, rounded to nearest even, clamped to [-127, 127]
  // (finite products: the caller handles rows with NaN or infinity and tiny rows).
  static void quantize(const float* x, float inv, int8_t* out, int n) {
    for (int j = 0; j < n && j < 4; ++j) {
      float r = x[j] * inv;
      r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
      out[j] = static_cast<int8_t>(static_cast<int>(std::nearbyint(r)));
    }
  }
};

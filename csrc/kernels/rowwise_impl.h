// Row-wise and element-wise kernels: softmax, log_softmax, layer_norm, embed, relu,
// gelu, silu.
// Included inside an ISA namespace after simd_<isa>.h and simd_math.h.
//
// Row tails use masked vector loads/stores, so every element of a row goes through
// the same arithmetic whatever its position.
#pragma once

// True in lanes [0, n).
static inline Vec::Mask lanes_below(int n) { return Vec::lt(Vec::iota(), Vec::set1(static_cast<float>(n))); }

// Lanes [0, n) from p, the other lanes `fill`.
static inline Vec::F load_n_or(const float* p, int n, float fill) {
  return n >= Vec::W ? Vec::load(p) : Vec::select(lanes_below(n), Vec::load_n(p, n), Vec::set1(fill));
}

// ---------------------------------------------------------------------------
// softmax over the last axis: y = exp(x - max) / sum(exp(x - max)), x/y [rows, n]
// ---------------------------------------------------------------------------
// The largest of x[0..n) (-inf for n == 0), as the max pass of the softmaxes.
static float row_max(const float* x, int64_t n) {
  using V = Vec;
  const float neg_inf = -__builtin_inff();
  V::F vmax = V::set1(neg_inf);
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    vmax = V::max(vmax, load_n_or(x + j, cnt, neg_inf));
  }
  return V::hmax(vmax);
}

static void softmax_row(const float* x, float* y, int64_t n) {
  using V = Vec;
  const float neg_inf = -__builtin_inff();
  const V::F m = V::set1(row_max(x, n));
  V::F vsum = V::zero();
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    // Tail lanes hold -inf: exp gives 0 and they add nothing.
    const V::F e = exp(V::sub(load_n_or(x + j, cnt, neg_inf), m));
    vsum = V::add(vsum, e);
    V::store_n(y + j, e, cnt);
  }
  const V::F inv = V::set1(1.0f / V::hsum(vsum));
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    V::store_n(y + j, V::mul(V::load_n(y + j, cnt), inv), cnt);
  }
}

static void softmax(const float* x, float* y, int64_t rows, int64_t n) {
  if (n == 0) return;
  parallel_for(rows, threads_for(rows * n, 1 << 14), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmax_row(x + r * n, y + r * n, n);
  });
}

// log_softmax over the last axis: y = x - max - log(sum(exp(x - max))), the
// operation order of torch.log_softmax.
static void log_softmax_row(const float* x, float* y, int64_t n) {
  using V = Vec;
  const float neg_inf = -__builtin_inff();
  const V::F m = V::set1(row_max(x, n));
  V::F vsum = V::zero();
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    vsum = V::add(vsum, exp(V::sub(load_n_or(x + j, cnt, neg_inf), m)));
  }
  const V::F lse = V::set1(std::log(V::hsum(vsum)));
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    V::store_n(y + j, V::sub(V::sub(V::load_n(x + j, cnt), m), lse), cnt);
  }
}

static void log_softmax(const float* x, float* y, int64_t rows, int64_t n) {
  if (n == 0) return;
  parallel_for(rows, threads_for(rows * n, 1 << 14), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) log_softmax_row(x + r * n, y + r * n, n);
  });
}

// ---------------------------------------------------------------------------
// layer_norm: y = (t - mean(t)) / sqrt(var(t) + eps) * weight + bias, t = x + residual
// (biased variance, as the paper's LayerNorm and torch). x, residual, y [rows, n].
// ---------------------------------------------------------------------------
static void layer_norm_row(const float* x, const float* residual, const float* weight, const float* bias, float eps,
                           float* y, int64_t n) {
  using V = Vec;
  // Pass 1: t (stored in y when there is a residual) and its mean.
  V::F vsum = V::zero();
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    V::F t = V::load_n(x + j, cnt);
    if (residual) {
      t = V::add(t, V::load_n(residual + j, cnt));
      V::store_n(y + j, t, cnt);
    }
    vsum = V::add(vsum, t);
  }
  const float* t_row = residual ? y : x;
  const float mean = V::hsum(vsum) / static_cast<float>(n);
  // Pass 2: variance around the mean (two-pass: no cancellation).
  const V::F vmean = V::set1(mean);
  V::F vsq = V::zero();
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    V::F d = V::sub(V::load_n(t_row + j, cnt), vmean);
    if (cnt < V::W) d = V::select(lanes_below(cnt), d, V::zero());
    vsq = V::fmadd(d, d, vsq);
  }
  const float var = V::hsum(vsq) / static_cast<float>(n);
  const V::F rstd = V::set1(1.0f / std::sqrt(var + eps));
  // Pass 3: normalise, scale, shift.
  for (int64_t j = 0; j < n; j += V::W) {
    const int cnt = static_cast<int>(std::min<int64_t>(V::W, n - j));
    V::F v = V::mul(V::sub(V::load_n(t_row + j, cnt), vmean), rstd);
    if (weight) v = V::mul(v, V::load_n(weight + j, cnt));
    if (bias) v = V::add(v, V::load_n(bias + j, cnt));
    V::store_n(y + j, v, cnt);
  }
}

static void layer_norm(const float* x, const float* residual, const float* weight, const float* bias, float eps,
                       float* y, int64_t rows, int64_t n) {
  if (n == 0) return;
  parallel_for(rows, threads_for(rows * n, 1 << 14), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      layer_norm_row(x + r * n, residual ? residual + r * n : nullptr, weight, bias, eps, y + r * n, n);
  });
}

// ---------------------------------------------------------------------------
// Embedding lookup, scaled, plus token types, plus positions: separate roundings in
// that order, as `emb(ids) * scale + pe` in PyTorch and `word + type + position`
// in BERT.
// ---------------------------------------------------------------------------
static void embed(const float* table, int64_t E, const int32_t* ids, int64_t rows, int64_t seq_len,
                  int64_t first_position, float scale, const float* positions, const float* types,
                  const int32_t* type_ids, float* out) {
  const Vec::F vs = Vec::set1(scale);
  const bool scaled = scale != 1.0f;
  parallel_for(rows, threads_for(rows * E, 1 << 15), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* e = table + (ids ? static_cast<int64_t>(ids[r]) : r) * E;
      const float* p = positions ? positions + (first_position + r % seq_len) * E : nullptr;
      const float* t = types ? types + (type_ids ? static_cast<int64_t>(type_ids[r]) : 0) * E : nullptr;
      float* o = out + r * E;
      for (int64_t j = 0; j < E; j += Vec::W) {
        const int cnt = static_cast<int>(std::min<int64_t>(Vec::W, E - j));
        Vec::F v = Vec::load_n(e + j, cnt);
        if (scaled) v = Vec::mul(v, vs);
        if (t) v = Vec::add(v, Vec::load_n(t + j, cnt));
        if (p) v = Vec::add(v, Vec::load_n(p + j, cnt));
        Vec::store_n(o + j, v, cnt);
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Element-wise activations, x/y [n]
// ---------------------------------------------------------------------------
template <class Op>
static void elementwise(const float* x, float* y, int64_t n, Op op, int64_t min_per_thread) {
  const int64_t chunks = ceil_div(n, 1024);
  parallel_for(chunks, threads_for(n, min_per_thread), [&](int64_t c0, int64_t c1) {
    const int64_t end = std::min<int64_t>(n, c1 * 1024);
    for (int64_t j = c0 * 1024; j < end; j += Vec::W) {
      const int cnt = static_cast<int>(std::min<int64_t>(Vec::W, end - j));
      Vec::store_n(y + j, op(Vec::load_n(x + j, cnt)), cnt);
    }
  });
}

static void relu_op(const float* x, float* y, int64_t n) {
  elementwise(x, y, n, [](Vec::F v) { return relu(v); }, 1 << 16);
}

static void gelu_op(const float* x, float* y, int64_t n) {
  elementwise(x, y, n, [](Vec::F v) { return gelu(v); }, 1 << 13);
}

static void silu_op(const float* x, float* y, int64_t n) {
  elementwise(x, y, n, [](Vec::F v) { return silu(v); }, 1 << 13);
}

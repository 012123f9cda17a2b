// int8 GEMM with a fused float epilogue:
//   y[M,N] = act(sx[m] * sw[n] * (xq[M,K] . Wq[N,K]^T) + bias[n]) (+ residual),
// xq and Wq int8 in [-127, 127] (symmetric, one float scale per row of x and per
// row of W), int32 accumulation. Integer accumulation is exact, so the int32 sums
// are the same on every ISA, for every blocking and thread count; the epilogue is
// the same sequence of float operations everywhere (convert, * sx, * sw, + bias).
//
// Included inside an ISA namespace after simd_<isa>.h, simd_math.h and the ISA's
// int8 primitives, a struct I8:
//   I8::Acc      Vec::W int32 lanes
//   I8::B        4 consecutive k of Vec::W columns of W (4 * Vec::W bytes), as loaded
//   I8::A        4 consecutive k of one row of x, broadcast and prepared
//   I8::kUnsignedA  activations are kept as u8 = q + 128 (the u8 x s8 dot products
//                of VNNI); the sums then carry 128 * colsum(W), taken off in the epilogue
//   I8::kAbsA   the dot product also takes |q| of the activations: i8_run makes a
//                copy of x's rows with |q| once per product, bcast(p, pa) reads both
//   zero, loadb, bcast, dot(acc, a, b) (+= the 4 products of every lane), sub,
//   load/store(_n) of int32, to_float, quantize (Vec::W floats -> int8 in A's format).
// and the tile sizes kI8MR (rows of x) and kI8NV (vectors across N).
//
// Layouts:
//   x rows, quantized: [M][Kp] bytes, Kp = K rounded up to 4 (pad: q = 0), in
//     A's format (signed, or u8 = q + 128).
//   W packed: panels of NR = kI8NV * Vec::W rows of W, each [Kp/4][NR][4] bytes
//     (4 consecutive k of one column together), zero-padded past N and K; then the
//     column sums sum_k Wq[n,k] as int32 [panels * NR].
//
// The register tile keeps MR x NR int32 sums over the whole of K: with 1-byte
// operands a W panel of even K = 4096 is 128 KiB (L2) and an x tile 12 x 4096 bytes
// (L1/L2), so there is no KC blocking (and no partial sums through memory). Blocking
// across rows and panels comes from the detected cache sizes (i8_blocking).
#pragma once

constexpr int kI8NR = kI8NV * Vec::W;

// Rows of activations whose max |x| is below this are quantized as zeros.
constexpr float kI8TinyRow = 1e-30f;

static inline int64_t i8_padded_k(int64_t K) { return ceil_div(K, 4) * 4; }

static int64_t i8_packed_bytes(int64_t N, int64_t K) {
  const int64_t cols = ceil_div(N, kI8NR) * kI8NR;
  return cols * i8_padded_k(K) + cols * static_cast<int64_t>(sizeof(int32_t));
}

static const int32_t* i8_colsums(const int8_t* packed, int64_t N, int64_t K) {
  return reinterpret_cast<const int32_t*>(packed + ceil_div(N, kI8NR) * kI8NR * i8_padded_k(K));
}

static void i8_pack_panels(const int8_t* w, int64_t N, int64_t K, int8_t* packed, int64_t p_begin, int64_t p_end) {
  const int64_t Kp = i8_padded_k(K);
  int32_t* sums = reinterpret_cast<int32_t*>(packed + ceil_div(N, kI8NR) * kI8NR * Kp);
  for (int64_t p = p_begin; p < p_end; ++p) {
    int8_t* panel = packed + p * Kp * kI8NR;
    std::memset(panel, 0, static_cast<size_t>(Kp * kI8NR));
    for (int j = 0; j < kI8NR; ++j) {
      const int64_t n = p * kI8NR + j;
      int32_t s = 0;
      if (n < N) {
        const int8_t* row = w + n * K;
        for (int64_t k = 0; k < K; ++k) s += row[k];
        // 4 consecutive k at a time (one int32 move), then the last K % 4.
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) std::memcpy(panel + (k / 4) * kI8NR * 4 + j * 4, row + k, 4);
        for (; k < K; ++k) panel[(k / 4) * kI8NR * 4 + j * 4 + k % 4] = row[k];
      }
      sums[n] = s;
    }
  }
}

static void i8_pack(const int8_t* w, int64_t N, int64_t K, int8_t* packed) {
  const int64_t panels = ceil_div(N, kI8NR);
  parallel_for(panels, threads_for(panels * K * kI8NR, 1 << 17),
               [&](int64_t b, int64_t e) { i8_pack_panels(w, N, K, packed, b, e); });
}

static void i8_unpack(const int8_t* packed, int64_t N, int64_t K, int8_t* w) {
  const int64_t Kp = i8_padded_k(K);
  for (int64_t n = 0; n < N; ++n) {
    const int8_t* panel = packed + (n / kI8NR) * Kp * kI8NR;
    const int j = static_cast<int>(n % kI8NR);
    for (int64_t k = 0; k < K; ++k) w[n * K + k] = panel[(k / 4) * kI8NR * 4 + j * 4 + k % 4];
  }
}

// ---------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------

// Row r of x -> q (Kp bytes, A's format) and scale[r] = max|x| / 127, with
// q = round-to-nearest-even(x * (127 / max|x|)), within [-127, 127]. A row of zeros
// (or below kI8TinyRow) gets scale 0 and q = 0; a row with a NaN or infinity gets scale NaN, so that
// its outputs are NaN rather than silently finite.
static void i8_quantize_rows(const float* x, int64_t M, int64_t K, int8_t* q, float* scales) {
  const int64_t Kp = i8_padded_k(K);
  parallel_for(M, threads_for(M * K, 1 << 15), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * K;
      // max |x|, and x * 0 summed: NaN when the row holds a NaN or an infinity.
      Vec::F vmax = Vec::zero(), vnan = Vec::zero();
      int64_t k = 0;
      for (; k + Vec::W <= K; k += Vec::W) {
        const Vec::F a = Vec::load(row + k);
        vmax = Vec::max(vmax, Vec::abs(a));
        vnan = Vec::add(vnan, Vec::mul(a, Vec::zero()));
      }
      float amax = Vec::hmax(vmax), nan = Vec::hsum(vnan);
      for (; k < K; ++k) {
        amax = std::max(amax, std::fabs(row[k]));
        nan += row[k] * 0.0f;
      }
      const bool finite = nan == 0.0f;
      int8_t* out = q + r * Kp;
      // Rows below kI8TinyRow count as zero (127 / max|x| would overflow).
      if (!finite || amax < kI8TinyRow) {
        std::memset(out, I8::kUnsignedA ? 0x80 : 0, static_cast<size_t>(Kp));
        scales[r] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      const float inv = 127.0f / amax;
      scales[r] = amax / 127.0f;
      k = 0;
      for (; k + Vec::W <= K; k += Vec::W) I8::quantize(row + k, inv, out + k, Vec::W);
      if (k < K) I8::quantize(row + k, inv, out + k, static_cast<int>(K - k));
      for (k = K; k < Kp; ++k) out[k] = static_cast<int8_t>(I8::kUnsignedA ? -128 : 0);
    }
  });
}

// int8 rows [M,K] (values in [-127, 127]) -> q in A's format (the exact-test path).
static void i8_load_rows(const int8_t* x, int64_t M, int64_t K, int8_t* q) {
  const int64_t Kp = i8_padded_k(K);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t k = 0; k < Kp; ++k) {
      const int v = k < K ? x[r * K + k] : 0;
      q[r * Kp + k] = static_cast<int8_t>(I8::kUnsignedA ? (v ^ 0x80) : v);
    }
}

// ---------------------------------------------------------------------------
// Register tile
// ---------------------------------------------------------------------------

struct I8Out {
  const float* sx;        // [rows] scales of the tile's x rows
  const float* sw;        // [n_valid] scales of its W rows
  const float* bias;      // [n_valid] or null
  Activation act;
  const float* residual;  // [rows, ldy] or null
  float* y;               // [rows, ldy] float output, or null when iout is used
  int32_t* iout;          // [rows, ldy] exact int32 sums instead (tests), or null
};

// MR rows of x (row stride ldx bytes; xa: their |x| copy, kAbsA only) against one
// packed panel b over k4n steps of 4.
template <int MR>
static void i8_tile(int64_t k4n, const int8_t* __restrict x, const int8_t* __restrict xa, int64_t ldx,
                    const int8_t* __restrict b, const int32_t* colsum, int n_valid, int64_t ldy, const I8Out& o) {
  typename I8::Acc acc[MR][kI8NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < kI8NV; ++v) acc[m][v] = I8::zero();
  constexpr int kLines = kI8NR * 4 / 64;  // cache lines of W per k step
  for (int64_t k4 = 0; k4 < k4n; ++k4) {
    const int8_t* bk = b + k4 * kI8NR * 4;
    for (int l = 0; l < kLines; ++l) __builtin_prefetch(bk + 16 * kI8NR * 4 + l * 64, 0, 3);
    typename I8::B bv[kI8NV];
    for (int v = 0; v < kI8NV; ++v) bv[v] = I8::loadb(bk + v * Vec::W * 4);
    for (int m = 0; m < MR; ++m) {
      const typename I8::A a = I8::bcast(x + m * ldx + k4 * 4, xa + m * ldx + k4 * 4);
      for (int v = 0; v < kI8NV; ++v) acc[m][v] = I8::dot(acc[m][v], a, bv[v]);
    }
  }
  const bool full = n_valid == kI8NR;
  if (I8::kUnsignedA) {  // sum (q + 128) w = sum q w + 128 colsum
    for (int v = 0; v < kI8NV; ++v) {
      const typename I8::Acc c = I8::shl7(full ? I8::load(colsum + v * Vec::W)
                                               : I8::load_n(colsum + v * Vec::W, n_valid - v * Vec::W));
      for (int m = 0; m < MR; ++m) acc[m][v] = I8::sub(acc[m][v], c);
    }
  }
  if (o.iout) {
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < kI8NV; ++v) {
        int32_t* dst = o.iout + m * ldy + v * Vec::W;
        if (full)
          I8::store(dst, acc[m][v]);
        else
          I8::store_n(dst, acc[m][v], n_valid - v * Vec::W);
      }
    return;
  }
  typename Vec::F sw[kI8NV], bb[kI8NV];
  for (int v = 0; v < kI8NV; ++v) {
    const int cnt = n_valid - v * Vec::W;
    sw[v] = full ? Vec::load(o.sw + v * Vec::W) : Vec::load_n(o.sw + v * Vec::W, cnt);
    bb[v] = o.bias ? (full ? Vec::load(o.bias + v * Vec::W) : Vec::load_n(o.bias + v * Vec::W, cnt)) : Vec::zero();
  }
  for (int m = 0; m < MR; ++m) {
    const typename Vec::F sx = Vec::set1(o.sx[m]);
    for (int v = 0; v < kI8NV; ++v) {
      const int cnt = n_valid - v * Vec::W;
      typename Vec::F f = Vec::mul(Vec::mul(I8::to_float(acc[m][v]), sx), sw[v]);
      if (o.bias) f = Vec::add(f, bb[v]);
      f = apply_activation(f, o.act);
      if (o.residual) {
        const float* r = o.residual + m * ldy + v * Vec::W;
        f = Vec::add(full ? Vec::load(r) : Vec::load_n(r, cnt), f);
      }
      float* dst = o.y + m * ldy + v * Vec::W;
      if (full)
        Vec::store(dst, f);
      else
        Vec::store_n(dst, f, cnt);
    }
  }
}

// out[i] = |q[i]| (q in [-127, 127]); separate buffers, so the loop vectorizes.
static void i8_abs(const int8_t* __restrict q, int64_t n, int8_t* __restrict out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(q[i] < 0 ? -q[i] : q[i]);
}

using I8TileFn = void (*)(int64_t, const int8_t*, const int8_t*, int64_t, const int8_t*, const int32_t*, int, int64_t,
                          const I8Out&);

template <int... I>
static I8TileFn i8_tile_pick(int rows, std::integer_sequence<int, I...>) {
  static constexpr I8TileFn fns[] = {&i8_tile<I + 1>...};
  return fns[rows - 1];
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------

// Blocking from the caches of this CPU (see cache_info()): a task covers a block of
// rows whose quantized x (rows x Kp bytes) fills at most half of L2, and a block of
// panels whose W (panels x NR x Kp bytes) fills at most half of L2 too, so each
// panel is read from L2 once per row tile and each x block stays in L2 across the
// panels. Work is split into at least kChunksPerThread tasks per thread when there
// are that many blocks (a late thread holds back one block).
struct I8Blocking {
  int64_t row_tiles, panels;  // per task
};

static I8Blocking i8_blocking(int64_t M, int64_t N, int64_t Kp, int nthreads) {
  const int64_t l2 = std::max<int64_t>(cache_info().l2_bytes, 128 << 10);
  const int64_t row_tiles_total = ceil_div(M, kI8MR), panels_total = ceil_div(N, kI8NR);
  int64_t bt = std::max<int64_t>(1, (l2 / 2) / (Kp * kI8MR));
  int64_t bp = std::max<int64_t>(1, (l2 / 2) / (Kp * kI8NR));
  bt = std::min(bt, row_tiles_total);
  bp = std::min(bp, panels_total);
  // Enough tasks for the threads: split panels first (every thread then reads only
  // its share of W, the operand that comes from memory when rows are few).
  const int64_t want = nthreads > 1 ? int64_t{nthreads} * kChunksPerThread : 1;
  while (ceil_div(row_tiles_total, bt) * ceil_div(panels_total, bp) < want && (bp > 1 || bt > 1)) {
    if (bp > 1 && (bp >= bt || ceil_div(panels_total, bp) < int64_t{nthreads}))
      bp = ceil_div(bp, 2);
    else if (bt > 1)
      bt = ceil_div(bt, 2);
    else
      bp = ceil_div(bp, 2);
  }
  return {bt, bp};
}

// i8_run's copy of |q| (kAbsA sets only); floats, 4 bytes each.
static thread_local AlignedBuffer i8_abs_scratch;

static void i8_run(const int8_t* q, const float* sx, int64_t M, int64_t K, const int8_t* packed, const float* sw,
                   int64_t N, const float* bias, Activation act, const float* residual, float* y, int32_t* iout) {
  if (M <= 0 || N <= 0) return;
  const int64_t Kp = i8_padded_k(K), k4n = Kp / 4;
  const int64_t row_tiles = ceil_div(M, kI8MR), panels = ceil_div(N, kI8NR);
  const int32_t* colsum = i8_colsums(packed, N, K);
  const int nthreads = threads_for(M * N * Kp, 1 << 18);
  // |q| of every row of x, once (each element is used by every panel), in this
  // thread's scratch (kept for the next call up to kScratchKeepFloats).
  const int8_t* qa = q;
  if constexpr (I8::kAbsA) {
    i8_abs_scratch.reserve_discard(static_cast<size_t>(ceil_div(M * Kp, 4)));
    int8_t* a = reinterpret_cast<int8_t*>(i8_abs_scratch.data());
    parallel_for(M, threads_for(M * Kp, 1 << 16),
                 [&](int64_t r0, int64_t r1) { i8_abs(q + r0 * Kp, (r1 - r0) * Kp, a + r0 * Kp); });
    qa = a;
  }
  const I8Blocking blk = i8_blocking(M, N, Kp, nthreads);
  const int64_t tb = ceil_div(row_tiles, blk.row_tiles), pb = ceil_div(panels, blk.panels);
  // Panel blocks outer: consecutive tasks share their block of W.
  parallel_tasks(tb * pb, nthreads, [&](int64_t task) {
    const int64_t ip = task / tb, it = task % tb;
    const int64_t t0 = it * blk.row_tiles, t1 = std::min(row_tiles, t0 + blk.row_tiles);
    const int64_t p0 = ip * blk.panels, p1 = std::min(panels, p0 + blk.panels);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * kI8NR;
      const int n_valid = static_cast<int>(std::min<int64_t>(kI8NR, N - n0));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t m0 = t * kI8MR;
        const int rows = static_cast<int>(std::min<int64_t>(kI8MR, M - m0));
        I8Out o{sx ? sx + m0 : nullptr,
                sw ? sw + n0 : nullptr,
                bias ? bias + n0 : nullptr,
                act,
                residual ? residual + m0 * N + n0 : nullptr,
                y ? y + m0 * N + n0 : nullptr,
                iout ? iout + m0 * N + n0 : nullptr};
        i8_tile_pick(rows, std::make_integer_sequence<int, kI8MR>{})(k4n, q + m0 * Kp, qa + m0 * Kp, Kp,
                                                                      packed + p * Kp * kI8NR, colsum + n0, n_valid,
                                                                      N, o);
      }
    }
  });
  if constexpr (I8::kAbsA) {
    if (i8_abs_scratch.size() > kScratchKeepFloats) i8_abs_scratch.release();
  }
}

static void i8_linear(const int8_t* q, const float* x_scales, int64_t M, int64_t K, const int8_t* packed,
                      const float* w_scales, int64_t N, const float* bias, Activation act, const float* residual,
                      float* y) {
  i8_run(q, x_scales, M, K, packed, w_scales, N, bias, act, residual, y, nullptr);
}

static void i8_matmul_i32(const int8_t* q, int64_t M, int64_t K, const int8_t* packed, int64_t N, int32_t* out) {
  i8_run(q, nullptr, M, K, packed, nullptr, N, nullptr, Activation::kNone, nullptr, nullptr, out);
}

// The Int8Kernels of the ISA namespace NS under NAME, as a constant initializer (no
// code runs to build it: a getter compiled with ISA flags must not execute any).
#define PT_I8_TABLE(NS, NAME)                                                                          \
  {                                                                                                    \
    NAME, &NS::i8_padded_k, &NS::i8_packed_bytes, &NS::i8_pack, &NS::i8_unpack, &NS::i8_quantize_rows, \
        &NS::i8_load_rows, &NS::i8_linear, &NS::i8_matmul_i32                                          \
  }

// GEMM with a fused epilogue: y[M,N] = act(x[M,K] @ W[N,K]^T + bias[N]).
//
// Included inside an ISA namespace after simd_<isa>.h and simd_math.h. The
// including file defines the register tile for its registers:
//   kGemmMR  rows of the register tile (x rows)
//   kGemmNV  vectors across N in the register tile (NR = kGemmNV * Vec::W columns)
// The cache blocking is derived at run time from the detected caches (cache_info():
// sysfs, else CPUID; PYTRANSFORMER_CACHE overrides), once per process (gemm_blocking):
//   KC  depth of one pass over a tile: the packed x micro-panel (MR x KC floats) stays
//       in L1 and takes at most half of it, the other half holding the W micro-panel
//       lines streaming through: KC = L1d / 2 / (4 MR), a multiple of 64 in
//       [64, kGemmKCMax] (deeper passes measured no faster: the partial sums' round
//       trip through y is 1/KC of the work, and a KC x NR W micro-panel must pass
//       through L1 within the prefetch distance).
//   NC  W panels per column block: the KC x NC block of W fills L2,
//       NC = L2 / (4 KC NR) panels (>= 1).
//   MC  x row tiles per row block: the packed MC x KC block of x takes an eighth of L2
//       (beside W's block), MC = L2 / 8 / (4 MR KC) tiles, a power of two in [1, 64].
// On the CPUs the constants were first tuned on this gives the tuned values: AVX-512
// (MR 12, NR 32) with 32 KiB L1d and 1 MiB L2 -> KC 256, NC 32, MC 8; AVX2 (MR 6,
// NR 16) with 512 KiB L2 (Zen 2) -> KC 256, NC 32, MC 8.
//
// The five loops of BLIS:
//   x is packed block by block (MC x KC, into per-thread scratch, k-major,
//   zero-padded rows) just before the block is used,
//   W is packed into col panels [ceil(N/NR)][K][NR]  (k-major, zero-padded cols);
// a register tile accumulates MR x NR outputs over KC steps of rank-1 updates.
// Two orders inside one (column block, KC block, row block) pass:
// - many rows (the block of W in L2 is reused by many x tiles): each x tile (MR x KC)
//   stays in L1 while the W micro-panels of the column block stream past it from L2,
//   each k step prefetching W kGemmL1Ahead steps ahead into L1 (1T, AVX-512, warm
//   weights: 4096 x 384 x 1152 ran at ~125-140 GF/s in the other order, ~165 in
//   this one; 2048 x 512 x 1536 ~148 -> ~172). The thread's first tile, which reads
//   the block from memory, prefetches each next micro-panel into L2 as below;
// - few rows (decode-size batches, where W comes from memory and is used by a few
//   tiles only): each W micro-panel (KC x NR) is swept over the row block's tiles
//   while it sits in L1, and the tiles prefetch the next one into L2, spread evenly
//   over them: without it, small batches wait for DRAM (a 32 x 512 x 2048 product
//   with cold weights ran ~2x slower).
// Between KC passes the partial sums go through y, loaded back into the registers
// (not added), so every output is one fma chain over k = 0..K-1 in order: the
// result does not depend on KC, on the thread split, or on M (a row gives the same
// bits alone or in a batch).
#pragma once

constexpr int kGemmNR = kGemmNV * Vec::W;
constexpr int64_t kGemmKCMax = 256;

struct GemmBlocking {
  int64_t kc, nc_panels, mc_tiles;
};

// The rule above, from cache_info(): computed once (thread-safe static).
static GemmBlocking derive_gemm_blocking() {
  const CacheInfo& c = cache_info();
  const int64_t l1 = std::max<long long>(c.l1d_bytes, 8 << 10), l2 = std::max<long long>(c.l2_bytes, 64 << 10);
  const int64_t kc = std::clamp<int64_t>(l1 / 2 / (4 * kGemmMR) / 64 * 64, 64, kGemmKCMax);
  const int64_t nc = std::max<int64_t>(1, l2 / (4 * kc * kGemmNR));
  int64_t mc = 1;
  while (mc < 64 && 2 * mc * 4 * kGemmMR * kc <= l2 / 8) mc *= 2;
  return {kc, nc, mc};
}

static const GemmBlocking& gemm_blocking() {
  static const GemmBlocking b = derive_gemm_blocking();
  return b;
}

static void gemm_blocking_info(int64_t out[5]) {
  const GemmBlocking& b = gemm_blocking();
  out[0] = b.kc;
  out[1] = b.nc_panels;
  out[2] = b.mc_tiles;
  out[3] = kGemmMR;
  out[4] = kGemmNR;
}
// Cache lines of W per k step of the register tile, and how many k steps ahead the
// tile prefetches them into L1.
constexpr int kGemmLinesPerK = (kGemmNR * static_cast<int>(sizeof(float)) + 63) / 64;
constexpr int64_t kGemmL1Ahead = 8;
// Threads with at least this many rows of x use the streaming order (see above):
// measured with weights cold in cache, AVX-512 1T, it is ~15% faster at 1024 rows,
// even at ~384 and ~10% slower at 128.
constexpr int64_t kGemmStreamRows = 384;

// ---------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------

// dst[k*ldd + r] = src[r*lds + k] for r < rows, k < cols, and 0 for rows <= r < width
// (width <= ldd). k outer: the (at most width) source rows advance together, 8
// columns at a time, so the stores fill whole destination lines (measured faster
// than row-group-outer).
static void pack_transposed(const float* src, int64_t lds, int rows, int64_t cols, float* dst, int64_t ldd,
                            int width) {
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    int r = 0;
    for (; r + 8 <= rows; r += 8) transpose_8x8(src + r * lds + k, lds, dst + k * ldd + r, ldd);
    for (; r + 4 <= rows; r += 4) transpose_4x8(src + r * lds + k, lds, dst + k * ldd + r, ldd);
    for (; r + 2 <= rows; r += 2) transpose_2x8(src + r * lds + k, lds, dst + k * ldd + r, ldd);
    for (; r < rows; ++r)
      for (int kk = 0; kk < 8; ++kk) dst[(k + kk) * ldd + r] = src[r * lds + k + kk];
    for (; r < width; ++r)
      for (int kk = 0; kk < 8; ++kk) dst[(k + kk) * ldd + r] = 0.0f;
  }
  for (; k < cols; ++k) {
    int r = 0;
    for (; r < rows; ++r) dst[k * ldd + r] = src[r * lds + k];
    for (; r < width; ++r) dst[k * ldd + r] = 0.0f;
  }
}

static int64_t gemm_packed_size(int64_t N, int64_t K) { return ceil_div(N, kGemmNR) * kGemmNR * K; }

// Panels [p_begin, p_end) of W [N,K] into packed ([panel][K][NR]).
static void gemm_pack_panels(const float* w, int64_t N, int64_t K, float* packed, int64_t p_begin, int64_t p_end) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    const int64_t n0 = p * kGemmNR;
    const int rows = static_cast<int>(std::min<int64_t>(kGemmNR, N - n0));
    pack_transposed(w + n0 * K, K, rows, K, packed + p * K * kGemmNR, kGemmNR, kGemmNR);
  }
}

static void gemm_pack(const float* w, int64_t N, int64_t K, float* packed) {
  const int64_t panels = ceil_div(N, kGemmNR);
  parallel_for(panels, threads_for(panels * K * kGemmNR, 1 << 15),
               [&](int64_t b, int64_t e) { gemm_pack_panels(w, N, K, packed, b, e); });
}

static void gemm_unpack(const float* packed, int64_t N, int64_t K, float* w) {
  for (int64_t n = 0; n < N; ++n) {
    const float* panel = packed + (n / kGemmNR) * K * kGemmNR + n % kGemmNR;
    for (int64_t k = 0; k < K; ++k) w[n * K + k] = panel[k * kGemmNR];
  }
}

// ---------------------------------------------------------------------------
// Register tile
// ---------------------------------------------------------------------------

struct GemmEpilogue {
  const float* bias;  // [N] or null
  Activation act;
};

// y tile [MR, n_valid] (row stride ldy) over kc steps: a = packed x tile (stride
// kGemmMR per k), b = packed W panel (stride kGemmNR per k). `first`: start from 0,
// else from y; `last`: add bias, apply activation, add the residual (row stride ldy).
// pf, pf_lines: cache lines to prefetch into L2 from pf on, spread over the kc steps.
template <int MR>
static void gemm_tile(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict y,
                      int64_t ldy, int n_valid, bool first, bool last, const float* bias, Activation act,
                      const float* __restrict residual, const float* pf, int64_t pf_lines) {
  int64_t pf_acc = 0;
  using V = Vec;
  typename V::F acc[MR][kGemmNV];
  const bool full = n_valid == kGemmNR;
  if (first) {
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < kGemmNV; ++v) acc[m][v] = V::zero();
  } else {
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < kGemmNV; ++v)
        acc[m][v] = full ? V::load(y + m * ldy + v * V::W) : V::load_n(y + m * ldy + v * V::W, n_valid - v * V::W);
  }
  for (int64_t k = 0; k < kc; ++k) {
    typename V::F bv[kGemmNV];
    if (pf) {
      pf_acc += pf_lines;
      while (pf_acc >= kc) {
        __builtin_prefetch(pf, 0, 2);
        pf += 16;
        pf_acc -= kc;
      }
    }
    // W kGemmL1Ahead steps on, into L1 (past the panel's end it only touches the
    // next one; a prefetch never faults).
    for (int l = 0; l < kGemmLinesPerK; ++l) __builtin_prefetch(b + (k + kGemmL1Ahead) * kGemmNR + l * 16, 0, 3);
    for (int v = 0; v < kGemmNV; ++v) bv[v] = V::load(b + k * kGemmNR + v * V::W);
    for (int m = 0; m < MR; ++m) {
      const typename V::F am = V::set1(a[k * kGemmMR + m]);
      for (int v = 0; v < kGemmNV; ++v) acc[m][v] = V::muladd(am, bv[v], acc[m][v]);
    }
  }
  if (last && (bias || act != Activation::kNone)) {
    typename V::F bb[kGemmNV];
    for (int v = 0; v < kGemmNV; ++v)
      bb[v] = bias ? (full ? V::load(bias + v * V::W) : V::load_n(bias + v * V::W, n_valid - v * V::W)) : V::zero();
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < kGemmNV; ++v) acc[m][v] = apply_activation(V::add(acc[m][v], bb[v]), act);
  }
  if (last && residual) {
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < kGemmNV; ++v) {
        const float* r = residual + m * ldy + v * V::W;
        acc[m][v] = V::add(full ? V::load(r) : V::load_n(r, n_valid - v * V::W), acc[m][v]);
      }
  }
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < kGemmNV; ++v) {
      if (full)
        V::store(y + m * ldy + v * V::W, acc[m][v]);
      else
        V::store_n(y + m * ldy + v * V::W, acc[m][v], n_valid - v * V::W);
    }
}

using GemmTileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, bool, bool, const float*,
                            Activation, const float*, const float*, int64_t);

template <int... I>
struct GemmTileTable {
  static constexpr GemmTileFn fns[sizeof...(I)] = {&gemm_tile<I + 1>...};
};

template <int... I>
static constexpr GemmTileTable<I...> make_tile_table(std::integer_sequence<int, I...>) {
  return {};
}

// gemm_tile<rows> for rows = 1..kGemmMR.
static GemmTileFn gemm_tile_for_rows(int rows) {
  static constexpr auto table = make_tile_table(std::make_integer_sequence<int, kGemmMR>{});
  return table.fns[rows - 1];
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

// W panels per column block of gemm_compute_block: x is packed once per column block.
static int64_t gemm_block_panels(int64_t K) {
  const GemmBlocking& b = gemm_blocking();
  return K < 2 * b.kc ? std::max<int64_t>(1, b.nc_panels * b.kc / K) : b.nc_panels;
}

// Split `nthreads` into a grid: tm threads along row tiles x tn along panels, the
// one with the least estimated time for the busiest thread: its FMA cycles plus ~2
// cycles per float of x it packs (x comes from memory and is packed once per column
// block) and ~1 per float of W it reads. Splitting N makes every thread pack all of
// x, splitting M makes every thread read all of W: for MiniLM's 4096 x 1536 x 384
// on 2 threads the FMA shares tie and the M split is ~7% cheaper. Ties go to N.
static void gemm_thread_grid(int nthreads, int64_t row_tiles, int64_t panels, int64_t K, int* tm, int* tn) {
  double best = -1;
  for (int m = 1; m <= nthreads; ++m) {
    if (nthreads % m) continue;
    const int n = nthreads / m;
    const int64_t tiles_t = ceil_div(row_tiles, m), panels_t = ceil_div(panels, n);
    const double fma = static_cast<double>(tiles_t * panels_t) * kGemmMR * kGemmNV * K / 2;
    const double x_packs = static_cast<double>(ceil_div(panels_t, gemm_block_panels(K)));
    const double moves = static_cast<double>(K) * (2.0 * tiles_t * kGemmMR * x_packs + panels_t * kGemmNR);
    const double cost = fma + moves;
    if (best < 0 || cost < best || (cost == best && n > *tn)) {
      best = cost;
      *tm = m;
      *tn = n;
    }
  }
}

// Scratch owned by the calling thread, reused across calls (no allocation in steady state).
static AlignedBuffer& gemm_scratch_x() {
  static thread_local AlignedBuffer buf;
  return buf;
}
static AlignedBuffer& gemm_scratch_w() {
  static thread_local AlignedBuffer buf;
  return buf;
}

// y tiles [t_begin, t_end) x panels [p_begin, p_end) from x and packed W.
//
// x is packed one MC x KC block at a time, into this thread's scratch, just before
// use, where it stays in L2 for all the panels of the block (packing all of x up
// front sent the packed copy of a large batch out to memory and back).
//
// Two loop orders, both giving the same bits:
// - K < 2 KC (e.g. d_model 384): column blocks of W small enough that all of K x NC
//   stays in L2; each row block runs its KC passes back to back, so its partial sums
//   stay in cache (for 4096 x 384 x 1152 they would otherwise make 3 trips of 19 MB
//   through memory).
// - larger K (the second FFN layer): the KC x NC block of W stays in L2 and every
//   row block passes through it before the next KC pass; W column blocks this wide
//   keep the number of times x is packed low.
static void gemm_compute_block(const float* x, int64_t M, int64_t K, const float* wp, int64_t N, const float* bias,
                               Activation act, const float* residual, float* y, int64_t t_begin, int64_t t_end,
                               int64_t p_begin, int64_t p_end) {
  if (t_begin >= t_end || p_begin >= p_end) return;
  const GemmBlocking& blk = gemm_blocking();
  const int64_t KC = blk.kc, NCP = blk.nc_panels, MCT = blk.mc_tiles;
  AlignedBuffer& xbuf = gemm_scratch_x();
  xbuf.reserve_discard(static_cast<size_t>(MCT * std::min<int64_t>(K, KC) * kGemmMR));
  float* xb = xbuf.data();
  const bool stream = (t_end - t_begin) * kGemmMR >= kGemmStreamRows;
  // Row tiles [tc0, tc1) x panels [pc0, pc1) over the KC pass from k0.
  auto pass = [&](int64_t tc0, int64_t tc1, int64_t pc0, int64_t pc1, int64_t k0) {
    const int64_t kc = std::min<int64_t>(KC, K - k0);
    const bool first = k0 == 0, last = k0 + kc == K;
    for (int64_t t = tc0; t < tc1; ++t) {  // the x block, [tile][kc][MR]
      const int64_t m0 = t * kGemmMR;
      const int rows = static_cast<int>(std::min<int64_t>(kGemmMR, M - m0));
      pack_transposed(x + m0 * K + k0, K, rows, kc, xb + (t - tc0) * kc * kGemmMR, kGemmMR, kGemmMR);
    }
    // W micro-panel p of this KC pass, and the tile of outputs (row tile t, panel p),
    // prefetching pf_lines cache lines into L2 from pf on.
    auto panel = [&](int64_t p) { return wp + p * K * kGemmNR + k0 * kGemmNR; };
    auto tile = [&](int64_t t, int64_t p, const float* pf, int64_t pf_lines) {
      const int64_t m0 = t * kGemmMR, n0 = p * kGemmNR;
      const int rows = static_cast<int>(std::min<int64_t>(kGemmMR, M - m0));
      const int n_valid = static_cast<int>(std::min<int64_t>(kGemmNR, N - n0));
      gemm_tile_for_rows(rows)(kc, xb + (t - tc0) * kc * kGemmMR, panel(p), y + m0 * N + n0, N, n_valid, first, last,
                               bias ? bias + n0 : nullptr, act, residual ? residual + m0 * N + n0 : nullptr, pf,
                               pf_lines);
    };
    const int64_t panel_lines = kc * kGemmNR / 16;  // cache lines of one micro-panel
    if (stream) {  // x tile in L1, W from L2
      for (int64_t t = tc0; t < tc1; ++t) {
        // The thread's first tile reads this block of W first, from memory: it
        // prefetches each next micro-panel into L2 while it computes on this one.
        const bool fetch = t == t_begin;
        for (int64_t p = pc0; p < pc1; ++p) {
          const bool pf = fetch && p + 1 < pc1;
          tile(t, p, pf ? panel(p + 1) : nullptr, pf ? panel_lines : 0);
        }
      }
      return;
    }
    // W micro-panel in L1, the next one to L2: its prefetch is spread over the tiles.
    const int64_t per_tile = ceil_div(panel_lines, tc1 - tc0);
    for (int64_t p = pc0; p < pc1; ++p)
      for (int64_t t = tc0; t < tc1; ++t) {
        const int64_t first_line = (t - tc0) * per_tile;
        const bool pf = p + 1 < pc1 && first_line < panel_lines;
        tile(t, p, pf ? panel(p + 1) + first_line * 16 : nullptr,
             pf ? std::min(per_tile, panel_lines - first_line) : 0);
      }
  };
  if (K < 2 * KC) {
    const int64_t nc = gemm_block_panels(K);
    for (int64_t pc0 = p_begin; pc0 < p_end; pc0 += nc)
      for (int64_t tc0 = t_begin; tc0 < t_end; tc0 += MCT)
        for (int64_t k0 = 0; k0 < K; k0 += KC)
          pass(tc0, std::min<int64_t>(t_end, tc0 + MCT), pc0, std::min<int64_t>(p_end, pc0 + nc), k0);
  } else {
    for (int64_t pc0 = p_begin; pc0 < p_end; pc0 += NCP)
      for (int64_t k0 = 0; k0 < K; k0 += KC)
        for (int64_t tc0 = t_begin; tc0 < t_end; tc0 += MCT)
          pass(tc0, std::min<int64_t>(t_end, tc0 + MCT), pc0, std::min<int64_t>(p_end, pc0 + NCP), k0);
  }
}

// When K == 0 the product is empty: y = residual + act(bias) (or act(0)).
static void gemm_fill_epilogue(int64_t M, int64_t N, const float* bias, Activation act, const float* residual,
                               float* y) {
  for (int64_t m = 0; m < M; ++m) {
    int64_t n = 0;
    for (; n < N; n += Vec::W) {
      const int cnt = static_cast<int>(std::min<int64_t>(Vec::W, N - n));
      Vec::F v = apply_activation(bias ? Vec::load_n(bias + n, cnt) : Vec::zero(), act);
      if (residual) v = Vec::add(Vec::load_n(residual + m * N + n, cnt), v);
      Vec::store_n(y + m * N + n, v, cnt);
    }
  }
}


// Most FMAs of one GEMM task: a task is what a thread claims at once, and what it
// finishes before it sees a cancellation (~10-30 ms on one core).
constexpr int64_t kGemmTaskFma = int64_t{1} << 30;

// Packs W (when given unpacked), then computes the tasks of the output: the cells of
// the thread grid of gemm_thread_grid, cut further (at row-tile and column-block
// boundaries, so that no cell changes loop order) into parts that threads claim one
// at a time; a thread that is preempted or late holds back at most one part.
static void gemm_run_impl(const float* x, int64_t M, int64_t K, const float* w, const float* wp, int64_t N,
                          const float* bias, Activation act, const float* residual, float* y) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    gemm_fill_epilogue(M, N, bias, act, residual, y);
    return;
  }
  const int64_t row_tiles = ceil_div(M, kGemmMR), panels = ceil_div(N, kGemmNR);
  if (w) {
    AlignedBuffer& wbuf = gemm_scratch_w();
    wbuf.reserve_discard(static_cast<size_t>(gemm_packed_size(N, K)));
    float* wpack = wbuf.data();
    parallel_for(panels, threads_for(panels * K * kGemmNR, 1 << 15),
                 [&](int64_t b, int64_t e) { gemm_pack_panels(w, N, K, wpack, b, e); });
    wp = wpack;
  }
  const int nthreads = threads_for(M * N * K, 1 << 17);
  int tm = 1, tn = 1;
  gemm_thread_grid(nthreads, row_tiles, panels, K, &tm, &tn);
  const int64_t cell_tiles = ceil_div(row_tiles, tm), cell_panels = ceil_div(panels, tn);
  // Row parts: only for cells in the streaming order, and only into parts that stay in it.
  const int64_t stream_tiles = ceil_div(kGemmStreamRows, kGemmMR);
  int64_t fm = 1;
  if (nthreads > 1 && cell_tiles >= 2 * stream_tiles) fm = std::min<int64_t>(kChunksPerThread, cell_tiles / stream_tiles);
  // Column parts (whole column blocks) until a part is at most kGemmTaskFma.
  const int64_t block_panels = gemm_block_panels(K), cell_blocks = ceil_div(cell_panels, block_panels);
  const int64_t part_fma = ceil_div(cell_tiles, fm) * kGemmMR * cell_panels * kGemmNR * K;
  int64_t fn = std::min<int64_t>(cell_blocks, ceil_div(part_fma, kGemmTaskFma));
  if (nthreads > 1 && tm == 1 && fm == 1) fn = std::max<int64_t>(fn, std::min<int64_t>(cell_blocks, kChunksPerThread));
  fn = std::max<int64_t>(fn, 1);
  // Still too large (one column block of many rows): more row parts.
  const int64_t block_fma = ceil_div(cell_tiles, fm) * kGemmMR * block_panels * kGemmNR * K;
  if (block_fma > kGemmTaskFma) {
    const int64_t more = ceil_div(block_fma, kGemmTaskFma);
    fm = std::min<int64_t>(cell_tiles, fm * more);
  }
  const int64_t cells = int64_t{tm} * tn, parts = fm * fn;
  // Task order: part-major, so that with threads progressing evenly each keeps to
  // its own cell (the static assignment) and only late threads change it.
  parallel_tasks(cells * parts, nthreads, [&](int64_t task) {
    const int64_t cell = task % cells, part = task / cells;
    const int64_t im = cell / tn, in = cell % tn, a = part / fn, b = part % fn;
    const int64_t t0 = row_tiles * im / tm, t1 = row_tiles * (im + 1) / tm;
    const int64_t p0 = panels * in / tn, p1 = panels * (in + 1) / tn;
    const int64_t nb = ceil_div(p1 - p0, block_panels);
    const int64_t pb = p0 + (nb * b / fn) * block_panels, pe = std::min(p1, p0 + (nb * (b + 1) / fn) * block_panels);
    gemm_compute_block(x, M, K, wp, N, bias, act, residual, y, t0 + (t1 - t0) * a / fm, t0 + (t1 - t0) * (a + 1) / fm,
                       pb, pe);
  });
}

static void gemm_run(const float* x, int64_t M, int64_t K, const float* w, const float* wp, int64_t N,
                     const float* bias, Activation act, const float* residual, float* y) {
  gemm_run_impl(x, M, K, w, wp, N, bias, act, residual, y);
  if (gemm_scratch_x().size() > kScratchKeepFloats) gemm_scratch_x().release();
  if (gemm_scratch_w().size() > kScratchKeepFloats) gemm_scratch_w().release();
}

static void linear_packed(const float* x, int64_t M, int64_t K, const float* packed, int64_t N, const float* bias,
                          Activation act, const float* residual, float* y) {
  gemm_run(x, M, K, nullptr, packed, N, bias, act, residual, y);
}

// ---------------------------------------------------------------------------
// Few rows, unpacked W: the decode case. Memory-bound on W, so W is streamed once,
// straight from its [N,K] layout (no packing pass), as dot products along K:
// up to kSkinnyMB rows of x against kSkinnyNB(rows) rows of W per register block.
// Each output is its own chain over k: blocking never changes a result.
// ---------------------------------------------------------------------------

template <int MB, int NB>
static void skinny_block(const float* x, int64_t K, const float* w, float* y, int64_t ldy, const float* next) {
  using V = Vec;
  typename V::F acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = V::zero();
  // next: the W rows of the following block (NB * K floats from there), or null.
  // Their cache lines are requested a few per step, spread over this block's loop,
  // so the loads of the next block hit cache: the hardware prefetchers alone keep
  // too few lines in flight for NB interleaved short rows.
  constexpr int64_t kLine = 64 / sizeof(float);
  const int64_t next_lines = next ? (NB * K + kLine - 1) / kLine : 0;
  int64_t line = 0;
  int64_t k = 0;
  for (; k + V::W <= K; k += V::W) {
    for (int p = 0; p < NB && line < next_lines; ++p, ++line) __builtin_prefetch(next + line * kLine, 0, 3);
    typename V::F wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = V::load(w + j * K + k);
    for (int i = 0; i < MB; ++i) {
      const typename V::F xv = V::load(x + i * K + k);
      for (int j = 0; j < NB; ++j) acc[i][j] = V::muladd(xv, wv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const int rem = static_cast<int>(K - k);
    typename V::F wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = V::load_n(w + j * K + k, rem);
    for (int i = 0; i < MB; ++i) {
      const typename V::F xv = V::load_n(x + i * K + k, rem);
      for (int j = 0; j < NB; ++j) acc[i][j] = V::muladd(xv, wv[j], acc[i][j]);
    }
  }
  for (; line < next_lines; ++line) __builtin_prefetch(next + line * kLine, 0, 3);
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) y[i * ldy + j] = V::hsum(acc[i][j]);
}

using SkinnyFn = void (*)(const float*, int64_t, const float*, float*, int64_t, const float*);

// skinny_block<mb, nb> for 1 <= mb <= kSkinnyMB and 1 <= nb <= kSkinnyNB(mb).
template <int MB, int... J>
static SkinnyFn skinny_pick(int nb, std::integer_sequence<int, J...>) {
  static constexpr SkinnyFn fns[] = {&skinny_block<MB, J + 1>...};
  return fns[nb - 1];
}

template <int MB = 1>
static SkinnyFn skinny_for(int mb, int nb) {
  if constexpr (MB < kSkinnyMB) {
    if (mb != MB) return skinny_for<MB + 1>(mb, nb);
  }
  return skinny_pick<MB>(nb, std::make_integer_sequence<int, kSkinnyNB(MB)>{});
}

static void linear_skinny(const float* x, int64_t M, int64_t K, const float* w, int64_t N, const float* bias,
                          Activation act, float* y) {
  constexpr int kGroup = kSkinnyNB(1);  // W rows per unit of work (the widest block)
  const int64_t groups = ceil_div(N, kGroup);
  // Software prefetch pays where W comes from beyond L1/L2; on small W it is overhead.
  const bool prefetch = N * K * static_cast<int64_t>(sizeof(float)) >= (256 << 10);
  parallel_for(groups, threads_for(M * N * K, 1 << 16), [&](int64_t g0, int64_t g1) {
    const int64_t n_begin = g0 * kGroup, n_end = std::min<int64_t>(N, g1 * kGroup);
    // W block outside, rows of x inside: W (the big operand) is read from memory
    // once; the next block is prefetched while the first rows of x use this one.
    for (int64_t n = n_begin; n < n_end; n += kGroup) {
      const int64_t n_stop = std::min<int64_t>(n_end, n + kGroup);
      const float* next = prefetch && n_stop < n_end ? w + n_stop * K : nullptr;
      for (int64_t m = 0; m < M; m += kSkinnyMB) {
        const int mb = static_cast<int>(std::min<int64_t>(kSkinnyMB, M - m));
        const int nb_max = kSkinnyNB(mb);
        for (int64_t nn = n; nn < n_stop; nn += nb_max) {
          const int nb = static_cast<int>(std::min<int64_t>(nb_max, n_stop - nn));
          const float* pf = (m == 0 && nn == n) ? next : nullptr;
          skinny_for(mb, nb)(x + m * K, K, w + nn * K, y + m * N + nn, N, pf);
        }
      }
    }
    if (bias || act != Activation::kNone) {
      for (int64_t m = 0; m < M; ++m) {
        float* row = y + m * N;
        for (int64_t n = n_begin; n < n_end; n += Vec::W) {
          const int cnt = static_cast<int>(std::min<int64_t>(Vec::W, n_end - n));
          Vec::F v = Vec::load_n(row + n, cnt);
          if (bias) v = Vec::add(v, Vec::load_n(bias + n, cnt));
          Vec::store_n(row + n, apply_activation(v, act), cnt);
        }
      }
    }
  });
}

static void linear(const float* x, int64_t M, int64_t K, const float* w, int64_t N, const float* bias,
                   Activation act, float* y) {
  if (M <= kSkinnyMaxRows && M > 0 && N > 0 && K > 0) {
    linear_skinny(x, M, K, w, N, bias, act, y);
    return;
  }
  gemm_run(x, M, K, w, nullptr, N, bias, act, nullptr, y);
}

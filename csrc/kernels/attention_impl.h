// Scaled dot-product attention, tiled with an online softmax (flash-attention
// style): memory is O(block) per thread, never O(Lq x Lk).
// Included inside an ISA namespace after simd_<isa>.h, simd_math.h, gemm_impl.h.
// The including file defines:
//   kAttnBq  query rows per work item (the unit of parallelism with b and h)
//   kAttnRB  query rows per register block
// A key block is kAttnKV vectors wide (kAttnBk keys).
//
// For each work item (b, h, block of queries), over key blocks j0 = 0, Bk, ...:
//   S = scale * Q K^T (masked to -inf), m' = max(m, rowmax S), P = exp(S - m'),
//   l = l e^(m - m') + rowsum P,  O = O e^(m - m') + P V;   finally out = O / l.
// Each output row is computed by one thread in a fixed order: results do not
// depend on the thread count, on Lq, or on the query block a row falls in.
#pragma once

constexpr int kAttnKV = 4;
constexpr int kAttnBk = kAttnKV * Vec::W;

struct AttnScratch {
  AlignedBuffer kt;     // [D][Lk_pad]  K of one (b, h), transposed
  AlignedBuffer kmask;  // [Lk_pad]     0 for a visible key, -inf for padding
  AlignedBuffer s;      // [Bq][Bk]     scores, then probabilities
  AlignedBuffer o;      // [Bq][Dp]     unnormalised output rows
  AlignedBuffer ml;     // [2][Bq]      running max m and sum l
};

static AttnScratch& attn_scratch() {
  static thread_local AttnScratch scratch;
  return scratch;
}

// s[r][:NV*W] = scale * (q_r . kt[:, :NV*W]) + kmask[:NV*W] for R query rows q (row
// stride ldq); kt has row stride ldk. scale * dot is one fused op with the mask
// (exactly scale * dot where the mask is 0), and -inf where the mask is -inf.
// NV (<= kAttnKV) vectors of keys: a block's keys past its last vector that holds
// one are never read (a short block, e.g. early decode steps, reads only its keys).
template <int R, int NV>
static void attn_scores(const float* q, int64_t ldq, const float* kt, int64_t ldk, int64_t D, float scale,
                        const float* kmask, float* s) {
  using V = Vec;
  typename V::F acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  for (int64_t d = 0; d < D; ++d) {
    typename V::F kv[NV];
    for (int v = 0; v < NV; ++v) kv[v] = V::load(kt + d * ldk + v * V::W);
    for (int r = 0; r < R; ++r) {
      const typename V::F qv = V::set1(q[r * ldq + d]);
      for (int v = 0; v < NV; ++v) acc[r][v] = V::muladd(qv, kv[v], acc[r][v]);
    }
  }
  const typename V::F vs = V::set1(scale);
  for (int v = 0; v < NV; ++v) {
    const typename V::F mv = V::load(kmask + v * V::W);
    // A masked key scores -inf whatever the dot product is (NaN or inf in a masked key
    // or in the query must not leak through NaN + -inf).
    const typename V::Mask masked = V::lt(mv, V::zero());
    for (int r = 0; r < R; ++r)
      V::store(s + r * kAttnBk + v * V::W, V::select(masked, mv, V::fmadd(acc[r][v], vs, mv)));
  }
}

// o[r][d0 : d0 + NV*W] += sum_{c < nk} p[r][c] v_c[d0 : ...] for R rows; `cnt` valid
// floats in the last vector (W when the chunk is full: plain loads).
template <int R, int NV, bool kFull>
static void attn_accumulate_chunk(const float* p, const float* v, int64_t ldv, int nk, float* o, int64_t ldo, int cnt) {
  using V = Vec;
  typename V::F acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < NV; ++u) acc[r][u] = V::load(o + r * ldo + u * V::W);
  for (int c = 0; c < nk; ++c) {
    const float* vrow = v + c * ldv;
    typename V::F vv[NV];
    for (int u = 0; u < NV; ++u) vv[u] = (kFull || u + 1 < NV) ? V::load(vrow + u * V::W) : V::load_n(vrow + u * V::W, cnt);
    for (int r = 0; r < R; ++r) {
      const typename V::F pv = V::set1(p[r * kAttnBk + c]);
      for (int u = 0; u < NV; ++u) acc[r][u] = V::muladd(pv, vv[u], acc[r][u]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < NV; ++u) V::store(o + r * ldo + u * V::W, acc[r][u]);
}

// o[r][:D] += sum_{c < nk} p[r][c] v_c for R rows (o row stride ldo, zero-padded to
// whole vectors; v row stride ldv), in chunks of kChunk vectors of D.
template <int R>
static void attn_accumulate(const float* p, const float* v, int64_t ldv, int nk, int64_t D, float* o, int64_t ldo) {
  constexpr int kChunk = 4;
  int64_t d0 = 0;
  for (; d0 + kChunk * Vec::W <= D; d0 += kChunk * Vec::W)
    attn_accumulate_chunk<R, kChunk, true>(p, v + d0, ldv, nk, o + d0, ldo, Vec::W);
  // The tail: up to kChunk - 1 whole vectors, then a partial one.
  const int64_t rest = D - d0;
  if (rest == 0) return;
  const int nvec = static_cast<int>(ceil_div(rest, Vec::W));
  const int cnt = static_cast<int>(rest - (nvec - 1) * Vec::W);
  switch (nvec) {
    case 1: attn_accumulate_chunk<R, 1, false>(p, v + d0, ldv, nk, o + d0, ldo, cnt); break;
    case 2: attn_accumulate_chunk<R, 2, false>(p, v + d0, ldv, nk, o + d0, ldo, cnt); break;
    case 3: attn_accumulate_chunk<R, 3, false>(p, v + d0, ldv, nk, o + d0, ldo, cnt); break;
    default: attn_accumulate_chunk<R, 4, false>(p, v + d0, ldv, nk, o + d0, ldo, cnt); break;
  }
}

// The online-softmax update of one query row with one key block: srow [bw] holds
// the row's scores for the block's first bw keys (a multiple of W, at least every
// key of the block; keys from first_hidden on are cut: causal, or past Lk) and
// becomes its probabilities P = exp(S - m'); the running max m, sum l and output
// row o [Dp] are rescaled by e^(m - m'). kmask: the block's key mask. A block in
// which nothing visible scores above -inf adds nothing (P = 0), but a visible -inf
// key is remembered in visible_neg_inf (see the final normalisation).
static void attn_softmax_update(float* srow, int bw, int64_t first_hidden, const float* kmask, float* o,
                                int64_t Dp, float& m, float& l, bool& visible_neg_inf) {
  const float neg_inf = -__builtin_inff();
  if (first_hidden < bw) {
    const Vec::F cut = Vec::set1(static_cast<float>(first_hidden));
    for (int c = 0; c < bw; c += Vec::W) {
      const Vec::F idx = Vec::add(Vec::iota(), Vec::set1(static_cast<float>(c)));
      Vec::store(srow + c, Vec::select(Vec::ge(idx, cut), Vec::set1(neg_inf), Vec::load(srow + c)));
    }
  }
  Vec::F vmax = Vec::set1(neg_inf);
  for (int c = 0; c < bw; c += Vec::W) vmax = Vec::max(vmax, Vec::load(srow + c));
  float m_new = std::max(m, Vec::hmax(vmax));
  if (m_new == neg_inf) {
    // x86 max drops NaN lanes: a row of NaN scores (a NaN query) looks empty.
    bool nan = false;
    for (int c = 0; c < bw; ++c) nan |= srow[c] != srow[c];
    if (!nan) {  // nothing visible with a finite score yet: this block adds nothing
      for (int64_t c = 0; c < first_hidden && !visible_neg_inf; ++c) visible_neg_inf = kmask[c] == 0.0f;
      std::fill(srow, srow + bw, 0.0f);
      return;
    }
    m_new = __builtin_nanf("");  // NaN spreads through p, l and the output
  }
  const Vec::F vm = Vec::set1(m_new);
  Vec::F vsum = Vec::zero();
  for (int c = 0; c < bw; c += Vec::W) {
    const Vec::F e = exp(Vec::sub(Vec::load(srow + c), vm));
    vsum = Vec::add(vsum, e);
    Vec::store(srow + c, e);
  }
  if (!(m == m_new)) {  // also when m_new is NaN
    const float alpha = m == neg_inf ? 0.0f : Vec::lane0(exp(Vec::set1(m - m_new)));
    l *= alpha;
    const Vec::F va = Vec::set1(alpha);
    for (int64_t d = 0; d < Dp; d += Vec::W) Vec::store(o + d, Vec::mul(Vec::load(o + d), va));
    m = m_new;
  }
  l += Vec::hsum(vsum);
}

// Calls f(std::integral_constant<int, N>) for N = n, 1 <= n <= Max (a run-time count
// as a template argument: rows of a register block, vectors of a key block).
template <int Max, int N = 1, class F>
static void with_count(int n, F&& f) {
  if constexpr (N <= Max) {
    if (n == N) {
      f(std::integral_constant<int, N>{});
      return;
    }
    with_count<Max, N + 1>(n, f);
  }
}

static void attention(Tensor4View q, Tensor4View k, Tensor4View v, float* out, int64_t out_bs, int64_t out_hs,
                      int64_t out_rs, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv,
                      const uint8_t* key_padding_mask, bool causal, int64_t causal_offset, float scale) {
  if (B == 0 || H == 0 || Lq == 0 || Dv == 0) return;
  const int64_t q_blocks = ceil_div(Lq, kAttnBq);
  const int64_t items = B * H * q_blocks;
  const int64_t Dp = ceil_div(Dv, Vec::W) * Vec::W;
  const int64_t Lk_pad = ceil_div(std::max<int64_t>(Lk, 1), kAttnBk) * kAttnBk;
  const float neg_inf = -__builtin_inff();
  parallel_for(items, threads_for(items * kAttnBq * std::max<int64_t>(Lk, 1) * (D + Dv), 1 << 15),
               [&](int64_t it0, int64_t it1) {
    AttnScratch& sc = attn_scratch();
    if (!k.transposed) sc.kt.reserve_discard(static_cast<size_t>(std::max<int64_t>(D, 1) * Lk_pad));
    sc.kmask.reserve_discard(static_cast<size_t>(Lk_pad));
    sc.s.reserve_discard(static_cast<size_t>(kAttnBq * kAttnBk));
    sc.o.reserve_discard(static_cast<size_t>(kAttnBq * Dp));
    sc.ml.reserve_discard(static_cast<size_t>(2 * kAttnBq));
    float* kt = sc.kt.data();
    float* kmask = sc.kmask.data();
    float* s = sc.s.data();
    float* o = sc.o.data();
    float* m = sc.ml.data();
    float* l = m + kAttnBq;
    int64_t packed_bh = -1;  // the (b, h) whose K sits in ktp
    const float* ktp = kt;   // K^T of that (b, h): the scratch copy, or the caller's
    int64_t ldk = Lk_pad;
    for (int64_t item = it0; item < it1; ++item) {
      const int64_t bh = item / q_blocks, b = bh / H, h = bh % H, qb = item % q_blocks;
      const int64_t i0 = qb * kAttnBq;
      const int nq = static_cast<int>(std::min<int64_t>(kAttnBq, Lq - i0));
      const float* qp = q.data + b * q.batch_stride + h * q.head_stride + i0 * q.row_stride;
      const float* vp = v.data + b * v.batch_stride + h * v.head_stride;
      int64_t k_end = Lk;
      if (causal) k_end = std::min<int64_t>(Lk, std::max<int64_t>(0, i0 + nq + causal_offset));
      if (bh != packed_bh) {
        // K of this (b, h), transposed once for all its query blocks; the key mask.
        const float* kp = k.data + b * k.batch_stride + h * k.head_stride;
        if (k.transposed) {
          ktp = kp;
          ldk = k.row_stride;
        } else {
          for (int64_t j0 = 0; j0 < Lk_pad; j0 += kAttnBk) {
            const int nk = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kAttnBk, Lk - j0)));
            pack_transposed(kp + j0 * k.row_stride, k.row_stride, nk, D, kt + j0, Lk_pad, kAttnBk);
          }
        }
        const uint8_t* pad = key_padding_mask ? key_padding_mask + b * Lk : nullptr;
        for (int64_t j = 0; j < Lk_pad; ++j) kmask[j] = (j >= Lk || (pad && pad[j])) ? neg_inf : 0.0f;
        packed_bh = bh;
      }
      // Rows that saw a visible key scoring -inf while nothing scored higher: if that
      // stays so, the softmax is exp(-inf - -inf) = NaN (as in the reference and torch),
      // unlike a row that sees no key at all (zeros).
      bool visible_neg_inf[kAttnBq];
      for (int r = 0; r < nq; ++r) {
        m[r] = neg_inf;
        l[r] = 0.0f;
        visible_neg_inf[r] = false;
      }
      std::fill(o, o + nq * Dp, 0.0f);
      for (int64_t j0 = 0; j0 < k_end; j0 += kAttnBk) {
        const int nk = static_cast<int>(std::min<int64_t>(kAttnBk, k_end - j0));
        // Scores of the vectors that hold keys: the lanes past them would be cut anyway
        // (exp gives exact zeros there, which add nothing to l or o).
        const int nv = static_cast<int>(ceil_div(nk, Vec::W));
        for (int r0 = 0; r0 < nq; r0 += kAttnRB) {
          const int rows = std::min(kAttnRB, nq - r0);
          with_count<kAttnRB>(rows, [&](auto R) {
            with_count<kAttnKV>(nv, [&](auto NV) {
              attn_scores<R.value, NV.value>(qp + r0 * q.row_stride, q.row_stride, ktp + j0, ldk, D, scale,
                                             kmask + j0, s + r0 * kAttnBk);
            });
          });
        }
        // Causal cut inside the block, then the online-softmax update of each row.
        for (int r = 0; r < nq; ++r) {
          const int64_t last_visible = causal ? i0 + r + causal_offset : Lk - 1;
          const int64_t first_hidden = std::min<int64_t>(last_visible + 1, j0 + nk) - j0;  // keys >= are masked
          attn_softmax_update(s + r * kAttnBk, nv * Vec::W, first_hidden, kmask + j0, o + r * Dp, Dp, m[r], l[r],
                              visible_neg_inf[r]);
        }
        for (int r0 = 0; r0 < nq; r0 += kAttnRB) {
          const int rows = std::min(kAttnRB, nq - r0);
          with_count<kAttnRB>(rows, [&](auto R) {
            attn_accumulate<R.value>(s + r0 * kAttnBk, vp + j0 * v.row_stride, v.row_stride, nk, Dv, o + r0 * Dp, Dp);
          });
        }
      }
      float* op = out + b * out_bs + h * out_hs + i0 * out_rs;
      for (int r = 0; r < nq; ++r) {
        const float nan = __builtin_nanf("");
        const Vec::F inv = Vec::set1(m[r] == neg_inf && visible_neg_inf[r] ? nan : l[r] > 0.0f ? 1.0f / l[r] : 0.0f);
        for (int64_t d = 0; d < Dv; d += Vec::W) {
          const int cnt = static_cast<int>(std::min<int64_t>(Vec::W, Dv - d));
          Vec::store_n(op + r * out_rs + d, Vec::mul(Vec::load(o + r * Dp + d), inv), cnt);
        }
      }
    }
  });
}

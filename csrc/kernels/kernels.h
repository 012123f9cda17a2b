// The kernel interface: plain functions over raw float pointers and sizes.
//
// Every kernel exists once per instruction set (generic C++, AVX2+FMA, AVX-512)
// and is reached through the table of the set chosen at import time
// (dispatch.cpp). All shapes are row-major and contiguous unless a stride says
// otherwise. Kernels parallelise internally over OpenMP with pt::get_num_threads()
// threads and never split a reduction between threads, so results are bitwise
// identical for any thread count. Callers validate shapes; kernels trust them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pt::kernels {

enum class Activation : int { kNone = 0, kRelu = 1, kGelu = 2, kSilu = 3 };

// Strided view of a [B, H, L, D] tensor: element (b, h, i, d) lives at
// data[b*batch_stride + h*head_stride + i*row_stride + d]; or, when `transposed`
// (keys only), at data[b*batch_stride + h*head_stride + d*row_stride + i], with
// every row readable and finite (zeros) up to L rounded up to attention_key_block.
struct Tensor4View {
  const float* data;
  int64_t batch_stride, head_stride, row_stride;
  bool transposed = false;
};

struct KernelTable {
  const char* isa;  // "generic" | "avx2" | "avx512"

  // --- GEMM: y[M,N] = act(x[M,K] @ W[N,K]^T + bias[N]) -------------------------
  // Pre-packed weights: W is re-laid once into column panels of `gemm_nr` rows of W
  // (panel p = [K][gemm_nr], zero-padded past N). Size in floats:
  int64_t (*gemm_packed_size)(int64_t N, int64_t K);
  // w [N,K] -> packed [gemm_packed_size(N, K)]
  void (*gemm_pack)(const float* w, int64_t N, int64_t K, float* packed);
  // The inverse: packed -> w [N,K] (exact; used to export a model's weights).
  void (*gemm_unpack)(const float* packed, int64_t N, int64_t K, float* w);
  // x [M,K], packed from gemm_pack, bias [N] or null, y [M,N]. With a residual
  // [M,N] (or null): y = residual + act(x W^T + bias), the residual add of a
  // Transformer sub-layer fused into the write-back. Neither x nor residual may alias
  // y (x is read block by block while y is written).
  void (*linear_packed)(const float* x, int64_t M, int64_t K, const float* packed, int64_t N,
                        const float* bias, Activation act, const float* residual, float* y);
  // Same result shape from an unpacked W [N,K]: packs per call, or for few rows
  // (the decode case) streams W once with a dot-product kernel.
  void (*linear)(const float* x, int64_t M, int64_t K, const float* w, int64_t N, const float* bias,
                 Activation act, float* y);

  // --- Row-wise ops: x, y [rows, n]; y may alias x -------------------------------
  void (*softmax)(const float* x, float* y, int64_t rows, int64_t n);
  // y = x - max - log(sum(exp(x - max))) per row (log-probabilities from logits).
  void (*log_softmax)(const float* x, float* y, int64_t rows, int64_t n);
  // y = LN(x + residual) * weight + bias over the last axis; residual may be null.
  // weight, bias [n] (either may be null: 1 / 0).
  void (*layer_norm)(const float* x, const float* residual, const float* weight, const float* bias,
                     float eps, float* y, int64_t rows, int64_t n);

  // out[r] = table[ids[r]] * scale + types[type_ids[r]] + positions[first_position + r % seq_len]
  // (added in that order) for r < rows; table [V,E]; types [T,E] or null (no token
  // types; type_ids null means type 0); positions [>= first_position + seq_len, E] or
  // null; out [rows,E]. ids must be in range (callers check); ids null means row r
  // of the table for output row r (table may then be out itself: rows already
  // gathered, e.g. dequantized from an int8 table, finished in place).
  void (*embed)(const float* table, int64_t E, const int32_t* ids, int64_t rows, int64_t seq_len,
                int64_t first_position, float scale, const float* positions, const float* types,
                const int32_t* type_ids, float* out);

  // --- Element-wise: x, y [n]; y may alias x ---------------------------------------
  void (*relu)(const float* x, float* y, int64_t n);
  void (*gelu)(const float* x, float* y, int64_t n);
  void (*silu)(const float* x, float* y, int64_t n);  // x * sigmoid(x), a.k.a. swish

  // --- Attention -----------------------------------------------------------------
  // Keys per block of the attention kernel: a transposed K must be padded to a
  // multiple of it (so a KV cache can be kept transposed and never repacked).
  int attention_key_block;
  // out(b,h,i,:) = sum_j softmax_j(scale * q_i . k_j + mask) v_j, for q [B,H,Lq,D],
  // k [B,H,Lk,D], v [B,H,Lk,Dv], out [B,H,Lq,Dv] (strided views). key_padding_mask: null or
  // uint8 [B, Lk] with nonzero = padding (masked out). causal: key j is visible to
  // query i only when j <= i + causal_offset. A query with no visible key gets zeros.
  void (*attention)(Tensor4View q, Tensor4View k, Tensor4View v, float* out, int64_t out_batch_stride,
                    int64_t out_head_stride, int64_t out_row_stride, int64_t B, int64_t H, int64_t Lq,
                    int64_t Lk, int64_t D, int64_t Dv, const uint8_t* key_padding_mask, bool causal,
                    int64_t causal_offset, float scale);
  // The float32 GEMM's cache blocking for this machine (gemm_impl.h: derived from
  // cache_info() once): out[0] = KC (depth), out[1] = W panels per column block,
  // out[2] = x row tiles per row block; out[3] = MR, out[4] = NR (the register tile).
  void (*gemm_blocking)(int64_t out[5]);
};

// --- int8 GEMM (int8_impl.h): y[M,N] = act(sx[m] sw[n] (xq . Wq^T) + bias) (+ residual)
// xq, Wq int8 in [-127, 127] with one float scale per row (symmetric), int32 sums
// (exact: the same on every ISA and thread count). One set per ISA, and a second on
// CPUs with VNNI (vpdpbusd: AVX512-VNNI, or AVX-VNNI on AVX2 CPUs).
struct Int8Kernels {
  const char* name;  // "generic" | "avx2" | "avx2_vnni" | "avx512" | "avx512_vnni"
  // K rounded up to the row length of quantized activations (bytes).
  int64_t (*padded_k)(int64_t K);
  // Bytes of W [N,K] packed (panels and column sums).
  int64_t (*packed_bytes)(int64_t N, int64_t K);
  // w [N,K] int8 in [-127, 127] -> packed [packed_bytes(N, K)]; and its exact inverse.
  void (*pack)(const int8_t* w, int64_t N, int64_t K, int8_t* packed);
  void (*unpack)(const int8_t* packed, int64_t N, int64_t K, int8_t* w);
  // x [M,K] float -> q [M, padded_k(K)] (this set's format) and scales [M]:
  // q = round(x * 127 / max|x|), scale = max|x| / 127 (0 for a zero row, NaN for a
  // row holding NaN or infinity).
  void (*quantize_rows)(const float* x, int64_t M, int64_t K, int8_t* q, float* scales);
  // x [M,K] int8 in [-127, 127] -> q [M, padded_k(K)] in this set's format (tests).
  void (*load_rows)(const int8_t* x, int64_t M, int64_t K, int8_t* q);
  // q, x_scales from quantize_rows; packed from pack; w_scales [N]; bias [N] or null;
  // residual [M,N] or null (not aliasing y); y [M,N].
  void (*linear)(const int8_t* q, const float* x_scales, int64_t M, int64_t K, const int8_t* packed,
                 const float* w_scales, int64_t N, const float* bias, Activation act, const float* residual,
                 float* y);
  // The exact int32 sums out [M,N] = xq . Wq^T (tests).
  void (*matmul_i32)(const int8_t* q, int64_t M, int64_t K, const int8_t* packed, int64_t N, int32_t* out);
};

// The int8 set that goes with a kernel table on this CPU: its VNNI variant where the
// CPU has VNNI (unless PYTRANSFORMER_VNNI=0), else its own.
const Int8Kernels& int8_for(const KernelTable& table);
// The set of the table's own ISA without VNNI: its rows are signed int8 (the weights'
// format); every set quantizes by the same rule, bit for bit (tests).
const Int8Kernels& int8_signed_for(const KernelTable& table);
// Every int8 set this build and CPU can run (tests compare them), best last.
int int8_available_count();
const Int8Kernels& int8_available(int i);

const Int8Kernels& int8_generic();
const Int8Kernels& int8_avx2();
const Int8Kernels& int8_avx2_vnni();
const Int8Kernels& int8_avx512();
const Int8Kernels& int8_avx512_vnni();

// The table chosen at import: PYTRANSFORMER_ISA (generic|avx2|avx512|auto) if set
// and supported by this CPU, else the best the CPU supports.
const KernelTable& active();
// Every table this build and this CPU can run, best last.
int available_count();
const KernelTable& available(int i);
// Switch the active table by name (testing hook); throws std::invalid_argument for
// an unknown or unsupported name. Not thread-safe against running kernels.
void set_active(const char* isa);
// Non-empty when PYTRANSFORMER_ISA asked for something this CPU cannot run.
const char* isa_request_warning();

// One instantiation per ISA, defined in kernels_<isa>.cpp.
const KernelTable& table_generic();
const KernelTable& table_avx2();
const KernelTable& table_avx512();

}  // namespace pt::kernels

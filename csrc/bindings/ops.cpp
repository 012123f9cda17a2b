// pytransformer.ops: functional ops over numpy arrays. Validation here; the math
// lives in the kernels, called with the GIL released.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/interrupt.h"
#include "kernels/kernels.h"
#include "kernels/positions.h"
#include "model/layers.h"
#include "model/multi_head_attention.h"
#include "runtime/aligned_buffer.h"

namespace pt::bindings {

namespace {
// Ops this large (multiply-adds, or elements) watch for Ctrl-C; smaller ones finish
// within milliseconds and skip the two sigaction calls.
bool watch_sigint(int64_t work) { return work >= (int64_t{1} << 22); }
}  // namespace


using kernels::Activation;

namespace {

std::string dims_str(const std::vector<std::string>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + dims[i];
  return s + "]";
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

Activation parse_activation(py::handle obj, const char* fn) {
  if (obj.is_none()) return Activation::kNone;
  if (!py::isinstance<py::str>(obj))
    throw py::type_error(std::string(fn) + ": activation must be None, 'relu', 'gelu' or 'silu', got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  const std::string s = obj.cast<std::string>();
  if (s == "relu") return Activation::kRelu;
  if (s == "gelu") return Activation::kGelu;
  if (s == "silu") return Activation::kSilu;
  throw py::value_error(std::string(fn) + ": activation must be None, 'relu', 'gelu' or 'silu', got '" + s + "'");
}

float finite_float(py::handle obj, const char* fn, const char* name) {
  if (!py::isinstance<py::float_>(obj) && !py::isinstance<py::int_>(obj) && !py::hasattr(obj, "__float__"))
    throw py::type_error(std::string(fn) + ": " + name + " must be a float");
  py::object as_float = py::reinterpret_steal<py::object>(PyNumber_Float(obj.ptr()));
  if (!as_float) {
    PyErr_Clear();
    throw py::value_error(std::string(fn) + ": " + name + " must be a float that is finite in float32, got " +
                          std::string(py::repr(obj)).substr(0, 40));
  }
  const double v = PyFloat_AsDouble(as_float.ptr());
  const float f = static_cast<float>(v);
  if (!std::isfinite(f))
    throw py::value_error(std::string(fn) + ": " + name + " must be finite in float32, got " + std::to_string(v));
  return f;
}

// ---------------------------------------------------------------------------

py::array_t<float> linear(py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle act_obj) {
  const char* fn = "linear";
  FloatArray x = float_array(x_obj, fn, "x", -1, 1);
  FloatArray w = float_array(w_obj, fn, "weight", 2);
  const int64_t K = x.shape(x.ndim() - 1);
  const int64_t N = w.shape(0);
  check_shape(w, fn, "weight", {-1, K},
              "[out_features, in_features] = [*, " + std::to_string(K) + "] (in_features = x.shape[-1])");
  auto b = optional_float_array(b_obj, fn, "bias");
  if (b) check_shape(*b, fn, "bias", {N}, "[out_features] = [" + std::to_string(N) + "]");
  const Activation act = parse_activation(act_obj, fn);
  std::vector<int64_t> out_shape = shape_of(x);
  out_shape.back() = N;
  check_output_size(fn, "the output", out_shape);
  py::array_t<float> y = new_float_array(out_shape);
  const int64_t M = K > 0 ? x.size() / K : static_cast<int64_t>(y.size() / std::max<int64_t>(N, 1));
  const float* bias = b ? b->data() : nullptr;
  {
    SigintScope watch(watch_sigint(M * N * std::max<int64_t>(K, 1)));
    py::gil_scoped_release release;
    kernels::active().linear(x.data(), M, K, w.data(), N, bias, act, y.mutable_data());
  }
  return y;
}

py::array_t<float> softmax(py::handle x_obj) {
  FloatArray x = float_array(x_obj, "softmax", "x", -1, 1);
  const int64_t n = x.shape(x.ndim() - 1);
  py::array_t<float> y = new_float_array(shape_of(x));
  const int64_t rows = n > 0 ? x.size() / n : 0;
  {
    SigintScope watch(watch_sigint(rows * n));
    py::gil_scoped_release release;
    kernels::active().softmax(x.data(), y.mutable_data(), rows, n);
  }
  return y;
}

py::array_t<float> layer_norm(py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle eps_obj,
                              py::handle r_obj) {
  const char* fn = "layer_norm";
  FloatArray x = float_array(x_obj, fn, "x", -1, 1);
  const int64_t n = x.shape(x.ndim() - 1);
  const std::string nshape = "[" + std::to_string(n) + "] (x.shape[-1])";
  auto w = optional_float_array(w_obj, fn, "weight");
  if (w) check_shape(*w, fn, "weight", {n}, nshape);
  auto b = optional_float_array(b_obj, fn, "bias");
  if (b) check_shape(*b, fn, "bias", {n}, nshape);
  const float eps = finite_float(eps_obj, fn, "eps");
  if (eps < 0.0f) throw py::value_error("layer_norm: eps must be >= 0, got " + std::to_string(eps));
  auto r = optional_float_array(r_obj, fn, "residual");
  if (r) check_shape(*r, fn, "residual", shape_of(x), shape_str(x) + " (the shape of x)");
  py::array_t<float> y = new_float_array(shape_of(x));
  const int64_t rows = n > 0 ? x.size() / n : 0;
  {
    SigintScope watch(watch_sigint(rows * n));
    py::gil_scoped_release release;
    kernels::active().layer_norm(x.data(), r ? r->data() : nullptr, w ? w->data() : nullptr, b ? b->data() : nullptr,
                                 eps, y.mutable_data(), rows, n);
  }
  return y;
}

template <class Kernel>
py::array_t<float> elementwise(py::handle x_obj, const char* fn, Kernel kernel) {
  FloatArray x = float_array(x_obj, fn, "x");
  py::array_t<float> y = new_float_array(shape_of(x));
  {
    SigintScope watch(watch_sigint(static_cast<int64_t>(x.size())));
    py::gil_scoped_release release;
    kernel(x.data(), y.mutable_data(), static_cast<int64_t>(x.size()));
  }
  return y;
}

py::array_t<float> relu(py::handle x) { return elementwise(x, "relu", kernels::active().relu); }
py::array_t<float> gelu(py::handle x) { return elementwise(x, "gelu", kernels::active().gelu); }
py::array_t<float> silu(py::handle x) { return elementwise(x, "silu", kernels::active().silu); }

py::array_t<float> attention(py::handle q_obj, py::handle k_obj, py::handle v_obj, py::handle mask_obj, bool causal,
                             py::handle scale_obj) {
  const char* fn = "attention";
  FloatArray q = float_array(q_obj, fn, "q", 4);
  FloatArray k = float_array(k_obj, fn, "k", 4);
  FloatArray v = float_array(v_obj, fn, "v", 4);
  const int64_t B = q.shape(0), H = q.shape(1), Lq = q.shape(2), D = q.shape(3);
  const int64_t Lk = k.shape(2), Dv = v.shape(3);
  const std::string sB = std::to_string(B), sH = std::to_string(H), sD = std::to_string(D);
  check_shape(k, fn, "k", {B, H, -1, D}, dims_str({sB, sH, "Lk", sD}) + " (batch, heads and head size of q)");
  check_shape(v, fn, "v", {B, H, Lk, -1},
              dims_str({sB, sH, std::to_string(Lk), "Dv"}) + " (batch and heads of q, length of k)");
  auto mask = optional_bool_mask(mask_obj, fn, "key_padding_mask", B, Lk,
                                 dims_str({sB, std::to_string(Lk)}) + " (batch, key length)");
  float scale = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(D, 1)));
  if (!scale_obj.is_none()) scale = finite_float(scale_obj, fn, "scale");
  py::array_t<float> out = new_float_array({B, H, Lq, Dv});
  const uint8_t* mp = mask ? reinterpret_cast<const uint8_t*>(mask->data()) : nullptr;
  {
    SigintScope watch(watch_sigint(B * H * Lq * (Lk + 1) * (D + Dv)));
    py::gil_scoped_release release;
    kernels::active().attention({q.data(), H * Lq * D, Lq * D, D}, {k.data(), H * Lk * D, Lk * D, D},
                                {v.data(), H * Lk * Dv, Lk * Dv, Dv}, out.mutable_data(), H * Lq * Dv, Lq * Dv, Dv,
                                B, H, Lq, Lk, D, Dv, mp, causal, 0, scale);
  }
  return out;
}

py::array_t<float> multi_head_attention(py::handle q_obj, py::handle k_obj, py::handle v_obj, py::handle inw_obj,
                                        py::handle inb_obj, py::handle outw_obj, py::handle outb_obj,
                                        py::handle heads_obj, py::handle mask_obj, bool causal) {
  const char* fn = "multi_head_attention";
  const int64_t num_heads = nonnegative_int(heads_obj, fn, "num_heads");
  FloatArray q = float_array(q_obj, fn, "query", 3);
  const int64_t B = q.shape(0), Lq = q.shape(1), E = q.shape(2);
  if (num_heads < 1 || E % num_heads != 0)
    throw py::value_error("multi_head_attention: num_heads must be >= 1 and divide the embedding size " +
                          std::to_string(E) + ", got " + std::to_string(num_heads));
  // Keep identity: the same array for query/key/value lets the projections fuse.
  FloatArray k = k_obj.is(q_obj) ? q : float_array(k_obj, fn, "key", 3);
  FloatArray v = v_obj.is(k_obj) ? k : float_array(v_obj, fn, "value", 3);
  const int64_t Lk = k.shape(1);
  const std::string sB = std::to_string(B), sE = std::to_string(E);
  check_shape(k, fn, "key", {B, -1, E}, dims_str({sB, "Lk", sE}) + " (batch and embedding size of query)");
  check_shape(v, fn, "value", {B, Lk, E}, dims_str({sB, std::to_string(Lk), sE}) + " (the shape of key)");
  FloatArray inw = float_array(inw_obj, fn, "in_proj_weight", 2);
  check_shape(inw, fn, "in_proj_weight", {3 * E, E}, dims_str({std::to_string(3 * E), sE}) + " (3*E, E)");
  auto inb = optional_float_array(inb_obj, fn, "in_proj_bias");
  if (inb) check_shape(*inb, fn, "in_proj_bias", {3 * E}, "[" + std::to_string(3 * E) + "] (3*E)");
  FloatArray outw = float_array(outw_obj, fn, "out_proj_weight", 2);
  check_shape(outw, fn, "out_proj_weight", {E, E}, dims_str({sE, sE}));
  auto outb = optional_float_array(outb_obj, fn, "out_proj_bias");
  if (outb) check_shape(*outb, fn, "out_proj_bias", {E}, "[" + sE + "]");
  auto mask = optional_bool_mask(mask_obj, fn, "key_padding_mask", B, Lk,
                                 dims_str({sB, std::to_string(Lk)}) + " (batch, key length)");
  py::array_t<float> out = new_float_array({B, Lq, E});
  const uint8_t* mp = mask ? reinterpret_cast<const uint8_t*>(mask->data()) : nullptr;
  {
    SigintScope watch(watch_sigint(B * (Lq + Lk) * E * E));
    py::gil_scoped_release release;
    model::multi_head_attention(q.data(), k.data(), v.data(), B, Lq, Lk, E, inw.data(), inb ? inb->data() : nullptr,
                                outw.data(), outb ? outb->data() : nullptr, num_heads, mp, causal,
                                out.mutable_data());
  }
  return out;
}

py::array_t<float> positional_encoding(py::handle length_obj, py::handle d_obj) {
  const int64_t length = nonnegative_int(length_obj, "positional_encoding", "length");
  const int64_t d_model = nonnegative_int(d_obj, "positional_encoding", "d_model");
  check_output_size("positional_encoding", "the table", {length, d_model});
  py::array_t<float> out = new_float_array({length, d_model});
  {
    SigintScope watch(watch_sigint(length * d_model));
    py::gil_scoped_release release;
    if (length > 0 && d_model > 0) kernels::positional_encoding(out.mutable_data(), length, d_model);
  }
  return out;
}

// --- int8 -----------------------------------------------------------------------

using Int8In = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
using kernels::Int8Kernels;

const Int8Kernels& int8_set(py::handle name, const char* fn) {
  if (name.is_none()) return kernels::int8_for(kernels::active());
  if (!py::isinstance<py::str>(name)) throw py::type_error(std::string(fn) + ": kernel must be None or a str");
  const std::string s = name.cast<std::string>();
  std::string names;
  for (int i = 0; i < kernels::int8_available_count(); ++i) {
    const Int8Kernels& k = kernels::int8_available(i);
    if (s == k.name) return k;
    names += std::string(i ? ", " : "") + k.name;
  }
  throw py::value_error(std::string(fn) + ": int8 kernel '" + s + "' is not available here (available: " + names +
                        ")");
}

// An int8 array of rank `ndim` (or >= min_ndim when ndim < 0) with values in [-127, 127].
Int8In int8_array(py::handle obj, const char* fn, const char* name, int ndim, int min_ndim = 0) {
  if (!py::isinstance<py::array>(obj) || !py::reinterpret_borrow<py::array>(obj).dtype().is(py::dtype::of<int8_t>()))
    throw py::type_error(std::string(fn) + ": " + name + " must be an int8 numpy array");
  Int8In a = ensure_aligned<int8_t>(obj);
  if (!a) throw py::type_error(std::string(fn) + ": " + name + " must be an int8 numpy array");
  if ((ndim >= 0 && a.ndim() != ndim) || a.ndim() < min_ndim)
    throw py::value_error(std::string(fn) + ": " + name + " must have " +
                          (ndim >= 0 ? std::to_string(ndim) : ">= " + std::to_string(min_ndim)) + " dimensions, got " +
                          std::to_string(a.ndim()));
  const int8_t* p = a.data();
  for (py::ssize_t i = 0; i < a.size(); ++i)
    if (p[i] == -128) throw py::value_error(std::string(fn) + ": " + name + " must lie in [-127, 127] (found -128)");
  return a;
}

// Scratch of quantized rows in a kernel set's format.
struct QuantRows {
  AlignedBuffer buf;
  int8_t* data() { return reinterpret_cast<int8_t*>(buf.data()); }
  QuantRows(int64_t M, int64_t Kp) : buf(static_cast<size_t>(std::max<int64_t>(1, (M * Kp + 3) / 4))) {}
};

struct Packed {
  AlignedBuffer buf;
  const int8_t* data() const { return reinterpret_cast<const int8_t*>(buf.data()); }
  Packed(const Int8Kernels& k, const int8_t* w, int64_t N, int64_t K)
      : buf(static_cast<size_t>(std::max<int64_t>(1, (k.packed_bytes(N, K) + 3) / 4))) {
    k.pack(w, N, K, reinterpret_cast<int8_t*>(buf.data()));
  }
};

py::tuple quantize_weight(py::handle w_obj) {
  FloatArray w = float_array(w_obj, "quantize_weight", "weight", 2);
  const int64_t N = w.shape(0), K = w.shape(1);
  py::array_t<int8_t> q({N, K});
  py::array_t<float> scales = new_float_array({N});
  try {
    py::gil_scoped_release release;
    model::quantize_weight_rows(w.data(), N, K, q.mutable_data(), scales.mutable_data());
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string("quantize_weight: ") + e.what());
  }
  return py::make_tuple(q, scales);
}

py::tuple quantize_rows(py::handle x_obj, py::handle kernel) {
  const char* fn = "quantize_rows";
  const Int8Kernels& k = int8_set(kernel, fn);
  FloatArray x = float_array(x_obj, fn, "x", -1, 1);
  const int64_t K = x.shape(x.ndim() - 1), M = K > 0 ? x.size() / K : 0, Kp = k.padded_k(K);
  check_output_size(fn, "the output", shape_of(x));
  py::array_t<int8_t> q(shape_of(x));
  std::vector<int64_t> sshape = shape_of(x);
  sshape.pop_back();
  py::array_t<float> scales = new_float_array(sshape);
  QuantRows rows(M, Kp);
  {
    py::gil_scoped_release release;
    if (M > 0) k.quantize_rows(x.data(), M, K, rows.data(), scales.mutable_data());
    // The set's format back to signed int8: a set that keeps activations as u8
    // (VNNI) stores q + 128, i.e. q ^ 0x80 (what load_rows makes of a 0).
    int8_t zero_in = 0;
    QuantRows zero(1, k.padded_k(1));
    k.load_rows(&zero_in, 1, 1, zero.data());
    const int8_t flip = zero.data()[0];
    int8_t* out = q.mutable_data();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < K; ++i) out[m * K + i] = static_cast<int8_t>(rows.data()[m * Kp + i] ^ flip);
  }
  return py::make_tuple(q, scales);
}

py::array_t<int32_t> int8_matmul(py::handle x_obj, py::handle w_obj, py::handle kernel) {
  const char* fn = "int8_matmul";
  const Int8Kernels& k = int8_set(kernel, fn);
  Int8In x = int8_array(x_obj, fn, "x", 2);
  Int8In w = int8_array(w_obj, fn, "weight", 2);
  const int64_t M = x.shape(0), K = x.shape(1), N = w.shape(0);
  if (w.shape(1) != K)
    throw py::value_error(std::string(fn) + ": weight must have shape [out_features, " + std::to_string(K) +
                          "] (in_features = x.shape[1]), got " + shape_str(w));
  check_output_size(fn, "the output", {M, N});
  py::array_t<int32_t> out({M, N});
  if (M == 0 || N == 0) return out;
  if (K == 0) {
    std::fill(out.mutable_data(), out.mutable_data() + M * N, 0);
    return out;
  }
  SigintScope watch(watch_sigint(M * N * K));
  py::gil_scoped_release release;
  const Packed packed(k, w.data(), N, K);
  QuantRows rows(M, k.padded_k(K));
  k.load_rows(x.data(), M, K, rows.data());
  k.matmul_i32(rows.data(), M, K, packed.data(), N, out.mutable_data());
  return out;
}

py::array_t<float> linear_int8(py::handle x_obj, py::handle w_obj, py::handle s_obj, py::handle b_obj,
                               py::handle act_obj, py::handle r_obj, py::handle kernel) {
  const char* fn = "linear_int8";
  const Int8Kernels& k = int8_set(kernel, fn);
  FloatArray x = float_array(x_obj, fn, "x", -1, 1);
  Int8In w = int8_array(w_obj, fn, "weight", 2);
  const int64_t K = x.shape(x.ndim() - 1), N = w.shape(0);
  if (w.shape(1) != K)
    throw py::value_error(std::string(fn) + ": weight must have shape [out_features, " + std::to_string(K) +
                          "] (in_features = x.shape[-1]), got " + shape_str(w));
  FloatArray sc = float_array(s_obj, fn, "weight_scale", 1);
  check_shape(sc, fn, "weight_scale", {N}, "[" + std::to_string(N) + "] (a scale per row of weight)");
  auto b = optional_float_array(b_obj, fn, "bias");
  if (b) check_shape(*b, fn, "bias", {N}, "[out_features] = [" + std::to_string(N) + "]");
  const Activation act = parse_activation(act_obj, fn);
  std::vector<int64_t> out_shape = shape_of(x);
  out_shape.back() = N;
  auto r = optional_float_array(r_obj, fn, "residual");
  if (r) check_shape(*r, fn, "residual", out_shape, "the output's shape");
  check_output_size(fn, "the output", out_shape);
  py::array_t<float> y = new_float_array(out_shape);
  const int64_t M = K > 0 ? x.size() / K : static_cast<int64_t>(y.size() / std::max<int64_t>(N, 1));
  if (M == 0 || N == 0) return y;
  SigintScope watch(watch_sigint(M * N * std::max<int64_t>(K, 1)));
  py::gil_scoped_release release;
  const Packed packed(k, w.data(), N, K);
  QuantRows rows(M, k.padded_k(K));
  std::vector<float> xs(static_cast<size_t>(M));
  k.quantize_rows(x.data(), M, K, rows.data(), xs.data());
  k.linear(rows.data(), xs.data(), M, K, packed.data(), sc.data(), N, b ? b->data() : nullptr, act,
           r ? r->data() : nullptr, y.mutable_data());
  return y;
}

}  // namespace

void bind_ops(py::module_& m) {
  using namespace pybind11::literals;
  m.def("linear", &linear, "x"_a, "weight"_a, "bias"_a = py::none(), "activation"_a = py::none(),
        R"doc(y = activation(x @ weight.T + bias), as torch.nn.functional.linear.

x: float32 [..., in_features]; weight: float32 [out_features, in_features];
bias: float32 [out_features] or None; activation: None, "relu", "gelu" (exact erf
form) or "silu", fused into the output write. Returns a new float32 [..., out_features].)doc");
  m.def("softmax", &softmax, "x"_a, "Softmax over the last axis (numerically stable). Returns a new array.");
  m.def("layer_norm", &layer_norm, "x"_a, "weight"_a, "bias"_a, "eps"_a = 1e-5, "residual"_a = py::none(),
        R"doc(LayerNorm over the last axis of (x + residual): (t - mean) / sqrt(var + eps) * weight + bias.

Biased variance, as torch.nn.LayerNorm. weight/bias: float32 [x.shape[-1]] or None
(1 / 0). residual: None or an array of x's shape, added before normalising.)doc");
  m.def("relu", &relu, "x"_a, "max(x, 0), element-wise; NaN stays NaN.");
  m.def("gelu", &gelu, "x"_a, "x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), element-wise (the exact form).");
  m.def("silu", &silu, "x"_a, "x * sigmoid(x) (SiLU, a.k.a. swish), element-wise.");
  m.def("attention", &attention, "q"_a, "k"_a, "v"_a, py::kw_only(), "key_padding_mask"_a = py::none(),
        "causal"_a = false, "scale"_a = py::none(),
        R"doc(Scaled dot-product attention: softmax(scale * q @ k^T + mask) @ v.

q: float32 [B, H, Lq, D]; k: [B, H, Lk, D]; v: [B, H, Lk, Dv] -> [B, H, Lq, Dv].
key_padding_mask: bool [B, Lk], True = padding (torch convention) or None.
causal: query i sees keys j <= i (top-left aligned, as torch's
scaled_dot_product_attention(is_causal=True)). scale: default 1/sqrt(D).
A query that sees no key at all returns zeros (as torch's scaled_dot_product_attention).
Tiled with an online softmax: memory does not grow with Lq x Lk.)doc");
  m.def("multi_head_attention", &multi_head_attention, "query"_a, "key"_a, "value"_a, "in_proj_weight"_a,
        "in_proj_bias"_a, "out_proj_weight"_a, "out_proj_bias"_a, "num_heads"_a, py::kw_only(),
        "key_padding_mask"_a = py::none(), "causal"_a = false,
        R"doc(Multi-head attention with torch.nn.MultiheadAttention's weights, batch-first.

query: float32 [B, Lq, E]; key, value: [B, Lk, E]; in_proj_weight [3E, E] (Wq; Wk; Wv),
in_proj_bias [3E] or None, out_proj_weight [E, E], out_proj_bias [E] or None.
Returns [B, Lq, E] (what nn.MultiheadAttention(batch_first=True) returns first).
Passing the same array as query, key and value fuses the three projections into one
GEMM (self-attention); the same array as key and value fuses K and V.)doc");
  m.def("positional_encoding", &positional_encoding, "length"_a, "d_model"_a,
        R"doc(Sinusoidal positions of the paper: [length, d_model] float32 with
PE[p, 2i] = sin(p / 10000^(2i/d_model)), PE[p, 2i+1] = cos(p / 10000^(2i/d_model)).)doc");
  m.def("quantize_weight", &quantize_weight, "weight"_a,
        R"doc(Symmetric per-row int8 of a float32 weight [N, K], as int8 models store their linear layers.

Returns (q int8 [N, K], scale float32 [N]) with scale = max|w[n]| / 127 and
q = round-half-even(w * 127 / max|w[n]|) in [-127, 127] (a zero row: scale 0).
ValueError for NaN or infinity.)doc");
  m.def("quantize_rows", &quantize_rows, "x"_a, py::kw_only(), "kernel"_a = py::none(),
        R"doc(The run-time quantization of activations: each row of x [..., K] to int8.

Returns (q int8 [..., K], scale float32 [...]), as quantize_weight; a row holding NaN
or infinity gets scale NaN. kernel: an int8 kernel name (runtime_info()['int8_available']).)doc");
  m.def("int8_matmul", &int8_matmul, "x"_a, "weight"_a, py::kw_only(), "kernel"_a = py::none(),
        R"doc(Exact int32 sums x @ weight.T of int8 x [M, K] and weight [N, K] (values in [-127, 127]).

The int32 accumulation of the int8 GEMM: the same on every ISA and thread count.)doc");
  m.def("linear_int8", &linear_int8, "x"_a, "weight"_a, "weight_scale"_a, "bias"_a = py::none(),
        "activation"_a = py::none(), "residual"_a = py::none(), py::kw_only(), "kernel"_a = py::none(),
        R"doc(The int8 linear layer: x (float32 [..., K]) quantized per row, times an int8 weight.

y = activation(sx * weight_scale * (q(x) @ weight.T) + bias) + residual, with weight int8
[N, K] and weight_scale float32 [N] (from quantize_weight), int32 sums.)doc");
}

}  // namespace pt::bindings

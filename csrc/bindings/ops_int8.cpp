// pytransformer.ops, int8 part: weight and activation quantization, the int8 GEMM
// (float32 out, and its exact int32 sums). Validation here; the math in the kernels.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/interrupt.h"
#include "kernels/kernels.h"
#include "model/layers.h"
#include "runtime/aligned_buffer.h"

namespace pt::bindings {

namespace {

using Int8In = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
using kernels::Activation;
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

std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

Activation activation_arg(py::handle obj, const char* fn) {
  if (obj.is_none()) return Activation::kNone;
  if (!py::isinstance<py::str>(obj)) throw py::type_error(std::string(fn) + ": activation must be None or a str");
  const std::string s = obj.cast<std::string>();
  if (s == "relu") return Activation::kRelu;
  if (s == "gelu") return Activation::kGelu;
  if (s == "silu") return Activation::kSilu;
  throw py::value_error(std::string(fn) + ": activation must be None, 'relu', 'gelu' or 'silu', got '" + s + "'");
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
  SigintScope watch(M * N * K >= (int64_t{1} << 22));
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
  const Activation act = activation_arg(act_obj, fn);
  std::vector<int64_t> out_shape = shape_of(x);
  out_shape.back() = N;
  auto r = optional_float_array(r_obj, fn, "residual");
  if (r) check_shape(*r, fn, "residual", out_shape, "the output's shape");
  check_output_size(fn, "the output", out_shape);
  py::array_t<float> y = new_float_array(out_shape);
  const int64_t M = K > 0 ? x.size() / K : static_cast<int64_t>(y.size() / std::max<int64_t>(N, 1));
  if (M == 0 || N == 0) return y;
  SigintScope watch(M * N * std::max<int64_t>(K, 1) >= (int64_t{1} << 22));
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

void bind_ops_int8(py::module_& m) {
  using namespace pybind11::literals;
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

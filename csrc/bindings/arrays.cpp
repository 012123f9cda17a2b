#include "bindings/arrays.h"

#include <sstream>

namespace pt::bindings {

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

namespace {
std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }
}  // namespace

FloatArray float_array(py::handle obj, const char* fn, const char* name, int ndim, int min_ndim) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(fn) + ": " + name + " must be a numpy.ndarray of dtype float32, got " +
                         type_name(obj) + " (convert with numpy.asarray(" + name + ", dtype=numpy.float32))");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  const py::dtype dt = arr.dtype();
  if (dt.kind() != 'f' || dt.itemsize() != 4)
    throw py::type_error(std::string(fn) + ": " + name + " must have dtype float32, got " +
                         std::string(py::str(dt)) + " (convert with " + name + ".astype(numpy.float32))");
  if (ndim >= 0 && arr.ndim() != ndim)
    throw py::value_error(std::string(fn) + ": " + name + " must have " + std::to_string(ndim) +
                          " dimensions, got " + std::to_string(arr.ndim()) + " with shape " + shape_str(arr));
  if (ndim < 0 && arr.ndim() < min_ndim)
    throw py::value_error(std::string(fn) + ": " + name + " must have at least " + std::to_string(min_ndim) +
                          " dimension(s), got shape " + shape_str(arr));
  FloatArray out = FloatArray::ensure(arr);
  if (!out) throw py::error_already_set();
  return out;
}

std::optional<FloatArray> optional_float_array(py::handle obj, const char* fn, const char* name, int ndim) {
  if (obj.is_none()) return std::nullopt;
  return float_array(obj, fn, name, ndim);
}

std::optional<BoolArray> optional_bool_mask(py::handle obj, const char* fn, const char* name, int64_t rows,
                                            int64_t cols, const std::string& expected) {
  if (obj.is_none()) return std::nullopt;
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(fn) + ": " + name + " must be a numpy.ndarray of dtype bool, got " +
                         type_name(obj));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.dtype().kind() != 'b')
    throw py::type_error(std::string(fn) + ": " + name + " must have dtype bool (True = padding), got " +
                         std::string(py::str(arr.dtype())));
  check_shape(arr, fn, name, {rows, cols}, expected);
  BoolArray out = BoolArray::ensure(arr);
  if (!out) throw py::error_already_set();
  return out;
}

void check_shape(const py::array& a, const char* fn, const char* name, const std::vector<int64_t>& dims,
                 const std::string& expected) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  for (size_t i = 0; ok && i < dims.size(); ++i) ok = dims[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == dims[i];
  if (!ok)
    throw py::value_error(std::string(fn) + ": " + name + " must have shape " + expected + ", got " + shape_str(a));
}

int64_t nonnegative_int(py::handle obj, const char* fn, const char* name) {
  if (py::isinstance<py::bool_>(obj) || !py::isinstance<py::int_>(obj)) {
    // numpy integer scalars are fine too
    if (!py::hasattr(obj, "__index__") || py::isinstance<py::bool_>(obj) || py::isinstance<py::float_>(obj))
      throw py::type_error(std::string(fn) + ": " + name + " must be an int, got " + type_name(obj));
  }
  const auto v = obj.attr("__index__")().cast<long long>();
  if (v < 0) throw py::value_error(std::string(fn) + ": " + name + " must be >= 0, got " + std::to_string(v));
  return static_cast<int64_t>(v);
}

py::array_t<float> new_float_array(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return py::array_t<float>(s);
}

}  // namespace pt::bindings

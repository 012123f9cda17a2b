#include "bindings/arrays.h"

#include <algorithm>
#include <sstream>

#include "runtime/aligned_buffer.h"

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

// pybind11's ensure() clears the error of a failed conversion: the copy of a
// non-contiguous or byte-swapped input could not be made, in practice for lack of
// memory.
[[noreturn]] void raise_copy_failed(const py::array& arr, const char* fn, const char* name) {
  if (PyErr_Occurred()) throw py::error_already_set();
  const std::string msg = std::string(fn) + ": cannot copy " + name + " " + shape_str(arr) + " (" +
                          std::to_string(static_cast<long long>(arr.nbytes())) +
                          " bytes) into a contiguous native-order array: out of memory";
  PyErr_SetString(PyExc_MemoryError, msg.c_str());
  throw py::error_already_set();
}
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
  FloatArray out = ensure_aligned<float>(arr);
  if (!out) raise_copy_failed(arr, fn, name);
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
  BoolArray out = ensure_aligned<bool>(arr);
  if (!out) raise_copy_failed(arr, fn, name);
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
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    const std::string msg = std::string(fn) + ": " + name + " = " + std::string(py::repr(index)).substr(0, 40) +
                            " does not fit in a 64-bit integer";
    PyErr_SetString(overflow < 0 ? PyExc_ValueError : PyExc_OverflowError, msg.c_str());
    throw py::error_already_set();
  }
  if (v < 0) throw py::value_error(std::string(fn) + ": " + name + " must be >= 0, got " + std::to_string(v));
  return static_cast<int64_t>(v);
}

py::array_t<float> new_float_array(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return py::array_t<float>(s);
}

void check_output_size(const char* fn, const char* what, const std::vector<int64_t>& shape) {
  double bytes = sizeof(float);
  for (int64_t d : shape) bytes *= static_cast<double>(std::max<int64_t>(d, 0));
  const double limit = pt::physical_memory_bytes();
  if (bytes > limit) {
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i) dims += (i ? " x " : "") + std::to_string(shape[i]);
    throw py::value_error(std::string(fn) + ": " + what + " would be " + dims + " float32 = " + human_bytes(bytes) +
                          ", more than this machine's memory (" + human_bytes(limit) + ")");
  }
}

}  // namespace pt::bindings

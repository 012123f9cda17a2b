// numpy <-> raw pointers for the bindings: dtype, rank and shape checks that raise
// TypeError / ValueError naming the function, the argument and what was expected.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pt::bindings {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// array_t<T, c_style | forcecast>::ensure(obj), and aligned too: pybind11's ensure()
// asks numpy for a C-contiguous array only, so a view at an odd byte offset (e.g.
// np.frombuffer(buf, offset=1)) would reach the kernels as a misaligned T* (undefined
// behaviour, found by UBSan). numpy copies such an array into an aligned one here.
// A null result (conversion failed; the Python error is cleared, as ensure() does).
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> ensure_aligned(py::handle obj) {
  using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;
  if (!obj.ptr()) return Array();
  auto& api = py::detail::npy_api::get();
  PyObject* r = api.PyArray_FromAny_(obj.ptr(), py::dtype::of<T>().release().ptr(), 0, 0,
                                     py::detail::npy_api::NPY_ARRAY_ENSUREARRAY_ |
                                         py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                         py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                                         py::detail::npy_api::NPY_ARRAY_FORCECAST_,
                                     nullptr);
  if (!r) {
    PyErr_Clear();
    return Array();
  }
  return py::reinterpret_steal<Array>(r);
}

// "(2, 3, 4)"
std::string shape_str(const py::array& a);

// A C-contiguous, native-byte-order float32 array for `obj`: the array itself when
// it already is one, else a copy (non-contiguous or byte-swapped float32 input).
// Any other dtype or type raises TypeError; a different rank raises ValueError.
// ndim < 0: any rank >= min_ndim.
FloatArray float_array(py::handle obj, const char* fn, const char* name, int ndim = -1, int min_ndim = 0);

// Same for an optional argument: None gives std::nullopt.
std::optional<FloatArray> optional_float_array(py::handle obj, const char* fn, const char* name, int ndim = -1);

using BoolArray = py::array_t<bool, py::array::c_style | py::array::forcecast>;

// bool [rows, cols] mask (True = masked), as contiguous bytes; None -> std::nullopt.
std::optional<BoolArray> optional_bool_mask(py::handle obj, const char* fn,
                                           const char* name, int64_t rows, int64_t cols,
                                           const std::string& expected);

// Raise ValueError("fn: name must have shape expected, got (..)") unless dims match
// (a negative entry in `dims` matches anything).
void check_shape(const py::array& a, const char* fn, const char* name, const std::vector<int64_t>& dims,
                 const std::string& expected);

// A Python int >= 0 (bool and float rejected).
int64_t nonnegative_int(py::handle obj, const char* fn, const char* name);

// Raises ValueError naming fn and `what` when a float32 array of this shape would
// take more than the machine's physical memory (checked in floating point: no overflow).
void check_output_size(const char* fn, const char* what, const std::vector<int64_t>& shape);

// New uninitialised float32 array of the given shape.
py::array_t<float> new_float_array(const std::vector<int64_t>& shape);

}  // namespace pt::bindings

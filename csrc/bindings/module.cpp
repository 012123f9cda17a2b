// The compiled module pytransformer._core: runtime controls and the ops.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/interrupt.h"
#include "kernels/kernels.h"
#include "runtime/cpu_features.h"
#include "runtime/threads.h"

namespace py = pybind11;

namespace pt::bindings {
void bind_ops(py::module_& m);
void bind_model(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "pytransformer's compiled core (C++ kernels; use the pytransformer package)";

  m.def("_runtime_info", [] {
    py::dict d;
    d["isa"] = pt::kernels::active().isa;
    std::vector<std::string> isas;
    for (int i = 0; i < pt::kernels::available_count(); ++i) isas.emplace_back(pt::kernels::available(i).isa);
    d["isa_available"] = isas;
    d["int8_kernel"] = pt::kernels::int8_for(pt::kernels::active()).name;
    std::vector<std::string> i8;
    for (int i = 0; i < pt::kernels::int8_available_count(); ++i) i8.emplace_back(pt::kernels::int8_available(i).name);
    d["int8_available"] = i8;
    const pt::CacheInfo& c = pt::cache_info();
    py::dict caches;
    caches["l1d"] = c.l1d_bytes;
    caches["l2"] = c.l2_bytes;
    caches["l3_per_core"] = c.l3_bytes;
    caches["source"] = c.source;
    d["caches"] = caches;
    int64_t blk[5];
    pt::kernels::active().gemm_blocking(blk);
    py::dict gemm;
    gemm["kc"] = blk[0];
    gemm["nc_panels"] = blk[1];
    gemm["mc_tiles"] = blk[2];
    gemm["mr"] = blk[3];
    gemm["nr"] = blk[4];
    d["gemm_blocking"] = gemm;
    d["multithreaded"] = pt::multithreaded_build();
    d["threading"] = std::string("pytransformer pool (fork-safe, interruptible)");
    d["cgroup_cpu_quota"] = pt::cgroup_cpu_quota();
    d["num_threads"] = pt::get_num_threads();
    d["physical_cores"] = pt::physical_core_count();
    return d;
  });
  m.def("set_num_threads", &pt::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &pt::get_num_threads);
  m.def("_isa_request_warning", [] { return std::string(pt::kernels::isa_request_warning()); });
  m.def("_set_isa", [](const std::string& isa) { pt::kernels::set_active(isa.c_str()); }, py::arg("isa"),
        "Testing hook: switch the kernel set (generic, avx2, avx512) for the whole process.");

  pt::bindings::init_interrupts();
  py::module_ ops = m.def_submodule("ops", "functional ops");
  pt::bindings::bind_ops(ops);
  pt::bindings::bind_model(m);
}

// Thread count for every parallel region of the library.
//
// Results never depend on it: kernels partition output rows/tiles between
// threads and never split a reduction, so 1 and N threads give the same bits.
#pragma once

namespace pt {

// Physical cores available to this process (affinity mask, SMT siblings counted once).
int physical_core_count();

// Threads used by parallel regions: PYTRANSFORMER_NUM_THREADS, else
// OMP_NUM_THREADS, else physical_core_count(); 1 when built without OpenMP.
int get_num_threads();

// n >= 1; throws std::invalid_argument otherwise. Without OpenMP it is recorded
// but get_num_threads() stays 1.
void set_num_threads(int n);

bool openmp_enabled();

}  // namespace pt

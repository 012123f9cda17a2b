// CPU feature detection: what the processor and the operating system let us run.
#pragma once

namespace pt {

struct CpuFeatures {
  bool avx2 = false;     // AVX2 + FMA, with OS support for the YMM state
  bool avx512 = false;   // AVX-512 F/DQ/BW/VL, with OS support for the ZMM state
  bool avx512_vnni = false;  // + AVX512-VNNI (vpdpbusd on zmm)
  bool avx_vnni = false;     // AVX-VNNI (vpdpbusd on ymm, VEX-encoded), with avx2
};

// Data cache sizes of one core, in bytes: L1d and L2 as one core sees them, and its
// share of L3 (the L3 size over the cores that share it). From sysfs
// (/sys/devices/system/cpu/cpu0/cache), else CPUID (leaf 4 on Intel, 0x8000001D
// on AMD), else 32 KiB / 512 KiB / 2 MiB. PYTRANSFORMER_CACHE="L1d,L2,L3" (in KiB)
// overrides them (tests, tuning experiments).
struct CacheInfo {
  long long l1d_bytes = 32 << 10;
  long long l2_bytes = 512 << 10;
  long long l3_bytes = 2 << 20;   // per core
  const char* source = "default";  // "sysfs" | "cpuid" | "env" | "default"
};
const CacheInfo& cache_info();

// Detected once (thread-safe), then cached.
const CpuFeatures& cpu_features();

}  // namespace pt

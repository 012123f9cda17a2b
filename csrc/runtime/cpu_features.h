// CPU feature detection: what the processor and the operating system let us run.
#pragma once

namespace pt {

struct CpuFeatures {
  bool avx2 = false;     // AVX2 + FMA, with OS support for the YMM state
  bool avx512 = false;   // AVX-512 F/DQ/BW/VL, with OS support for the ZMM state
};

// Detected once (thread-safe), then cached.
const CpuFeatures& cpu_features();

}  // namespace pt

// Sinusoidal positional encodings of "Attention Is All You Need" (section 3.5).
#pragma once

#include <cstdint>

namespace pt::kernels {

enum class SinusoidLayout {
  kInterleaved,  // the paper: out[p, 2i] = sin(w_i p), out[p, 2i+1] = cos(w_i p)
  kConcat,       // Marian / fairseq: out[p, i] = sin(w_i p), out[p, ceil(d/2) + i] = cos(w_i p)
};

// out [length, d_model] with w_i = 1 / 10000^(2i/d_model), for positions
// first_position .. first_position + length - 1. Computed in double, rounded once.
void positional_encoding(float* out, int64_t length, int64_t d_model, int64_t first_position = 0,
                         SinusoidLayout layout = SinusoidLayout::kInterleaved);

}  // namespace pt::kernels

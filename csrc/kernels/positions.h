// Sinusoidal positional encodings of "Attention Is All You Need" (section 3.5).
#pragma once

#include <cstdint>

namespace pt::kernels {

// out [length, d_model]: out[p, 2i] = sin(p / 10000^(2i/d_model)),
//                        out[p, 2i+1] = cos(p / 10000^(2i/d_model)).
// Computed in double, rounded once to float. Positions start at `first_position`.
void positional_encoding(float* out, int64_t length, int64_t d_model, int64_t first_position = 0);

}  // namespace pt::kernels

#include "kernels/positions.h"

#include <cmath>

namespace pt::kernels {

void positional_encoding(float* out, int64_t length, int64_t d_model, int64_t first_position,
                         SinusoidLayout layout) {
  const int64_t half = (d_model + 1) / 2;  // sin columns of the concat layout
  for (int64_t p = 0; p < length; ++p) {
    const double pos = static_cast<double>(first_position + p);
    float* row = out + p * d_model;
    for (int64_t c = 0; c < d_model; ++c) {
      int64_t i;  // frequency index
      bool use_sin;
      if (layout == SinusoidLayout::kInterleaved) {
        i = c / 2;
        use_sin = c % 2 == 0;
      } else {
        use_sin = c < half;
        i = use_sin ? c : c - half;
      }
      const double angle = pos / std::pow(10000.0, static_cast<double>(2 * i) / static_cast<double>(d_model));
      row[c] = static_cast<float>(use_sin ? std::sin(angle) : std::cos(angle));
    }
  }
}

}  // namespace pt::kernels

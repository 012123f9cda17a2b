#include "kernels/positions.h"

#include <cmath>

namespace pt::kernels {

void positional_encoding(float* out, int64_t length, int64_t d_model, int64_t first_position) {
  const double log_base = std::log(10000.0);
  for (int64_t p = 0; p < length; ++p) {
    const double pos = static_cast<double>(first_position + p);
    float* row = out + p * d_model;
    for (int64_t c = 0; c < d_model; ++c) {
      const int64_t two_i = c - (c % 2);
      const double angle = pos * std::exp(-static_cast<double>(two_i) / static_cast<double>(d_model) * log_base);
      row[c] = static_cast<float>(c % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  }
}

}  // namespace pt::kernels

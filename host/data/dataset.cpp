// @brief Dataset's per-value normalisation, the same formula the gather kernel applies.
#include "host/data/dataset.h"

#include "kernels/batch_gather_math.cuh"

namespace fusedvae {

float Dataset::normalised(size_t row, int col) const {
  const size_t index = row * static_cast<size_t>(dim) + static_cast<size_t>(col);
  const float raw = is_u8() ? static_cast<float>(u8[index]) : f32[index];
  return math::normalise(raw, scale, offset);
}

}  // namespace fusedvae

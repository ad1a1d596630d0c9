// @brief The bias gradient's summation order, shared by the kernel and its CPU twin so that the
// two agree bitwise: each column's rows are split over kBiasGradRowLanes partial sums (partial j
// adds rows j, j + L, j + 2L, ... in increasing order), then the partials are added pairwise.
// A fixed number of partials (not the launch configuration) decides the order, and it gives the
// GPU kBiasGradRowLanes threads per column instead of one walking every row.
#pragma once

#include "kernels/host_device.cuh"

namespace fusedvae::math {

constexpr int kBiasGradRowLanes = 32;

// Adds partials[0..kBiasGradRowLanes) pairwise (stride 16, 8, 4, 2, 1); overwrites them.
FUSEDVAE_HD float combine_bias_partials(float* partials) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int stride = kBiasGradRowLanes / 2; stride > 0; stride /= 2) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int j = 0; j < stride; ++j) partials[j] += partials[j + stride];
  }
  return partials[0];
}

}  // namespace fusedvae::math

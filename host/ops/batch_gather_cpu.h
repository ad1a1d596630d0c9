// @brief CPU twins of the shuffle and batch gather (kernels/batch_gather.h).
#pragma once

#include <cstdint>

#include "kernels/op_params.h"

namespace fusedvae::cpu {

void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm);

// `first` points to host memory here (device memory on the GPU face).
void gather_batch(const uint8_t* data_u8, const float* data_f32, int dim, const int32_t* perm,
                  const int32_t* first, int rows, float scale, float offset, bool binarize,
                  RngState rng, float* out, bool clip_to_unit = true);

void advance_batch_start(int32_t* first, int rows);

}  // namespace fusedvae::cpu

// @brief Standard-normal eps keyed by (seed, row, column, draw), identical in kernels and CPU
// twins.
//
// cuRAND's Philox4_32_10 is counter based: curand_init(seed, subsequence, offset) only sets the
// counter, so every group of four eps can start its own stream at no cost. Element (row, col) of a
// [rows, cols] tensor at draw n takes component col % 4 of curand_normal4() from subsequence
// row * ceil(cols / 4) + col / 4, skipped ahead by 4 * n words (one Philox block per draw). The
// value therefore depends on neither the block size nor the grid, and a forward and its backward
// that read the same draw index see the same eps.
//
// Defining QUALIFIERS as __host__ __device__ before cuRAND's header makes Philox callable from host
// code compiled by nvcc, which is how the CPU twins draw the same numbers. The host and the device
// Box-Muller differ in the last bits (the device uses the __sincosf intrinsic), so CPU and GPU eps
// agree to about 1e-6, not bitwise.
#pragma once

#ifndef QUALIFIERS
#define QUALIFIERS static __forceinline__ __host__ __device__
#endif
#include <curand_kernel.h>

#include <cstdint>

#include "op_params.h"

namespace fusedvae {

// Number of Philox words one draw of a tensor consumes per subsequence.
constexpr uint64_t kPhiloxWordsPerDraw = 4;

__host__ __device__ __forceinline__ uint64_t philox_groups_per_row(int cols) {
  return (static_cast<uint64_t>(cols) + 3) / 4;
}

// The four eps of columns [4*group, 4*group + 4) of `row`.
__host__ __device__ __forceinline__ float4 philox_normal4(uint64_t seed, uint64_t draw,
                                                          uint64_t row, int group, int cols) {
  curandStatePhilox4_32_10_t state;
  const uint64_t subsequence = row * philox_groups_per_row(cols) + group;
  curand_init(seed, subsequence, draw * kPhiloxWordsPerDraw, &state);
  return curand_normal4(&state);
}

__host__ __device__ __forceinline__ float float4_component(const float4& v, int k) {
  return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}

// Where the reparameterization's eps come from, one group of four columns at a time: regenerated
// from Philox at the draw in *draw_index, or read from memory (the tests' given eps). The kernels
// and the CPU twins take either through the same template parameter.
struct PhiloxEps {
  uint64_t seed;
  const uint64_t* draw_index;
  uint64_t first_row;  // RngState::first_row: the stream's row of this call's row 0
  __host__ __device__ uint64_t draw() const { return *draw_index; }
  __host__ __device__ float4 group(uint64_t draw, int row, int group, int cols) const {
    return philox_normal4(seed, draw, first_row + static_cast<uint64_t>(row), group, cols);
  }
};

__host__ __device__ inline PhiloxEps philox_eps(const RngState& rng) {
  return PhiloxEps{rng.seed, rng.draw_index, rng.first_row};
}

struct GivenEps {
  const float* eps;  // [rows, cols]
  __host__ __device__ uint64_t draw() const { return 0; }
  __host__ __device__ float4 group(uint64_t, int row, int group, int cols) const {
    const int c = group * 4;
    const float* p = eps + static_cast<size_t>(row) * cols + c;
    return make_float4(p[0], c + 1 < cols ? p[1] : 0.0f, c + 2 < cols ? p[2] : 0.0f,
                       c + 3 < cols ? p[3] : 0.0f);
  }
};

}  // namespace fusedvae

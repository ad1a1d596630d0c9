// @brief Scalar math of the shuffle and the batch gather, shared by the kernels, their CPU twins
// and Dataset::normalised: the 32-bit Philox sort key of (seed, epoch, row), the binarisation
// uniform of (dataset row, column, draw), and the affine normalisation to [0, 1].
//
// Both random streams call cuRAND's raw Philox4x32-10 block function (made host-callable by the
// QUALIFIERS definition below, as in philox_normal.cuh). It is integer arithmetic only, so host and
// device produce identical bits. Each stream uses its own key (the seed with a stream tag XORed
// into the high word), so neither repeats the words of the reparameterization eps (whose key is the
// raw seed) even when the trainer passes the same seed to all three.
#pragma once

#include <cuda_runtime.h>

#ifndef QUALIFIERS
#define QUALIFIERS static __forceinline__ __host__ __device__
#endif
#include <curand_philox4x32_x.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "kernels/host_device.cuh"

namespace fusedvae::math {

constexpr uint32_t kShuffleStreamTag = 0x53487566u;   // "SHuf"
constexpr uint32_t kBinarizeStreamTag = 0x42696e61u;  // "Bina"
constexpr int kBinarizeColumnsPerBlock = 4;           // one Philox block covers four columns

FUSEDVAE_HD uint4 tagged_philox_block(uint64_t seed, uint32_t stream_tag, uint4 counter) {
  const uint2 key =
      make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32) ^ stream_tag);
  return curand_Philox4x32_10(counter, key);
}

// The key `row` is sorted by in epoch `epoch`. Keys are uniform 32-bit words: with 60000 rows a
// few ties are expected (birthday bound), which is why both faces sort stably.
FUSEDVAE_HD uint32_t shuffle_key(uint64_t seed, uint64_t epoch, uint32_t row) {
  const uint4 counter =
      make_uint4(row, static_cast<uint32_t>(epoch), static_cast<uint32_t>(epoch >> 32), 0u);
  return tagged_philox_block(seed, kShuffleStreamTag, counter).x;
}

// The four raw words for columns [4 * group, 4 * group + 4) of dataset row `row` at draw `draw`.
FUSEDVAE_HD uint4 binarize_words(uint64_t seed, uint64_t draw, uint32_t row, uint32_t group) {
  const uint4 counter =
      make_uint4(group, row, static_cast<uint32_t>(draw), static_cast<uint32_t>(draw >> 32));
  return tagged_philox_block(seed, kBinarizeStreamTag, counter);
}

FUSEDVAE_HD uint32_t uint4_component(const uint4& v, int k) {
  return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}

// A uniform in [0, 1) on the 2^24 grid (exact in float): P(uniform < p) = ceil(p * 2^24) / 2^24,
// so p = 0 never and p = 1 always yields 1.
FUSEDVAE_HD float uniform_from_word(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

FUSEDVAE_HD float binarize(float probability, uint32_t word) {
  return uniform_from_word(word) < probability ? 1.0f : 0.0f;
}

// raw * scale + offset with one rounding (fmaf on both faces, so the bits agree), clipped to
// [0, 1] (for the image VAE: float test data may fall outside the train split's range, and
// 255 * fl(1/255) could otherwise round above 1 on other scales) unless `clip_to_unit` is false
// (standardised data such as DyAD's snippets).
FUSEDVAE_HD float normalise(float raw, float scale, float offset, bool clip_to_unit = true) {
  const float v = fmaf(raw, scale, offset);
  if (!clip_to_unit) return v;
  return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

// Where the batch after one of `rows` rows starts in the permutation.
FUSEDVAE_HD int32_t next_batch_start(int32_t first, int rows) {
  return first + rows;
}

// Host-side argument checks shared by gather_batch's two faces.
// (The value of *first is only known on the device for the GPU face; the CPU twin checks it.)
inline void check_gather_arguments(const void* data_u8, const void* data_f32, int dim,
                                   const int32_t* first, int rows, bool binarize,
                                   const uint64_t* draw_index) {
  if ((data_u8 == nullptr) == (data_f32 == nullptr))
    throw std::invalid_argument("gather_batch: exactly one of data_u8 / data_f32 must be given");
  if (dim < 1 || rows < 1) throw std::invalid_argument("gather_batch: dim and rows must be >= 1");
  if (first == nullptr) throw std::invalid_argument("gather_batch: `first` must be given");
  if (binarize && draw_index == nullptr)
    throw std::invalid_argument("gather_batch: binarize needs rng.draw_index");
}

}  // namespace fusedvae::math

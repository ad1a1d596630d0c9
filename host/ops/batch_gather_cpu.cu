// @brief CPU twins of the shuffle and the batch gather. Compiled by nvcc (host code only) so the
// Philox words come from the same cuRAND block function the kernels call.
#include "host/ops/batch_gather_cpu.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/ops/parallel_cpu.h"
#include "kernels/batch_gather_math.cuh"

namespace fusedvae::cpu {

void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm) {
  if (rows < 1) throw std::invalid_argument("shuffle_indices: rows must be >= 1");
  std::vector<uint32_t> keys(rows);
  for (int row = 0; row < rows; ++row)
    keys[row] = math::shuffle_key(seed, epoch, static_cast<uint32_t>(row));
  std::iota(perm, perm + rows, 0);
  // Stable, like the GPU's radix sort: equal keys keep row order, so both faces agree on ties.
  std::stable_sort(perm, perm + rows, [&](int32_t a, int32_t b) { return keys[a] < keys[b]; });
}

void gather_batch(const uint8_t* data_u8, const float* data_f32, int dim, const int32_t* perm,
                  const int32_t* first, int rows, float scale, float offset, bool binarize,
                  RngState rng, float* out, bool clip_to_unit) {
  math::check_gather_arguments(data_u8, data_f32, dim, first, rows, binarize, rng.draw_index);
  if (*first < 0) throw std::invalid_argument("gather_batch: *first must be >= 0");
  const uint64_t draw = binarize ? *rng.draw_index : 0;
#pragma omp parallel for schedule(static) if (worth_threads(rows, dim))
  for (int r = 0; r < rows; ++r) {
    const int32_t source_row = perm[*first + r];
    const size_t src = static_cast<size_t>(source_row) * dim;
    float* dst = out + static_cast<size_t>(r) * dim;
    for (int col = 0; col < dim; ++col) {
      const float raw = data_u8 ? static_cast<float>(data_u8[src + col]) : data_f32[src + col];
      dst[col] = math::normalise(raw, scale, offset, clip_to_unit);
    }
    if (!binarize) continue;
    const int groups = (dim + math::kBinarizeColumnsPerBlock - 1) / math::kBinarizeColumnsPerBlock;
    for (int g = 0; g < groups; ++g) {
      const uint4 words = math::binarize_words(rng.seed, draw, static_cast<uint32_t>(source_row),
                                               static_cast<uint32_t>(g));
      for (int k = 0; k < math::kBinarizeColumnsPerBlock; ++k) {
        const int col = g * math::kBinarizeColumnsPerBlock + k;
        if (col < dim) dst[col] = math::binarize(dst[col], math::uint4_component(words, k));
      }
    }
  }
}

void advance_batch_start(int32_t* first, int rows) {
  if (first == nullptr || rows < 1)
    throw std::invalid_argument("advance_batch_start: needs `first` and rows >= 1");
  *first = math::next_batch_start(*first, rows);
}

}  // namespace fusedvae::cpu

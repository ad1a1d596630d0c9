// @brief Shuffling the resident training set and gathering a normalised batch, on the device.
// CPU twins: host/ops/batch_gather_cpu.h (same names and arguments, without workspace/stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/op_params.h"

namespace fusedvae::gpu {

// Scratch for shuffle_indices, made once per trainer (never per epoch).
struct ShuffleWorkspace {
  void* temp = nullptr;  // CUB radix-sort temporary storage
  size_t temp_bytes = 0;
  uint32_t* keys_in = nullptr;
  uint32_t* keys_out = nullptr;
  int32_t* indices_in = nullptr;
  int capacity = 0;  // rows
};
ShuffleWorkspace create_shuffle_workspace(int rows);
void destroy_shuffle_workspace(ShuffleWorkspace* workspace);

// perm = a permutation of [0, rows): the rows ordered by a 32-bit Philox key of (seed, epoch, row),
// ties kept in row order (a stable sort). The CPU twin produces the same permutation.
void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm,
                     ShuffleWorkspace workspace, cudaStream_t stream);

// out[r, :] = normalise(data[perm[*first + r], :]) for r < rows, where normalise(v) =
// v * scale + offset, clipped to [0, 1] when clip_to_unit; with `binarize`, each value p becomes 1
// with probability p (Philox uniform of (dataset row, column, *rng.draw_index)), else 0. Exactly
// one of data_u8 / data_f32 is non-null. `first` (the batch's first position in perm) is read on
// the device when the kernel runs, like the draw index, so that a captured CUDA graph gathers the
// next batch on every replay; the caller keeps *first + rows within perm.
void gather_batch(const uint8_t* data_u8, const float* data_f32, int dim, const int32_t* perm,
                  const int32_t* first, int rows, float scale, float offset, bool binarize,
                  RngState rng, float* out, cudaStream_t stream, bool clip_to_unit = true);

// *first += rows on the device: moves `first` to the batch after the one just gathered (one
// thread; the training step's last kernel, so replays walk the permutation batch by batch).
void advance_batch_start(int32_t* first, int rows, cudaStream_t stream);

}  // namespace fusedvae::gpu

// @brief The device shuffle (Philox keys + a stable CUB radix sort) and the batch gather
// (normalise to [0, 1], optional dynamic binarisation). CPU twins: host/ops/batch_gather_cpu.cu.
#include "kernels/batch_gather.h"

#include <cub/device/device_radix_sort.cuh>

#include <stdexcept>
#include <string>

#include "kernels/batch_gather_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

__global__ void shuffle_keys_kernel(const int rows, const uint64_t seed, const uint64_t epoch,
                                    uint32_t* __restrict__ keys, int32_t* __restrict__ indices) {
  for (int row = blockIdx.x * blockDim.x + threadIdx.x; row < rows; row += gridDim.x * blockDim.x) {
    keys[row] = math::shuffle_key(seed, epoch, static_cast<uint32_t>(row));
    indices[row] = row;
  }
}

// One thread per group of four columns of one batch row: the group is the unit of the
// binarisation's Philox block, and a warp reads consecutive groups of the same source row.
template <typename Raw>
__global__ void gather_batch_kernel(const Raw* __restrict__ data, const int dim,
                                    const int32_t* __restrict__ perm,
                                    const int32_t* __restrict__ first, const int rows,
                                    const float scale, const float offset, const bool clip_to_unit,
                                    const bool binarize, const uint64_t seed,
                                    const uint64_t* __restrict__ draw_index,
                                    float* __restrict__ out) {
  constexpr int kGroup = math::kBinarizeColumnsPerBlock;
  const int groups = (dim + kGroup - 1) / kGroup;
  const size_t total = static_cast<size_t>(rows) * groups;
  const uint64_t draw = binarize ? *draw_index : 0;
  const int32_t* batch_perm = perm + *first;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / groups);
    const int g = static_cast<int>(i % groups);
    const int32_t source_row = batch_perm[r];
    const Raw* src = data + static_cast<size_t>(source_row) * dim;
    float* dst = out + static_cast<size_t>(r) * dim;
    uint4 words = make_uint4(0, 0, 0, 0);
    if (binarize)
      words = math::binarize_words(seed, draw, static_cast<uint32_t>(source_row),
                                   static_cast<uint32_t>(g));
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      const int col = g * kGroup + k;
      if (col < dim) {
        const float p = math::normalise(static_cast<float>(src[col]), scale, offset, clip_to_unit);
        dst[col] = binarize ? math::binarize(p, math::uint4_component(words, k)) : p;
      }
    }
  }
}

__global__ void advance_batch_start_kernel(int32_t* first, const int rows) {
  *first = math::next_batch_start(*first, rows);
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

size_t sort_temp_bytes(int rows) {
  size_t bytes = 0;
  // With a null temp pointer CUB only computes the size: no device work, no synchronisation.
  FUSEDVAE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), rows));
  return bytes;
}

}  // namespace

ShuffleWorkspace create_shuffle_workspace(int rows) {
  if (rows < 1) throw std::invalid_argument("create_shuffle_workspace: rows must be >= 1");
  ShuffleWorkspace ws;
  ws.capacity = rows;
  ws.temp_bytes = sort_temp_bytes(rows);
  try {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ws.temp, ws.temp_bytes));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ws.keys_in, rows * sizeof(uint32_t)));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ws.keys_out, rows * sizeof(uint32_t)));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ws.indices_in, rows * sizeof(int32_t)));
  } catch (...) {
    destroy_shuffle_workspace(&ws);
    throw;
  }
  return ws;
}

void destroy_shuffle_workspace(ShuffleWorkspace* ws) {
  cudaFree(ws->temp);
  cudaFree(ws->keys_in);
  cudaFree(ws->keys_out);
  cudaFree(ws->indices_in);
  *ws = ShuffleWorkspace{};
}

void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm, ShuffleWorkspace ws,
                     cudaStream_t stream) {
  if (rows < 1) throw std::invalid_argument("shuffle_indices: rows must be >= 1");
  if (rows > ws.capacity || ws.temp == nullptr)
    throw std::invalid_argument("shuffle_indices: " + std::to_string(rows) +
                                " rows exceed the workspace's capacity of " +
                                std::to_string(ws.capacity));
  size_t temp_bytes = sort_temp_bytes(rows);
  if (temp_bytes > ws.temp_bytes)
    throw std::logic_error("shuffle_indices: CUB wants more temporary storage for fewer rows");
  temp_bytes = ws.temp_bytes;
  launch("shuffle_keys_kernel", shuffle_keys_kernel, grid_stride_grid(rows, kDefaultBlockSize),
         kDefaultBlockSize, 0, stream, rows, seed, epoch, ws.keys_in, ws.indices_in);
  // LSD radix sort is stable, so equal keys keep row order, as in the CPU twin's stable_sort.
  FUSEDVAE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ws.temp, temp_bytes, ws.keys_in, ws.keys_out,
                                                      ws.indices_in, perm, rows, 0, 32, stream));
}

void gather_batch(const uint8_t* data_u8, const float* data_f32, int dim, const int32_t* perm,
                  const int32_t* first, int rows, float scale, float offset, bool binarize,
                  RngState rng, float* out, cudaStream_t stream, bool clip_to_unit) {
  math::check_gather_arguments(data_u8, data_f32, dim, first, rows, binarize, rng.draw_index);
  const size_t groups = static_cast<size_t>(rows) * ((dim + math::kBinarizeColumnsPerBlock - 1) /
                                                     math::kBinarizeColumnsPerBlock);
  const int grid = grid_stride_grid(groups, kDefaultBlockSize);
  if (data_u8) {
    launch("gather_batch_kernel<uint8_t>", gather_batch_kernel<uint8_t>, grid, kDefaultBlockSize, 0,
           stream, data_u8, dim, perm, first, rows, scale, offset, clip_to_unit, binarize, rng.seed,
           rng.draw_index, out);
  } else {
    launch("gather_batch_kernel<float>", gather_batch_kernel<float>, grid, kDefaultBlockSize, 0,
           stream, data_f32, dim, perm, first, rows, scale, offset, clip_to_unit, binarize,
           rng.seed, rng.draw_index, out);
  }
}

void advance_batch_start(int32_t* first, int rows, cudaStream_t stream) {
  if (first == nullptr || rows < 1)
    throw std::invalid_argument("advance_batch_start: needs `first` and rows >= 1");
  launch("advance_batch_start_kernel", advance_batch_start_kernel, 1, 1, 0, stream, first, rows);
}

}  // namespace fusedvae::gpu

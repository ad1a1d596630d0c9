// @brief Deterministic reductions: warp and block sums (float and double), per-row warp sums and a
// fused "last block finishes" batch sum.
//
// Every sum here runs in an order fixed by the problem size and the block size alone: lane-strided
// partials, an xor-shuffle tree, one partial per block written to memory, and the last block to
// finish adding the partials in block order. No float atomics; the only atomic is an integer
// counter that elects the last block. Results are bitwise identical run to run and across devices.
// (tests/support's gpu_batch_sum_depth bounds the error of exactly this order.)
#pragma once

#include "kernels/launch.cuh"
#include "kernels/reduction_workspace.h"

namespace fusedvae {

constexpr unsigned kFullWarpMask = 0xffffffffu;

// Sum over the warp by an xor-shuffle tree (offsets 16, 8, 4, 2, 1); the result is valid in every
// lane. T is float or double.
template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(kFullWarpMask, value, offset);
  return value;
}

// Sum of `value` over the block, in a fixed order (each warp's tree, then warp 0's tree over the
// warps' sums in warp order); the result is valid in thread 0. `warp_partials` is shared memory
// with one slot per warp (kWarpSize slots cover any block). Every thread of the block must call it.
template <typename T>
__device__ __forceinline__ T block_sum(T value, T* warp_partials) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) warp_partials[warp] = value;
  __syncthreads();
  T total = T(0);
  if (warp == 0) {
    total = lane < num_warps ? warp_partials[lane] : T(0);
    total = warp_sum(total);
  }
  __syncthreads();  // warp_partials may be reused by the caller
  return total;
}

// Ends a launch whose blocks each hold a partial sum (valid in thread 0): the last block to arrive
// adds all partials in block order and writes scale * total to *out. Must be called by every
// thread of every block, with gridDim.x <= kReduceMaxBlocks.
__device__ __forceinline__ void finish_grid_sum(float block_partial, float scale, float* out,
                                                ReductionWorkspace workspace,
                                                float* warp_partials) {
  __shared__ bool is_last_block;
  if (threadIdx.x == 0) {
    workspace.block_partials[blockIdx.x] = block_partial;
    __threadfence();  // publish the partial before announcing it
    const unsigned arrived = atomicAdd(workspace.blocks_done, 1u);
    is_last_block = (arrived == gridDim.x - 1);
  }
  __syncthreads();
  if (!is_last_block) return;
  __threadfence();
  float sum = 0.0f;
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x)
    sum += __ldcg(workspace.block_partials + b);  // L2: other blocks' writes, not a stale L1 line
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) {
    *out = sum * scale;
    *workspace.blocks_done = 0;
  }
}

// The shape every fused loss kernel shares: one warp per row, rows spread over the grid (launch it
// with row_reduction_grid). `lane_partial(row, lane)` does the lane's element-wise work in that row
// and returns the lane's share of the row's sum. Writes the sum of each row to per_row[row] and
// batch_scale * (sum over rows) to *reduced. Must be called by every thread of the grid.
template <typename LanePartial>
__device__ __forceinline__ void reduce_rows_per_warp(int batch, LanePartial lane_partial,
                                                     float batch_scale, float* per_row,
                                                     float* reduced, ReductionWorkspace workspace) {
  __shared__ float warp_partials[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warps_per_block = blockDim.x / kWarpSize;
  const int first_row = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize;
  const int row_stride = gridDim.x * warps_per_block;
  float rows_sum = 0.0f;  // meaningful in lane 0
  for (int row = first_row; row < batch; row += row_stride) {
    const float row_sum = warp_sum(lane_partial(row, lane));
    if (lane == 0) {
      per_row[row] = row_sum;
      rows_sum += row_sum;
    }
  }
  const float block_total = block_sum(lane == 0 ? rows_sum : 0.0f, warp_partials);
  finish_grid_sum(block_total, batch_scale, reduced, workspace, warp_partials);
}

}  // namespace fusedvae

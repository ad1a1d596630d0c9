// @brief Deterministic reductions: per-row warp sums and a fused "last block finishes" batch sum.
//
// Every sum here runs in an order fixed by the problem size and the block size alone: lane-strided
// partials, an xor-shuffle tree, one partial per block written to memory, and the last block to
// finish adding the partials in block order. No float atomics; the only atomic is an integer
// counter that elects the last block. Results are bitwise identical run to run and across devices.
#pragma once

#include "kernels/reduction_workspace.h"

namespace fusedvae {

constexpr unsigned kFullWarpMask = 0xffffffffu;
constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(kFullWarpMask, value, offset);
  return value;
}

// Sum of `value` over the block, in a fixed order; the result is valid in thread 0.
// `warp_partials` is shared memory with one slot per warp.
__device__ __forceinline__ float block_sum(float value, float* warp_partials) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) warp_partials[warp] = value;
  __syncthreads();
  float total = 0.0f;
  if (warp == 0) {
    total = lane < num_warps ? warp_partials[lane] : 0.0f;
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

}  // namespace fusedvae

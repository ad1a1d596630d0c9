// @brief Device scratch for the deterministic batch reductions that end the fused loss kernels.
#pragma once

#include "kernels/launch.cuh"

namespace fusedvae {

// The largest grid a reducing kernel launches: one partial per block lives in `block_partials`, and
// the grid fixes the summation order, so this cap is part of the results (see launch.cuh).
constexpr int kReduceMaxBlocks = 1024;

// Device memory, made once and reused by every launch (never per step). `blocks_done` is a counter
// that the last block of a launch resets to zero, so it is ready for the next launch and for replay
// inside a CUDA graph. One workspace serves one stream at a time.
struct ReductionWorkspace {
  float* block_partials = nullptr;  // [kReduceMaxBlocks]
  unsigned int* blocks_done = nullptr;
};

// Grid of a kernel built on reduce_rows_per_warp: one warp per row, capped at kReduceMaxBlocks.
// It depends on the problem and block size only, so a batch reduction has the same order (and
// bits) on every device.
inline int row_reduction_grid(int rows, int block_size) {
  return gpu::capped_grid(gpu::ceil_div(static_cast<size_t>(rows), block_size / kWarpSize),
                          kReduceMaxBlocks);
}

namespace gpu {
ReductionWorkspace create_reduction_workspace();
void destroy_reduction_workspace(ReductionWorkspace* workspace);
}  // namespace gpu

}  // namespace fusedvae

// @brief Device scratch for the deterministic batch reductions that end the fused loss kernels.
#pragma once

namespace fusedvae {

// The largest grid a reducing kernel launches: one partial per block lives in `block_partials`.
constexpr int kReduceMaxBlocks = 1024;

// Device memory, made once and reused by every launch (never per step). `blocks_done` is a counter
// that the last block of a launch resets to zero, so it is ready for the next launch and for replay
// inside a CUDA graph. One workspace serves one stream at a time.
struct ReductionWorkspace {
  float* block_partials = nullptr;  // [kReduceMaxBlocks]
  unsigned int* blocks_done = nullptr;
};

namespace gpu {
ReductionWorkspace create_reduction_workspace();
void destroy_reduction_workspace(ReductionWorkspace* workspace);
}  // namespace gpu

}  // namespace fusedvae

// @brief GPU launcher of the global gradient norm and its clipping factor (kernels in
// grad_norm.cu). CPU twin: host/ops/grad_norm_cpu.h (same name and arguments, without workspace and
// stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/launch.cuh"

namespace fusedvae::gpu {

// The largest grid of the first pass: one double partial per block.
constexpr int kGradNormMaxBlocks = 1024;

// Device scratch, made once per trainer.
struct GradNormWorkspace {
  double* block_partials = nullptr;  // [kGradNormMaxBlocks]
};
GradNormWorkspace create_grad_norm_workspace();
void destroy_grad_norm_workspace(GradNormWorkspace* workspace);

// *grad_norm = sqrt(sum of grads^2) over the flat buffer, accumulated in double in an order fixed
// by `count` and `block_size` alone (pass 1: block partials; pass 2: one block adds them in block
// order; no atomics). *grad_scale = min(1, max_norm / (norm + 1e-6)), or 1 when max_norm <= 0.
// Both outputs are device scalars; nothing is read back.
void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                      float* grad_scale, GradNormWorkspace workspace, cudaStream_t stream,
                      int block_size = kDefaultBlockSize);

}  // namespace fusedvae::gpu

// @brief The GPU backend: the fused kernels (kernels/) and cuBLASLt on one stream, the step
// recorded as a CUDA graph. Nothing inside a step synchronises with the host or allocates.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "host/train/backend.h"
#include "host/train/gpu/cublaslt_linear.h"

namespace fusedvae::gpu {

// What the GPU layers need from their backend (host/train/gpu/linear_gpu.cpp).
class GpuBackendContext {
 public:
  virtual ~GpuBackendContext() = default;
  virtual LinearEngine& linear_engine() = 0;
  virtual cudaStream_t stream() const = 0;
  // False when FUSEDVAE_UNFUSED_EPILOGUES is set: plain products and elementwise kernels only.
  virtual bool fused_epilogues() const = 0;
};

}  // namespace fusedvae::gpu

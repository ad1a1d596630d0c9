// @brief Error checking for CUDA runtime calls: a failure throws with the call, the file and the
// line, so the CLI can print one line and exit non-zero. (Kernel launches are checked by
// gpu::launch in kernels/launch.cuh, which names the kernel.)
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fusedvae {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file,
                                          int line) {
  throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(err) + " in " + what +
                           " (" + file + ":" + std::to_string(line) + ")");
}

}  // namespace fusedvae

#define FUSEDVAE_CUDA_CHECK(call)                                             \
  do {                                                                        \
    const cudaError_t fusedvae_err_ = (call);                                 \
    if (fusedvae_err_ != cudaSuccess)                                         \
      ::fusedvae::throw_cuda_error(fusedvae_err_, #call, __FILE__, __LINE__); \
  } while (0)

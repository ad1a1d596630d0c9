// @brief Error checking for CUDA runtime calls and kernel launches: a failure throws with the
// call, the file and the line, so the CLI can print one line and exit non-zero.
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

// After every launch: catches bad configurations at once, and (with CUDA_LAUNCH_BLOCKING=1 or under
// compute-sanitizer) faults inside the kernel.
#define FUSEDVAE_CHECK_LAUNCH(kernel_name) FUSEDVAE_CUDA_CHECK(cudaGetLastError())

// @brief Refusing data too large for this machine's memory with its size, before allocating it.
#pragma once

#include <cstdint>
#include <string>

namespace fusedvae::io {

// Throws std::runtime_error "<source>: <what> needs N MiB of memory, M MiB are available" when
// `bytes` exceed the memory the kernel reports as available (MemAvailable in /proc/meminfo). Does
// nothing where that figure cannot be read.
void check_fits_in_memory(const std::string& source, uint64_t bytes, const std::string& what);

// The same for a GPU, with the free bytes its runtime reported (cudaMemGetInfo, read by the
// caller): std::runtime_error "<source>: the data needs N MiB of GPU memory, M MiB are free on
// <device>; train with --device cpu, or on less data" when `bytes` exceed `free_bytes`.
void check_fits_in_device_memory(const std::string& source, uint64_t bytes, uint64_t free_bytes,
                                 const std::string& device);

}  // namespace fusedvae::io

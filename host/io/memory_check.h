// @brief Refusing data too large for this machine's memory with its size, before allocating it.
#pragma once

#include <cstdint>
#include <string>

namespace fusedvae::io {

// Throws std::runtime_error "<source>: <what> needs N MiB of memory, M MiB are available" when
// `bytes` exceed the memory the kernel reports as available (MemAvailable in /proc/meminfo). Does
// nothing where that figure cannot be read.
void check_fits_in_memory(const std::string& source, uint64_t bytes, const std::string& what);

}  // namespace fusedvae::io

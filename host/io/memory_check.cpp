// @brief MemAvailable against the bytes a load is about to allocate.
#include "host/io/memory_check.h"

#include <fstream>
#include <stdexcept>

namespace fusedvae::io {

void check_fits_in_memory(const std::string& source, uint64_t bytes, const std::string& what) {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") {
      const uint64_t available = kib * 1024;
      if (bytes > available)
        throw std::runtime_error(source + ": " + what + " needs " + std::to_string(bytes >> 20) +
                                 " MiB of memory, " + std::to_string(available >> 20) +
                                 " MiB are available");
      return;
    }
}

void check_fits_in_device_memory(const std::string& source, uint64_t bytes, uint64_t free_bytes,
                                 const std::string& device) {
  if (bytes > free_bytes)
    throw std::runtime_error(source + ": the data needs " + std::to_string(bytes >> 20) +
                             " MiB of GPU memory, " + std::to_string(free_bytes >> 20) +
                             " MiB are free on " + device +
                             "; train with --device cpu, or on less data");
}

}  // namespace fusedvae::io

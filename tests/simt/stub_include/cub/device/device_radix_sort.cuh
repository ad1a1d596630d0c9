// @brief Stand-in for CUB's device radix sort in the SIMT harness build. CUB's device algorithms
// are not emulated (they stay GPU-only, README): SortPairs returns cudaErrorNotSupported, so the
// device shuffle throws under the harness instead of pretending to sort.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace cub {

struct DeviceRadixSort {
  template <typename Key, typename Value, typename Count>
  static cudaError_t SortPairs(void* /*temp*/, size_t& temp_bytes, const Key* /*keys_in*/,
                               Key* /*keys_out*/, const Value* /*values_in*/, Value* /*values_out*/,
                               Count /*count*/, int /*begin_bit*/ = 0,
                               int /*end_bit*/ = sizeof(Key) * 8, cudaStream_t /*stream*/ = 0) {
    temp_bytes = 0;
    return cudaErrorNotSupported;
  }
};

}  // namespace cub

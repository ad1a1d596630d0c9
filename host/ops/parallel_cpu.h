// @brief How the CPU twins use threads: OpenMP loops on the pool oneDNN's matrix products run on
// (host/ops/matmul_cpu.h), so the step has one set of threads, not two competing ones.
//
// Every parallel loop here splits work whose pieces are independent (rows, column tiles,
// elements) or ends in sums over pieces of a fixed size, added in piece order: the results are
// the same bits for any thread count.
#pragma once

#include <cstddef>

namespace fusedvae::cpu {

// Below this many elements a loop stays on the calling thread: waking the pool costs a few
// microseconds, more than such a loop takes.
constexpr size_t kMinParallelElements = size_t{1} << 14;

inline bool worth_threads(size_t elements) {
  return elements >= kMinParallelElements;
}
inline bool worth_threads(int rows, int cols) {
  return worth_threads(static_cast<size_t>(rows) * static_cast<size_t>(cols));
}

// Elements that each draw a Philox normal (cuRAND's host Box-Muller: about 20 ns each, against
// well under 1 ns for a plain elementwise op) count as this many plain ones.
constexpr size_t kPhiloxElementCost = 32;
inline bool worth_threads_drawing(int rows, int cols) {
  return worth_threads(static_cast<size_t>(rows) * static_cast<size_t>(cols) * kPhiloxElementCost);
}

}  // namespace fusedvae::cpu

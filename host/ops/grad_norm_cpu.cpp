// @brief CPU twin of the global gradient norm: sum of squares in double, in a fixed order.
#include "host/ops/grad_norm_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "host/ops/parallel_cpu.h"
#include "kernels/grad_norm_math.cuh"

namespace fusedvae::cpu {

namespace {

// Sum of squares of one block in double: kLanes interleaved partial sums (element i goes to lane
// i % kLanes), added up lane by lane at the end, so the additions do not wait on each other (one
// chain made this 8% of the CPU trainer's main thread).
double block_sum_of_squares(const float* g, size_t count) {
  constexpr size_t kLanes = 8;
  double lanes[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes)
    for (size_t k = 0; k < kLanes; ++k) {
      const double x = g[i + k];
      lanes[k] += x * x;
    }
  for (size_t k = 0; i < count; ++i, ++k) {
    const double x = g[i];
    lanes[k] += x * x;
  }
  double sum = 0.0;
  for (const double lane : lanes) sum += lane;
  return sum;
}

}  // namespace

void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                      float* grad_scale) {
  // Blocks of a fixed size, summed on the pool, then added in block order: the same bits for any
  // thread count, every run.
  constexpr size_t kBlock = size_t{1} << 15;
  const size_t blocks = (count + kBlock - 1) / kBlock;
  constexpr size_t kStackBlocks = 256;  // 8M parameters without an allocation
  double stack_sums[kStackBlocks];
  std::vector<double> heap_sums(blocks > kStackBlocks ? blocks : 0);
  double* sums = blocks > kStackBlocks ? heap_sums.data() : stack_sums;
#pragma omp parallel for schedule(static) if (worth_threads(count))
  for (size_t b = 0; b < blocks; ++b) {
    const size_t first = b * kBlock;
    sums[b] = block_sum_of_squares(grads + first, std::min(kBlock, count - first));
  }
  double sum = 0.0;
  for (size_t b = 0; b < blocks; ++b) sum += sums[b];
  const double norm = std::sqrt(sum);
  *grad_norm = static_cast<float>(norm);
  *grad_scale = math::clip_factor(norm, max_norm);
}

}  // namespace fusedvae::cpu

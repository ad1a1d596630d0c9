// @brief CPU twin of the global gradient norm: sum of squares in double, in a fixed order.
#include "host/ops/grad_norm_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "host/ops/lane_sum.h"
#include "host/ops/parallel_cpu.h"
#include "kernels/grad_norm_math.cuh"

namespace fusedvae::cpu {

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
    const float* block = grads + first;
    sums[b] = lane_sum(std::min(kBlock, count - first), [block](size_t i) {
      const double x = block[i];
      return x * x;
    });
  }
  double sum = 0.0;
  for (size_t b = 0; b < blocks; ++b) sum += sums[b];
  const double norm = std::sqrt(sum);
  *grad_norm = static_cast<float>(norm);
  *grad_scale = math::clip_factor(norm, max_norm);
}

}  // namespace fusedvae::cpu

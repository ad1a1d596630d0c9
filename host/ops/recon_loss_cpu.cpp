// @brief CPU twin of the fused reconstruction losses: same scalar math, sums in double.
#include "host/ops/recon_loss_cpu.h"

#include <algorithm>
#include <stdexcept>

#include "host/ops/lane_sum.h"
#include "host/ops/parallel_cpu.h"
#include "host/ops/vector_math.h"
#include "kernels/recon_loss_math.cuh"

namespace fusedvae::cpu {

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("recon_loss: batch and dim must be >= 1");
  check_recon_loss(loss, "recon_loss");
  const float batch_scale = batch_reduction_scale(reduction, batch);
  const float grad_scale = loss_scale * batch_scale;
  // A chunk of a row's terms first (a loop without a reduction, which the compiler vectorises),
  // then their sum in double, in the fixed lanes of lane_sum, chunk after chunk. The chunk lives on
  // the stack: no allocation per call, which is once per training step. Rows run on the pool; the
  // batch's sum is taken after, in row order.
  constexpr int kChunk = 256;
  math::with_recon_kind(loss.kind, [&](auto kind) {
#pragma omp parallel for schedule(static) if (worth_threads(batch, dim))
    for (int row = 0; row < batch; ++row) {
      const float* out = output + static_cast<size_t>(row) * dim;
      const float* tgt = target + static_cast<size_t>(row) * dim;
      float* grad = grad_output + static_cast<size_t>(row) * dim;
      double row_loss = 0.0;
      for (int first = 0; first < dim; first += kChunk) {
        const int count = std::min(kChunk, dim - first);
        float term_loss[kChunk];
        for (int col = 0; col < count; ++col) {
          const auto term =
              math::recon_term<decltype(kind)::value>(out[first + col], tgt[first + col], loss);
          grad[first + col] = grad_scale * term.grad;
          term_loss[col] = term.loss;
        }
        row_loss += lane_sum(count, [&term_loss](size_t col) { return double{term_loss[col]}; });
      }
      loss_per_sample[row] = static_cast<float>(row_loss);
    }
    double batch_loss = 0.0;
    for (int row = 0; row < batch; ++row) batch_loss += loss_per_sample[row];
    *loss_reduced = static_cast<float>(batch_loss) * batch_scale;
  });
}

}  // namespace fusedvae::cpu

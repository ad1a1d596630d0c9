// @brief CPU twin of the fused reconstruction losses (kernels/recon_loss.h).
#pragma once

#include "kernels/op_params.h"

namespace fusedvae::cpu {

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output);

}  // namespace fusedvae::cpu

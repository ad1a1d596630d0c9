// @brief GPU launcher of the fused reconstruction losses (kernel in recon_loss.cu).
//
// One pass writes the loss of each sample, the batch reduction and the gradient with respect to
// the decoder output. The CPU twin (host/ops/recon_loss_cpu.h) has the same name and arguments,
// without the workspace and the stream.
//
// Input range with finite outputs (tests/test_recon_loss.cpp checks it): Bernoulli logits up to
// |1e4| with targets in [0, 1]; for the other losses |output|, |target| up to 1e3 with sigma and
// beta in [1e-3, 1e3] (beta = 0 too); loss_scale up to 65536. NaN inputs propagate.
#pragma once

#include <cuda_runtime.h>

#include "kernels/launch.cuh"
#include "kernels/op_params.h"
#include "kernels/reduction_workspace.h"

namespace fusedvae::gpu {

// output, target, grad_output: [batch, dim] device memory. loss_per_sample[b] = sum over features
// of the loss; *loss_reduced = the batch sum or mean of it; grad_output = loss_scale *
// d(*loss_reduced)/d(output) (so it already carries the 1/batch of the mean reduction).
void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 ReductionWorkspace workspace, cudaStream_t stream,
                                 int block_size = kDefaultBlockSize);

}  // namespace fusedvae::gpu

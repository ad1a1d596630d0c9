// @brief CPU twins of the Linear layers' elementwise kernels (kernels/linear_activation.h).
#pragma once

#include "kernels/linear_activation.h"

namespace fusedvae::cpu {

void bias_activation_forward(float* y, const float* bias, int rows, int cols, LinearAct act);
void activation_backward(float* grad, const float* y, int rows, int cols, LinearAct act);
// Summed in float from row 0 upwards: the kernel's order, so the twin matches it bitwise.
void bias_gradient(const float* grad, int rows, int cols, float* bias_grad);

}  // namespace fusedvae::cpu

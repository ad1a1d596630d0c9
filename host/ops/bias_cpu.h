// @brief CPU twins of the Linear layers' bias add and bias gradient (kernels/bias.h).
#pragma once

namespace fusedvae::cpu {

void bias_add(float* y, const float* bias, int rows, int cols);
// In float, in the kernel's summation order (kernels/bias_math.cuh), so the two agree bitwise.
void bias_gradient(const float* dy, int rows, int cols, float* bias_grad);

}  // namespace fusedvae::cpu

// @brief CPU twins of the bias + activation forward and the activation backward of a hidden layer
// (scalar math in kernels/activation_math.cuh).
#pragma once

#include "kernels/op_params.h"

namespace fusedvae::cpu {

// In place on y [rows, cols] (the product x W^T): y = act(y + bias).
void bias_activation_forward(float* y, const float* bias, int rows, int cols, Activation act);

// In place on dy [rows, cols]: dy *= act'(.) written from the layer's output y.
void activation_backward(const float* y, float* dy, int rows, int cols, Activation act);

}  // namespace fusedvae::cpu

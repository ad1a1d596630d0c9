// @brief The GRU cell's element-wise math (PyTorch's nn.GRU), shared by the GPU kernels and the
// CPU twin: one hidden unit of one sample at one time step, forward and backward.
//
// With the input projection gi = W_i{r,z,n} x + b_i{r,z,n} and the recurrent one
// gh = W_h{r,z,n} h + b_h{r,z,n} computed by matrix products (gate order r, z, n, as PyTorch
// stacks them):
//   r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),
//   n = tanh(gi_n + r * gh_n), h' = (1 - z) * n + z * h.
// The forward keeps r, z, n and gh_n per unit: the backward needs nothing else (its derivatives
// are written in the gates' outputs, never their inputs).
#pragma once

#include <cmath>

#include "kernels/host_device.cuh"
#include "kernels/recon_loss_math.cuh"

namespace fusedvae::math {

template <typename T>
struct GruGates {
  T r, z, n, gh_n;  // what the backward needs
  T h_next;
};

template <typename T>
FUSEDVAE_HD GruGates<T> gru_cell_forward(T gi_r, T gi_z, T gi_n, T gh_r, T gh_z, T gh_n, T h) {
  GruGates<T> g;
  g.r = sigmoid(gi_r + gh_r);
  g.z = sigmoid(gi_z + gh_z);
  g.n = std::tanh(gi_n + g.r * gh_n);
  g.gh_n = gh_n;
  // (1 - z) n + z h written as n + z (h - n): one rounding fewer, and exact when z is 0 or 1.
  g.h_next = g.n + g.z * (h - g.n);
  return g;
}

// The gradients of one unit's pre-activations from dh_next = dL/dh' (all that reaches h' from
// the output and the next step). d_gi is the gradient of gi (and of b_i), d_gh that of gh (and of
// b_h): they differ only in the n gate, where gh_n is scaled by r. dh_direct is the part of dL/dh
// that does not pass through gh (the rest is d_gh W_h, a matrix product).
template <typename T>
struct GruCellGrad {
  T d_gi_r, d_gi_z, d_gi_n;
  T d_gh_n;  // d_gh_r = d_gi_r and d_gh_z = d_gi_z
  T dh_direct;
};

template <typename T>
FUSEDVAE_HD GruCellGrad<T> gru_cell_backward(T r, T z, T n, T gh_n, T h, T dh_next) {
  GruCellGrad<T> d;
  const T dn = dh_next * (T(1) - z);
  const T dz = dh_next * (h - n);
  const T dn_pre = dn * (T(1) - n * n);  // tanh' from its output
  d.d_gi_n = dn_pre;
  d.d_gh_n = dn_pre * r;
  d.d_gi_r = dn_pre * gh_n * r * (T(1) - r);  // sigmoid' from its output
  d.d_gi_z = dz * z * (T(1) - z);
  d.dh_direct = dh_next * z;
  return d;
}

}  // namespace fusedvae::math

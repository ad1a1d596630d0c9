// @brief FUSEDVAE_HD: a function compiled for the device and the host alike, which is how the
// kernels and their CPU twins share one scalar formula.
#pragma once

#ifdef __CUDACC__
#define FUSEDVAE_HD __host__ __device__ __forceinline__
#else
#define FUSEDVAE_HD inline
#endif

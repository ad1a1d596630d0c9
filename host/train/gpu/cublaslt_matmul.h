// @brief One cuBLASLt float32 matrix product with its descriptors and algorithm chosen once
// (no split-K reduction in place, so one build on one GPU gives the same bits every call): the
// building block of the Linear layers (cublaslt_linear.h) and the GRU (gru_gpu.h).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "host/train/gpu/cublaslt_linear.h"

#define FUSEDVAE_CUBLAS_CHECK(call)                                                              \
  do {                                                                                           \
    const cublasStatus_t fusedvae_status_ = (call);                                              \
    if (fusedvae_status_ != CUBLAS_STATUS_SUCCESS)                                               \
      throw std::runtime_error(std::string("cuBLASLt error: ") +                                 \
                               cublasLtGetStatusName(fusedvae_status_) + " in " + #call + " (" + \
                               __FILE__ + ":" + std::to_string(__LINE__) + ")");                 \
  } while (0)

namespace fusedvae::gpu {

// One matmul: D = alpha op(A) op(B) + beta C (C = D), column-major, with its chosen algorithm.
struct MatmulShape {
  cublasOperation_t trans_a, trans_b;
  // Stored (not transposed) extents of A, B and D, column-major with ld = rows.
  int a_rows, a_cols, b_rows, b_cols, d_rows, d_cols;
  size_t align_a, align_b, align_d;
};

struct MatmulEpilogue {
  cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;  // representative pointer, for the alignment the heuristic sees
  const void* aux = nullptr;
  int64_t aux_ld = 0;
};

class Matmul {
 public:
  Matmul() = default;
  ~Matmul() { release(); }
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // Builds the descriptors and asks the heuristic for one algorithm with no split-K reduction
  // (then, failing that, one whose split-K partials are reduced in a separate deterministic pass;
  // never the in-place scheme). Returns CUBLAS_STATUS_SUCCESS holding the algorithm, or the
  // heuristic's refusal (NOT_SUPPORTED also when it returned no algorithm) holding nothing: the
  // caller decides whether a refusal is fatal.
  cublasStatus_t build(const LinearEngine& engine, const MatmulShape& s, const MatmulEpilogue& e);

  bool valid() const { return desc_ != nullptr; }

  // D = op(A) op(B) (+ D when accumulating). The epilogue's bias and aux pointers are set per call
  // (a host-side write into the descriptor made at construction; no allocation, no
  // synchronisation).
  void run(const LinearEngine& engine, const void* a, const void* b, void* d, bool accumulate,
           const void* bias, const void* aux, cudaStream_t stream) const;

 private:
  void release();

  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
};

}  // namespace fusedvae::gpu

// @brief cuBLASLt matmul: descriptors, the deterministic algorithm choice, the call.
#include "host/train/gpu/cublaslt_matmul.h"

namespace fusedvae::gpu {
namespace {

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
}

template <typename T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
              const T& value) {
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
}

}  // namespace

cublasStatus_t Matmul::build(const LinearEngine& engine, const MatmulShape& s,
                             const MatmulEpilogue& e) {
  release();
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, engine.compute_type(), CUDA_R_32F));
  set_desc(desc_, CUBLASLT_MATMUL_DESC_TRANSA, s.trans_a);
  set_desc(desc_, CUBLASLT_MATMUL_DESC_TRANSB, s.trans_b);
  set_desc(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, e.kind);
  if (e.bias != nullptr) set_desc(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, e.bias);
  if (e.aux != nullptr) {
    set_desc(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, e.aux);
    set_desc(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, e.aux_ld);
  }
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_32F, s.a_rows, s.a_cols, s.a_rows));
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_32F, s.b_rows, s.b_cols, s.b_rows));
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_, CUDA_R_32F, s.d_rows, s.d_cols, s.d_rows));

  cublasLtMatmulPreference_t pref = nullptr;
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = engine.workspace_bytes();
  const uint32_t schemes[] = {
      CUBLASLT_REDUCTION_SCHEME_NONE,
      CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE};
  cublasStatus_t outcome = CUBLAS_STATUS_NOT_SUPPORTED;
  try {
    set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<uint32_t>(s.align_a));
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<uint32_t>(s.align_b));
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<uint32_t>(s.align_d));
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<uint32_t>(s.align_d));
    for (const uint32_t scheme : schemes) {
      set_pref(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, scheme);
      cublasLtMatmulHeuristicResult_t result{};
      int returned = 0;
      const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
          engine.handle(), desc_, a_, b_, d_, d_, pref, 1, &result, &returned);
      if (status == CUBLAS_STATUS_SUCCESS && returned > 0 &&
          result.state == CUBLAS_STATUS_SUCCESS) {
        algo_ = result.algo;
        outcome = CUBLAS_STATUS_SUCCESS;
        break;
      }
      // Keep the most telling refusal: an error status over a plain "none returned".
      if (status != CUBLAS_STATUS_SUCCESS) outcome = status;
    }
  } catch (...) {
    cublasLtMatmulPreferenceDestroy(pref);
    throw;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (outcome != CUBLAS_STATUS_SUCCESS) release();
  return outcome;
}

void Matmul::run(const LinearEngine& engine, const void* a, const void* b, void* d, bool accumulate,
                 const void* bias, const void* aux, cudaStream_t stream) const {
  if (bias != nullptr) set_desc(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (aux != nullptr) set_desc(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
  const float alpha = 1.0f;
  const float beta = accumulate ? 1.0f : 0.0f;
  FUSEDVAE_CUBLAS_CHECK(cublasLtMatmul(engine.handle(), desc_, &alpha, a, a_, b, b_, &beta, d, d_,
                                       d, d_, &algo_, engine.workspace(), engine.workspace_bytes(),
                                       stream));
}

void Matmul::release() {
  if (a_ != nullptr) cublasLtMatrixLayoutDestroy(a_);
  if (b_ != nullptr) cublasLtMatrixLayoutDestroy(b_);
  if (d_ != nullptr) cublasLtMatrixLayoutDestroy(d_);
  if (desc_ != nullptr) cublasLtMatmulDescDestroy(desc_);
  a_ = b_ = d_ = nullptr;
  desc_ = nullptr;
}

}  // namespace fusedvae::gpu

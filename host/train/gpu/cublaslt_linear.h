// @brief nn.Linear on cuBLASLt for the GPU trainer: forward with the bias (and ReLU) fused in the
// matmul epilogue, backward with the ReLU gradient and the bias gradient fused where cuBLASLt
// allows, every descriptor and algorithm chosen once at construction.
//
// Shapes follow PyTorch: x [batch, in] row-major, W [out, in] row-major, y = act(x W^T + b)
// [batch, out]. cuBLASLt is column-major, so each product is written on the transposes:
//   forward   y^T  = W x^T             (m = out, n = batch, k = in; bias along the rows of y^T)
//   input     dx^T = W^T dy^T          (m = in,  n = batch, k = out)
//   weight    dW^T = x^T dy            (m = in,  n = out,   k = batch; BGRADB sums dy over batch)
// Where an epilogue is not offered for float32 on the device (the heuristic returns no algorithm
// or refuses with any status; declined_epilogues() says which and why), the layer falls back to a
// plain product and the small kernels of kernels/activation.h and kernels/bias.h; tanh always takes
// that route (a plain product, then bias + tanh in one kernel), since cuBLASLt has no tanh
// epilogue.
//
// Determinism: the heuristic is asked once per shape, restricted to algorithms without split-K
// reductions (CUBLASLT_REDUCTION_SCHEME_NONE), and the chosen algorithm is reused for every call,
// so one build on one GPU gives bitwise the same results run to run.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kernels/op_params.h"

namespace fusedvae::gpu {

// The handle and the one workspace shared by every matmul issued on one stream.
class LinearEngine {
 public:
  explicit LinearEngine(bool tf32, size_t workspace_bytes = size_t{32} << 20);
  ~LinearEngine();
  LinearEngine(const LinearEngine&) = delete;
  LinearEngine& operator=(const LinearEngine&) = delete;

  cublasLtHandle_t handle() const { return handle_; }
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  cublasComputeType_t compute_type() const { return compute_type_; }

 private:
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cublasComputeType_t compute_type_ = CUBLAS_COMPUTE_32F;
};

// ReLU bit-mask written by a fused forward: one bit per element of y^T, columns of
// relu_mask_ld_bits(out) bits (cuBLASLt wants the leading dimension a multiple of 128).
inline int64_t relu_mask_ld_bits(int out) {
  return (static_cast<int64_t>(out) + 127) / 128 * 128;
}
inline size_t relu_mask_bytes(int out, int batch) {
  return static_cast<size_t>(relu_mask_ld_bits(out) / 8) * static_cast<size_t>(batch);
}

struct LinearSpec {
  int in = 0;
  int out = 0;
  Activation output_act = Activation::kIdentity;
  // How the layer's input was produced: the backward multiplies dx by this activation's derivative
  // (from the input itself, or from the ReLU mask the previous layer wrote).
  Activation input_act = Activation::kIdentity;
  bool needs_input_grad = true;        // false for the first encoder layer (the data needs none)
  bool accumulate_input_grad = false;  // dx += ... (a second head reading the same input)
};

// Device pointers whose alignment the algorithms may assume; later calls must be at least as
// aligned (checked on every call, host side). Any pointer may be null: 256 bytes is then assumed,
// which is what cudaMalloc and the trainer's arena give.
struct LinearAlignment {
  const void* weight = nullptr;
  const void* bias = nullptr;
  const void* weight_grad = nullptr;
  const void* bias_grad = nullptr;
};

// Which paths the heuristic granted, per batch shape (reported by tests and the trainer's log).
struct LinearPaths {
  bool forward_fused_act = false;   // ReLU (and mask) in the epilogue
  bool forward_fused_bias = false;  // bias in the epilogue
  bool input_fused_drelu = false;   // ReLU gradient applied by the dx epilogue
  bool weight_fused_bgrad = false;  // bias gradient from the dW epilogue (BGRADB)
};

class CublasLtLinear {
 public:
  // allow_fused = false takes the plain-product + kernel path everywhere (tests, and a way out
  // should a fused epilogue misbehave on some device).
  CublasLtLinear(LinearEngine& engine, const LinearSpec& spec, const LinearAlignment& alignment,
                 bool allow_fused = true);
  // Creates the descriptors and picks the algorithms for one batch size (at construction time of
  // the owner, never inside a step). input_relu_mask: the layer feeding this one writes a ReLU
  // mask for this batch (its writes_relu_mask), which the backward may then use.
  void add_batch(int batch, bool input_relu_mask);
  ~CublasLtLinear();
  CublasLtLinear(const CublasLtLinear&) = delete;
  CublasLtLinear& operator=(const CublasLtLinear&) = delete;

  const LinearSpec& spec() const { return spec_; }
  LinearPaths paths(int batch) const;
  // True when forward writes a ReLU mask for this batch (the next layer's input_relu_mask).
  bool writes_relu_mask(int batch) const;
  // The fused epilogues the heuristic refused for this batch and why ("DRELU (13 x 7):
  // CUBLAS_STATUS_NOT_SUPPORTED, ..."; empty when none was), for the tests' and benchmarks' logs.
  const std::string& declined_epilogues(int batch) const;

  // y = act(x W^T + b). relu_mask: [relu_mask_bytes(out, batch)] written when writes_relu_mask.
  void forward(int batch, const float* x, const float* weight, const float* bias, float* y,
               void* relu_mask, cudaStream_t stream) const;
  // dx (=|+=) (dy W) * input_act'(x). x is the forward input; input_mask is the previous layer's
  // ReLU mask (used when input_fused_drelu).
  void backward_input(int batch, const float* dy, const float* weight, const float* x,
                      const void* input_mask, float* dx, cudaStream_t stream) const;
  // dW = dy^T x, db = sum over the batch of dy (overwritten, not accumulated).
  void backward_weight(int batch, const float* dy, const float* x, float* weight_grad,
                       float* bias_grad, cudaStream_t stream) const;

 private:
  struct Plan;
  const Plan& plan(int batch) const;
  void check_alignment(const void* p, size_t assumed, const char* what) const;

  LinearEngine& engine_;
  LinearSpec spec_;
  size_t align_weight_ = 256, align_bias_ = 256, align_weight_grad_ = 256, align_bias_grad_ = 256;
  bool allow_fused_ = true;
  const void* bias_rep_ = nullptr;
  const void* bias_grad_rep_ = nullptr;
  std::map<int, std::unique_ptr<Plan>> plans_;
};

// Largest power of two (<= 256) dividing the address: the alignment cuBLASLt may rely on.
size_t pointer_alignment(const void* p);

}  // namespace fusedvae::gpu

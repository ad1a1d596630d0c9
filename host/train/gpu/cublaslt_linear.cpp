// @brief cuBLASLt Linear layers: descriptors and algorithms made once per shape, fused epilogues
// (bias, ReLU + mask, ReLU gradient, bias gradient) where offered, elementwise kernels otherwise.
#include "host/train/gpu/cublaslt_linear.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/activation.h"
#include "kernels/bias.h"
#include "host/train/gpu/cublaslt_matmul.h"
#include "kernels/cuda_check.h"

namespace fusedvae::gpu {
namespace {

// Activations and masks live in buffers the callers align to at least this (cudaMalloc gives
// 256; the trainer's arena carves at 256).
constexpr size_t kActivationAlignment = 16;
constexpr size_t kMaskAlignment = 256;
// The heuristic reads the alignment of the bias and aux pointers from their values without
// dereferencing them; before the real buffers are known it is shown an address this aligned.
const void* const kAlignedPlaceholder = reinterpret_cast<const void*>(uintptr_t{256});

}  // namespace

size_t pointer_alignment(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  size_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// ---------------------------------------------------------------------------------------------
// Engine

LinearEngine::LinearEngine(bool tf32, size_t workspace_bytes)
    : workspace_bytes_(workspace_bytes),
      compute_type_(tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) {
  FUSEDVAE_CUBLAS_CHECK(cublasLtCreate(&handle_));
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

LinearEngine::~LinearEngine() {
  cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

namespace {

const char* epilogue_name(cublasLtEpilogue_t kind) {
  switch (kind) {
    case CUBLASLT_EPILOGUE_BIAS:
      return "BIAS";
    case CUBLASLT_EPILOGUE_RELU_BIAS:
      return "RELU_BIAS";
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS:
      return "RELU_AUX_BIAS";
    case CUBLASLT_EPILOGUE_DRELU:
      return "DRELU";
    case CUBLASLT_EPILOGUE_BGRADB:
      return "BGRADB";
    default:
      return "DEFAULT";
  }
}

// Tries each epilogue in turn (most fused first) and keeps the first one offered. A fused epilogue
// refused with any status (NOT_SUPPORTED, but also e.g. INVALID_VALUE from a library that checks
// an epilogue's layout rules in the heuristic) is only a slower path: it is noted in `declined`
// and the next option tried, so that one refusal on some device never stops the trainer. Only the
// last option (the plain product) is required.
int build_first(Matmul& matmul, const LinearEngine& engine, const MatmulShape& shape,
                const MatmulEpilogue* options, int count, std::string* declined) {
  for (int i = 0; i < count; ++i) {
    const cublasStatus_t status = matmul.build(engine, shape, options[i]);
    if (status == CUBLAS_STATUS_SUCCESS) return i;
    if (i + 1 == count)
      throw std::runtime_error(
          "cuBLASLt offers no float32 algorithm for a " + std::to_string(shape.d_rows) + " x " +
          std::to_string(shape.d_cols) +
          " matmul (not even without an epilogue): " + cublasLtGetStatusName(status));
    if (!declined->empty()) *declined += ", ";
    *declined += std::string(epilogue_name(options[i].kind)) + " (" + std::to_string(shape.d_rows) +
                 " x " + std::to_string(shape.d_cols) + "): " + cublasLtGetStatusName(status);
  }
  throw std::logic_error("build_first: no options");
}

}  // namespace

struct CublasLtLinear::Plan {
  Matmul forward, input, weight;
  LinearPaths paths;
  bool writes_mask = false;
  std::string declined;  // fused epilogues the heuristic refused, with its status
};

// ---------------------------------------------------------------------------------------------
// CublasLtLinear

CublasLtLinear::CublasLtLinear(LinearEngine& engine, const LinearSpec& spec,
                               const LinearAlignment& alignment, bool allow_fused)
    : engine_(engine), spec_(spec), allow_fused_(allow_fused) {
  if (spec.in < 1 || spec.out < 1)
    throw std::invalid_argument("Linear: in and out must be >= 1 (got " + std::to_string(spec.in) +
                                ", " + std::to_string(spec.out) + ")");
  const auto align_of = [](const void* p) { return p != nullptr ? pointer_alignment(p) : 256; };
  align_weight_ = align_of(alignment.weight);
  align_bias_ = align_of(alignment.bias);
  align_weight_grad_ = align_of(alignment.weight_grad);
  align_bias_grad_ = align_of(alignment.bias_grad);
  bias_rep_ = alignment.bias != nullptr ? alignment.bias : kAlignedPlaceholder;
  bias_grad_rep_ = alignment.bias_grad != nullptr ? alignment.bias_grad : kAlignedPlaceholder;
}

void CublasLtLinear::add_batch(int batch, bool input_relu_mask) {
  if (batch < 1) throw std::invalid_argument("Linear: batch sizes must be >= 1");
  if (plans_.count(batch) != 0) return;
  const LinearSpec& spec = spec_;
  const bool allow_fused = allow_fused_;
  const void* bias_rep = bias_rep_;
  const void* bias_grad_rep = bias_grad_rep_;
  const int in = spec.in, out = spec.out;
  {
    auto plan = std::make_unique<Plan>();

    // Forward: y^T [out, batch] = W (stored [in, out], transposed) x^T (stored [in, batch]).
    const MatmulShape fwd{
        CUBLAS_OP_T,          CUBLAS_OP_N,         in, out, in, batch, out, batch, align_weight_,
        kActivationAlignment, kActivationAlignment};
    const MatmulEpilogue bias_only{CUBLASLT_EPILOGUE_BIAS, bias_rep};
    const MatmulEpilogue plain{};
    if (spec.output_act == Activation::kRelu && allow_fused) {
      const MatmulEpilogue options[] = {
          {CUBLASLT_EPILOGUE_RELU_AUX_BIAS, bias_rep, kAlignedPlaceholder, relu_mask_ld_bits(out)},
          {CUBLASLT_EPILOGUE_RELU_BIAS, bias_rep},
          plain};
      const int chosen = build_first(plan->forward, engine_, fwd, options, 3, &plan->declined);
      plan->writes_mask = chosen == 0;
      plan->paths.forward_fused_act = chosen <= 1;
      plan->paths.forward_fused_bias = chosen <= 1;
    } else if (spec.output_act == Activation::kIdentity && allow_fused) {
      const MatmulEpilogue options[] = {bias_only, plain};
      plan->paths.forward_fused_bias =
          build_first(plan->forward, engine_, fwd, options, 2, &plan->declined) == 0;
    } else {
      build_first(plan->forward, engine_, fwd, &plain, 1, &plan->declined);
    }

    // Input gradient: dx^T [in, batch] = W (stored [in, out]) dy^T (stored [out, batch]).
    if (spec.needs_input_grad) {
      const MatmulShape bwd{
          CUBLAS_OP_N,          CUBLAS_OP_N,         in, out, out, batch, in, batch, align_weight_,
          kActivationAlignment, kActivationAlignment};
      // The ReLU gradient epilogue would act on dx + (earlier dx) as a whole when accumulating;
      // that is left to the elementwise kernel rather than trusted to the epilogue's ordering.
      if (allow_fused && spec.input_act == Activation::kRelu && input_relu_mask &&
          !spec.accumulate_input_grad) {
        const MatmulEpilogue options[] = {
            {CUBLASLT_EPILOGUE_DRELU, nullptr, kAlignedPlaceholder, relu_mask_ld_bits(in)}, plain};
        plan->paths.input_fused_drelu =
            build_first(plan->input, engine_, bwd, options, 2, &plan->declined) == 0;
      } else {
        build_first(plan->input, engine_, bwd, &plain, 1, &plan->declined);
      }
    }

    // Weight gradient: dW^T [in, out] = x^T (stored [in, batch]) dy (stored [out, batch],
    // transposed); BGRADB sums op(dy) = dy over the k = batch dimension: the bias gradient.
    const MatmulShape wgt{CUBLAS_OP_N,
                          CUBLAS_OP_T,
                          in,
                          batch,
                          out,
                          batch,
                          in,
                          out,
                          kActivationAlignment,
                          kActivationAlignment,
                          align_weight_grad_};
    if (allow_fused) {
      const MatmulEpilogue options[] = {{CUBLASLT_EPILOGUE_BGRADB, bias_grad_rep}, plain};
      plan->paths.weight_fused_bgrad =
          build_first(plan->weight, engine_, wgt, options, 2, &plan->declined) == 0;
    } else {
      build_first(plan->weight, engine_, wgt, &plain, 1, &plan->declined);
    }
    plans_.emplace(batch, std::move(plan));
  }
}

CublasLtLinear::~CublasLtLinear() = default;

const CublasLtLinear::Plan& CublasLtLinear::plan(int batch) const {
  const auto it = plans_.find(batch);
  if (it == plans_.end())
    throw std::invalid_argument("Linear " + std::to_string(spec_.in) + "->" +
                                std::to_string(spec_.out) + ": no plan for batch " +
                                std::to_string(batch) + " (batch sizes are fixed at construction)");
  return *it->second;
}

LinearPaths CublasLtLinear::paths(int batch) const {
  return plan(batch).paths;
}
bool CublasLtLinear::writes_relu_mask(int batch) const {
  return plan(batch).writes_mask;
}
const std::string& CublasLtLinear::declined_epilogues(int batch) const {
  return plan(batch).declined;
}

void CublasLtLinear::check_alignment(const void* p, size_t assumed, const char* what) const {
  if (p != nullptr && pointer_alignment(p) >= assumed) return;
  // The layer's shape in the message: a trainer holds several layers, the error must say which.
  const std::string layer =
      "Linear " + std::to_string(spec_.in) + "->" + std::to_string(spec_.out) + ": ";
  if (p == nullptr) throw std::invalid_argument(layer + "null " + what);
  throw std::invalid_argument(layer + what + " is less aligned than the " +
                              std::to_string(assumed) + " bytes its algorithm was chosen for");
}

void CublasLtLinear::forward(int batch, const float* x, const float* weight, const float* bias,
                             float* y, void* relu_mask, cudaStream_t stream) const {
  const Plan& p = plan(batch);
  check_alignment(x, kActivationAlignment, "x");
  check_alignment(weight, align_weight_, "weight");
  check_alignment(bias, align_bias_, "bias");
  check_alignment(y, kActivationAlignment, "y");
  if (p.writes_mask) check_alignment(relu_mask, kMaskAlignment, "relu mask");
  p.forward.run(engine_, weight, x, y, false, p.paths.forward_fused_bias ? bias : nullptr,
                p.writes_mask ? relu_mask : nullptr, stream);
  if (spec_.output_act != Activation::kIdentity && !p.paths.forward_fused_act)
    bias_activation_forward(y, bias, batch, spec_.out, spec_.output_act, stream);
  else if (spec_.output_act == Activation::kIdentity && !p.paths.forward_fused_bias)
    bias_add(y, bias, batch, spec_.out, stream);
}

void CublasLtLinear::backward_input(int batch, const float* dy, const float* weight, const float* x,
                                    const void* input_mask, float* dx, cudaStream_t stream) const {
  const Plan& p = plan(batch);
  if (!p.input.valid())
    throw std::logic_error("Linear: backward_input on a layer built without the input gradient");
  check_alignment(dy, kActivationAlignment, "dy");
  check_alignment(weight, align_weight_, "weight");
  check_alignment(dx, kActivationAlignment, "dx");
  if (p.paths.input_fused_drelu) check_alignment(input_mask, kMaskAlignment, "input relu mask");
  if (!p.paths.input_fused_drelu && spec_.input_act != Activation::kIdentity && x == nullptr)
    throw std::invalid_argument("Linear: backward_input needs the forward input x");
  p.input.run(engine_, weight, dy, dx, spec_.accumulate_input_grad, nullptr,
              p.paths.input_fused_drelu ? input_mask : nullptr, stream);
  if (!p.paths.input_fused_drelu && spec_.input_act != Activation::kIdentity)
    activation_backward(x, dx, batch, spec_.in, spec_.input_act, stream);
}

void CublasLtLinear::backward_weight(int batch, const float* dy, const float* x, float* weight_grad,
                                     float* bias_grad, cudaStream_t stream) const {
  const Plan& p = plan(batch);
  check_alignment(dy, kActivationAlignment, "dy");
  check_alignment(x, kActivationAlignment, "x");
  check_alignment(weight_grad, align_weight_grad_, "weight gradient");
  check_alignment(bias_grad, align_bias_grad_, "bias gradient");
  p.weight.run(engine_, x, dy, weight_grad, false, p.paths.weight_fused_bgrad ? bias_grad : nullptr,
               nullptr, stream);
  if (!p.paths.weight_fused_bgrad) bias_gradient(dy, batch, spec_.out, bias_grad, stream);
}

}  // namespace fusedvae::gpu

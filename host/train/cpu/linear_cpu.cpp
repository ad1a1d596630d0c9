// @brief The Linear module on the CPU backend: oneDNN products (host/ops/matmul_cpu.h) with the
// bias and ReLU fused into the forward one; tanh, the bias gradient and the activation derivatives
// by the CPU twins, whose formulas the GPU kernels share.
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "host/ops/activation_cpu.h"
#include "host/ops/bias_cpu.h"
#include "host/ops/matmul_cpu.h"
#include "host/train/module_registry.h"

namespace fusedvae {
namespace {

// nn.Linear on row-major batches: y = act(x W^T + b), and its backward. The module's tensors are
// its weight [out, in] and, right after it, its bias [out] (host/model/modules.cpp).
class CpuLinear final : public LayerRun {
 public:
  CpuLinear(const Module& module, const LayerContext& context, const float* params, float* grads)
      : in_(module.in),
        out_(module.out),
        context_(context),
        weight_(params),
        bias_(params + static_cast<size_t>(in_) * out_),
        weight_grad_(grads),
        bias_grad_(grads + static_cast<size_t>(in_) * out_) {}

  int out() const override { return out_; }
  size_t aux_bytes(int) const override { return 0; }

  // The three products of a batch size, planned once (a step then allocates nothing).
  void prepare_rows(int rows, const LayerRun*) override {
    if (plans_.count(rows) != 0) return;
    Plan plan;
    // y [rows, out] = x [rows, in] W^T + b, ReLU fused; tanh's bias goes with the twin.
    cpu::MatmulShape forward{rows, out_, in_};
    forward.transpose_b = true;
    forward.bias = fuses_bias();
    forward.relu = context_.output_act == Activation::kRelu;
    plan.forward = std::make_unique<cpu::Matmul>(forward);
    // dW [out, in] = dy^T x.
    cpu::MatmulShape weight{out_, in_, rows};
    weight.transpose_a = true;
    plan.weight = std::make_unique<cpu::Matmul>(weight);
    // dx [rows, in] = dy W, written or added.
    if (context_.needs_input_grad) {
      cpu::MatmulShape input{rows, in_, out_};
      input.accumulate = context_.accumulate_input_grad;
      plan.input = std::make_unique<cpu::Matmul>(input);
    }
    plans_.emplace(rows, std::move(plan));
  }

  void forward(int rows, const float* x, float* y, void*) const override {
    const Plan& p = plan(rows);
    p.forward->run(x, weight_, fuses_bias() ? bias_ : nullptr, y);
    if (!fuses_bias()) cpu::bias_activation_forward(y, bias_, rows, out_, context_.output_act);
  }

  // dW = dy^T x and db = column sums of dy overwrite their slots (every slot belongs to exactly one
  // layer, so the step never zeroes the buffer); dx = dy W, written or added, then multiplied by
  // the derivative of the activation that produced x.
  void backward(int rows, const float* dy, const float* x, const void*, float* dx) const override {
    const Plan& p = plan(rows);
    p.weight->run(dy, x, nullptr, weight_grad_);
    cpu::bias_gradient(dy, rows, out_, bias_grad_);
    if (!context_.needs_input_grad) return;
    p.input->run(dy, weight_, nullptr, dx);
    if (context_.input_act != Activation::kIdentity)
      cpu::activation_backward(x, dx, rows, in_, context_.input_act);
  }

 private:
  struct Plan {
    std::unique_ptr<cpu::Matmul> forward, weight, input;
  };

  bool fuses_bias() const { return context_.output_act != Activation::kTanh; }

  const Plan& plan(int rows) const {
    const auto it = plans_.find(rows);
    if (it == plans_.end())
      throw std::logic_error("Linear " + std::to_string(in_) + "->" + std::to_string(out_) +
                             ": no plan for " + std::to_string(rows) +
                             " rows (prepare_rows first)");
    return it->second;
  }

  int in_, out_;
  LayerContext context_;
  const float* weight_;
  const float* bias_;
  float* weight_grad_;
  float* bias_grad_;
  std::map<int, Plan> plans_;
};

}  // namespace

std::unique_ptr<LayerRun> make_linear_cpu(Backend&, const Module& module,
                                          const LayerContext& context, const float* params,
                                          float* grads) {
  return std::make_unique<CpuLinear>(module, context, params, grads);
}

}  // namespace fusedvae

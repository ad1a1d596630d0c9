// @brief The GRU module on the CPU backend: the CPU twin (host/ops/gru_cpu.h), one plan and one
// reserve per batch size, scratch shared between them.
#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/ops/gru_cpu.h"
#include "host/train/gru_layer_shape.h"
#include "host/train/module_registry.h"

namespace fusedvae {
namespace {

class CpuGru final : public SequenceRun {
 public:
  CpuGru(const Module& module, const float* params, float* grads)
      : module_(module), params_(params), grads_(grads) {}

  int out() const override { return module_.out; }

  void prepare(int batch, int steps) override {
    const cpu::GruShape shape = gru_layer_shape(module_, batch, steps, &steps_);
    if (runs_.count(batch) != 0) return;
    Run run{cpu::GruPlan(shape), std::vector<float>(cpu::gru_reserve_floats(shape))};
    scratch_.resize(std::max(scratch_.size(), cpu::gru_scratch_floats(shape)));
    runs_.emplace(batch, std::move(run));
  }

  void forward(int batch, const float* x, const float* h0, float* y, float* h_n) override {
    Run& r = run(batch);
    r.plan.forward_train(params_, x, h0, y, h_n, r.reserve.data(), scratch_.data());
  }

  void backward(int batch, const float* x, const float* dy, const float* d_h_n, float* dx,
                float* d_h0) override {
    Run& r = run(batch);
    r.plan.backward(params_, x, r.reserve.data(), dy, d_h_n, dx, d_h0, grads_, scratch_.data());
  }

 private:
  struct Run {
    cpu::GruPlan plan;
    std::vector<float> reserve;  // the last forward's gates and states, for the backward
  };

  Run& run(int batch) {
    const auto it = runs_.find(batch);
    if (it == runs_.end())
      throw std::logic_error("GRU " + module_.name + ": not prepared for batch " +
                             std::to_string(batch));
    return it->second;
  }

  Module module_;
  const float* params_;
  float* grads_;
  int steps_ = 0;
  std::map<int, Run> runs_;
  std::vector<float> scratch_;
};

}  // namespace

std::unique_ptr<SequenceRun> make_gru_cpu(Backend&, const Module& module, const float* params,
                                          float* grads) {
  return std::make_unique<CpuGru>(module, params, grads);
}

}  // namespace fusedvae

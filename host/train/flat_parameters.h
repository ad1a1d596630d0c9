// @brief What both trainers (vae_trainer.cpp, dyad_trainer.cpp) keep in a backend's memory beyond
// their per-batch buffers: the model's flat parameter buffer with its gradients and Adam moments
// (one float buffer each, in the ParamLayout's carving order), their update at the end of a step,
// and the host copies of single values and float vectors.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/model/model_config.h"
#include "host/train/backend.h"

namespace fusedvae {

// ---- host <-> backend copies (these synchronise)

template <typename T>
void upload_value(Backend& backend, T* in_backend, const T& value) {
  backend.upload(in_backend, &value, sizeof(T));
}

template <typename T>
T download_value(const Backend& backend, const T* in_backend) {
  T value;
  backend.download(&value, in_backend, sizeof(T));
  return value;
}

inline std::vector<float> download_floats(const Backend& backend, const float* src, size_t count) {
  std::vector<float> host(count);
  backend.download(host.data(), src, count * sizeof(float));
  return host;
}

// ---- the parameters and their optimizer

// The step scalars the update reads and writes, in backend memory (fields of a trainer's scalars).
struct UpdateScalars {
  const StepState* state;  // AdamW's step and learning rate
  float* grad_norm;        // written: the global norm before clipping (reported)
  float* grad_scale;       // written: the clipping factor
};

class FlatParameters {
 public:
  // `optimizer`: the owning trainer's configuration, which outlives this object.
  FlatParameters(Backend& backend, const OptimizerConfig& optimizer)
      : backend_(backend), optimizer_(optimizer) {}

  // Zero-filled buffers of `count` floats each; called once, before any other use.
  void allocate(size_t count) {
    count_ = count;
    for (size_t i = 0; i < 4; ++i) {
      storage_[i] = backend_.allocate(count * sizeof(float));
      buffers_[i] = static_cast<float*>(storage_[i].get());
    }
  }

  size_t count() const { return count_; }
  float* params() const { return buffers_[0]; }
  float* grads() const { return buffers_[1]; }
  float* m() const { return buffers_[2]; }
  float* v() const { return buffers_[3]; }

  // ---- inside the step (no synchronisation)

  // Clipping scales every gradient by a factor of the norm of all of them, so it can only update
  // once the whole backward is done. Without it, on a backend that asks for it (the CPU), each
  // layer is updated right after its backward has written its gradients and read its weights for
  // the last time in the step, while both are still in cache: on the CPU (784-400-20, batch 128,
  // 2 threads) that took the step from 74-76% to 79-80% of its GEMM floor. AdamW is elementwise:
  // both orders give the same bits (LayerwiseUpdateGivesTheWholeBufferBits).
  bool updates_by_layer() const {
    return !(optimizer_.max_grad_norm > 0.0f) && backend_.updates_by_layer();
  }

  // AdamW on one layer's parameters; a no-op unless updates_by_layer() (finish_step updates them
  // all then).
  void update_layer(const ParamSlice& slice, const StepState* state) {
    if (!updates_by_layer()) return;
    const size_t o = slice.offset;
    backend_.adamw_update(params() + o, m() + o, v() + o, grads() + o, slice.count, state,
                          optimizer_, nullptr);
  }

  // The end of a step's backward. With clipping (or on a backend that updates the whole buffer) the
  // global norm, then AdamW over the whole buffer with the clipped gradients. Otherwise the layers
  // are updated already and the norm is only reported: it is left for settle_grad_norm, which
  // last_losses() calls, since the gradients stay as they are until the next step's backward. A
  // training run that logs every 50 steps then pays for one norm in 50 (on the CPU, 784-400-20,
  // batch 128: 0.06 ms of a 2.7 ms step), and the norm it reports has the same bits.
  void finish_step(const UpdateScalars& s) {
    if (updates_by_layer()) {
      norm_pending_ = true;
      return;
    }
    norm_pending_ = false;
    backend_.global_grad_norm(grads(), count_, optimizer_.max_grad_norm, s.grad_norm, s.grad_scale);
    backend_.adamw_update(params(), m(), v(), grads(), count_, s.state, optimizer_, s.grad_scale);
  }

  // The norm of the last step's gradients into s.grad_norm, if finish_step left it; before the
  // scalars are read.
  void settle_grad_norm(const UpdateScalars& s) {
    if (!norm_pending_) return;
    backend_.global_grad_norm(grads(), count_, optimizer_.max_grad_norm, s.grad_norm, s.grad_scale);
    norm_pending_ = false;
  }

  // ---- host copies (these synchronise); a wrong size throws std::invalid_argument naming `what`

  std::vector<float> download_params() const { return download_floats(backend_, params(), count_); }
  std::vector<float> download_grads() const { return download_floats(backend_, grads(), count_); }
  std::vector<float> download_m() const { return download_floats(backend_, m(), count_); }
  std::vector<float> download_v() const { return download_floats(backend_, v(), count_); }

  void upload_params(const std::vector<float>& values, const char* what) {
    upload(params(), values, what);
  }
  void upload_moments(const std::vector<float>& m_values, const std::vector<float>& v_values) {
    upload(m(), m_values, "set_optimizer_state: m");
    upload(v(), v_values, "set_optimizer_state: v");
  }

 private:
  void upload(float* dst, const std::vector<float>& values, const char* what) {
    if (values.size() != count_)
      throw std::invalid_argument(std::string(what) + " has " + std::to_string(values.size()) +
                                  " values, the model has " + std::to_string(count_));
    backend_.upload(dst, values.data(), values.size() * sizeof(float));
  }

  Backend& backend_;
  const OptimizerConfig& optimizer_;
  size_t count_ = 0;
  bool norm_pending_ = false;  // finish_step left the reported norm to settle_grad_norm
  std::shared_ptr<void> storage_[4];
  float* buffers_[4] = {};
};

}  // namespace fusedvae

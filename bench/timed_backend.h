// @brief A Backend that forwards to another and times each of its ops (CPU only: there an op's
// call is its work). The trainers' matrix products run in their layers, which reach the backend
// only for memory, so what it times is the step's work other than the layers: the profile of
// what lies between the step and its GEMM floor (bench_train_step).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "host/train/backend.h"

namespace fusedvae::bench {

class TimedBackend final : public Backend {
 public:
  explicit TimedBackend(std::unique_ptr<Backend> inner);

  // Milliseconds spent in each op since construction (or the last reset), by op name.
  const std::map<std::string, double>& op_ms() const { return op_ms_; }
  void reset() { op_ms_.clear(); }

  BackendKind kind() const override;
  std::string device_name() const override;
  bool updates_by_layer() const override;
  std::shared_ptr<void> allocate(size_t bytes) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) const override;
  BackendDataset upload_dataset(const Dataset& data) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t height) override;
  void run_step(int rows, const std::function<void()>& body) override;
  void invalidate_step() override;
  void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm) override;
  void gather_batch(const BackendDataset& data, const int32_t* perm, const int32_t* first, int rows,
                    bool binarize, RngState rng, float* out) override;
  void advance_batch_start(int32_t* first, int rows) override;
  void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                          LogvarClamp clamp, BatchReduction reduction, float* z,
                          float* kl_per_sample, float* kl_reduced) override;
  void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps,
                                    int batch, int dim, LogvarClamp clamp, BatchReduction reduction,
                                    float* z, float* kl_per_sample, float* kl_reduced) override;
  void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch,
                           int dim, RngState rng, const float* kl_weight, float loss_scale,
                           LogvarClamp clamp, BatchReduction reduction, float* dmu,
                           float* dlogvar) override;
  void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                     const float* eps, int batch, int dim, const float* kl_weight,
                                     float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                     float* dmu, float* dlogvar) override;
  void draw_normal_eps(int batch, int dim, RngState rng, float scale, float* eps) override;
  void free_bits_forward(const float* mu, const float* logvar, int batch, int dim,
                         LogvarClamp clamp, float free_bits, float* kl_dim_mean,
                         float* kl_floored) override;
  void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                          int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                          float loss_scale, BatchReduction reduction, float* dmu,
                          float* dlogvar) override;
  void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                   ReconLoss loss, BatchReduction reduction, float loss_scale,
                                   float* loss_per_sample, float* loss_reduced,
                                   float* grad_output) override;
  void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                        float* grad_scale) override;
  void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                    const StepState* state, const OptimizerConfig& opt,
                    const float* grad_scale) override;
  void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                          uint64_t total_steps) override;

 private:
  // Runs f, adding its wall time to op_ms_[name].
  template <typename F>
  void timed(const char* name, F&& f);

  std::unique_ptr<Backend> inner_;
  std::map<std::string, double> op_ms_;
};

}  // namespace fusedvae::bench

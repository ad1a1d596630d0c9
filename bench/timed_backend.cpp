// @brief TimedBackend (timed_backend.h): every call forwarded; the ops timed.
#include "bench/timed_backend.h"

#include <chrono>
#include <utility>

namespace fusedvae::bench {

TimedBackend::TimedBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

template <typename F>
void TimedBackend::timed(const char* name, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  op_ms_[name] +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// ---- forwarded untimed: identity, memory, the step's frame

BackendKind TimedBackend::kind() const {
  return inner_->kind();
}
std::string TimedBackend::device_name() const {
  return inner_->device_name();
}
bool TimedBackend::updates_by_layer() const {
  return inner_->updates_by_layer();
}
std::shared_ptr<void> TimedBackend::allocate(size_t bytes) {
  return inner_->allocate(bytes);
}
void TimedBackend::upload(void* dst, const void* host_src, size_t bytes) {
  inner_->upload(dst, host_src, bytes);
}
void TimedBackend::download(void* host_dst, const void* src, size_t bytes) const {
  inner_->download(host_dst, src, bytes);
}
BackendDataset TimedBackend::upload_dataset(const Dataset& data) {
  return inner_->upload_dataset(data);
}
void TimedBackend::run_step(int rows, const std::function<void()>& body) {
  inner_->run_step(rows, body);
}
void TimedBackend::invalidate_step() {
  inner_->invalidate_step();
}

// ---- the ops, timed

void TimedBackend::copy(void* dst, const void* src, size_t bytes) {
  timed("copy", [&] { inner_->copy(dst, src, bytes); });
}
void TimedBackend::fill_zero(void* dst, size_t bytes) {
  timed("fill_zero", [&] { inner_->fill_zero(dst, bytes); });
}
void TimedBackend::copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                           size_t width, size_t height) {
  timed("copy_2d", [&] { inner_->copy_2d(dst, dst_pitch, src, src_pitch, width, height); });
}
void TimedBackend::shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm) {
  timed("shuffle_indices", [&] { inner_->shuffle_indices(rows, seed, epoch, perm); });
}
void TimedBackend::gather_batch(const BackendDataset& data, const int32_t* perm,
                                const int32_t* first, int rows, bool binarize, RngState rng,
                                float* out) {
  timed("gather_batch", [&] { inner_->gather_batch(data, perm, first, rows, binarize, rng, out); });
}
void TimedBackend::advance_batch_start(int32_t* first, int rows) {
  timed("advance_batch_start", [&] { inner_->advance_batch_start(first, rows); });
}
void TimedBackend::reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim,
                                      RngState rng, LogvarClamp clamp, BatchReduction reduction,
                                      float* z, float* kl_per_sample, float* kl_reduced) {
  timed("reparam_kl_forward", [&] {
    inner_->reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, reduction, z, kl_per_sample,
                               kl_reduced);
  });
}
void TimedBackend::reparam_kl_forward_given_eps(const float* mu, const float* logvar,
                                                const float* eps, int batch, int dim,
                                                LogvarClamp clamp, BatchReduction reduction,
                                                float* z, float* kl_per_sample, float* kl_reduced) {
  timed("reparam_kl_forward", [&] {
    inner_->reparam_kl_forward_given_eps(mu, logvar, eps, batch, dim, clamp, reduction, z,
                                         kl_per_sample, kl_reduced);
  });
}
void TimedBackend::reparam_kl_backward(const float* dz, const float* mu, const float* logvar,
                                       int batch, int dim, RngState rng, const float* kl_weight,
                                       float loss_scale, LogvarClamp clamp,
                                       BatchReduction reduction, float* dmu, float* dlogvar) {
  timed("reparam_kl_backward", [&] {
    inner_->reparam_kl_backward(dz, mu, logvar, batch, dim, rng, kl_weight, loss_scale, clamp,
                                reduction, dmu, dlogvar);
  });
}
void TimedBackend::reparam_kl_backward_given_eps(const float* dz, const float* mu,
                                                 const float* logvar, const float* eps, int batch,
                                                 int dim, const float* kl_weight, float loss_scale,
                                                 LogvarClamp clamp, BatchReduction reduction,
                                                 float* dmu, float* dlogvar) {
  timed("reparam_kl_backward", [&] {
    inner_->reparam_kl_backward_given_eps(dz, mu, logvar, eps, batch, dim, kl_weight, loss_scale,
                                          clamp, reduction, dmu, dlogvar);
  });
}
void TimedBackend::draw_normal_eps(int batch, int dim, RngState rng, float scale, float* eps) {
  timed("draw_normal_eps", [&] { inner_->draw_normal_eps(batch, dim, rng, scale, eps); });
}
void TimedBackend::free_bits_forward(const float* mu, const float* logvar, int batch, int dim,
                                     LogvarClamp clamp, float free_bits, float* kl_dim_mean,
                                     float* kl_floored) {
  timed("free_bits_forward", [&] {
    inner_->free_bits_forward(mu, logvar, batch, dim, clamp, free_bits, kl_dim_mean, kl_floored);
  });
}
void TimedBackend::free_bits_backward(const float* mu, const float* logvar,
                                      const float* kl_dim_mean, int batch, int dim,
                                      LogvarClamp clamp, float free_bits, const float* kl_weight,
                                      float loss_scale, BatchReduction reduction, float* dmu,
                                      float* dlogvar) {
  timed("free_bits_backward", [&] {
    inner_->free_bits_backward(mu, logvar, kl_dim_mean, batch, dim, clamp, free_bits, kl_weight,
                               loss_scale, reduction, dmu, dlogvar);
  });
}
void TimedBackend::recon_loss_forward_backward(const float* output, const float* target, int batch,
                                               int dim, ReconLoss loss, BatchReduction reduction,
                                               float loss_scale, float* loss_per_sample,
                                               float* loss_reduced, float* grad_output) {
  timed("recon_loss_forward_backward", [&] {
    inner_->recon_loss_forward_backward(output, target, batch, dim, loss, reduction, loss_scale,
                                        loss_per_sample, loss_reduced, grad_output);
  });
}
void TimedBackend::global_grad_norm(const float* grads, size_t count, float max_norm,
                                    float* grad_norm, float* grad_scale) {
  timed("global_grad_norm",
        [&] { inner_->global_grad_norm(grads, count, max_norm, grad_norm, grad_scale); });
}
void TimedBackend::adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                                const StepState* state, const OptimizerConfig& opt,
                                const float* grad_scale) {
  timed("adamw_update",
        [&] { inner_->adamw_update(params, m, v, grads, count, state, opt, grad_scale); });
}
void TimedBackend::advance_step_state(StepState* state, const KlSchedule& kl,
                                      const OptimizerConfig& opt, uint64_t total_steps) {
  timed("advance_step_state", [&] { inner_->advance_step_state(state, kl, opt, total_steps); });
}

}  // namespace fusedvae::bench

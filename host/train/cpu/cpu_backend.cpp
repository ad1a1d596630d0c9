// @brief The CPU backend: the CPU twins of the kernels (host/ops/) in host memory, and the Linear
// layers' products on oneDNN (host/ops/matmul_cpu.h). Every op runs to completion when called.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "host/ops/adamw_cpu.h"
#include "host/ops/batch_gather_cpu.h"
#include "host/ops/free_bits_cpu.h"
#include "host/ops/grad_norm_cpu.h"
#include "host/ops/matmul_cpu.h"
#include "host/ops/recon_loss_cpu.h"
#include "host/ops/reparam_kl_cpu.h"
#include "host/ops/step_state_cpu.h"
#include "host/train/backend.h"

namespace fusedvae {
namespace {

class CpuBackend final : public Backend {
 public:
  BackendKind kind() const override { return BackendKind::kCpu; }
  bool updates_by_layer() const override { return true; }
  std::string device_name() const override {
    return "cpu (" + cpu::matmul_library_description() + ")";
  }

  std::shared_ptr<void> allocate(size_t bytes) override {
    const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded);
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, rounded);
    return std::shared_ptr<void>(p, std::free);
  }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) const override {
    std::memcpy(dst, src, bytes);
  }
  BackendDataset upload_dataset(const Dataset& data) override {
    auto copy = std::make_shared<Dataset>(data);
    BackendDataset d;
    d.u8 = copy->is_u8() ? copy->u8.data() : nullptr;
    d.f32 = copy->is_u8() ? nullptr : copy->f32.data();
    d.rows = data.rows;
    d.dim = data.dim;
    d.scale = data.scale;
    d.offset = data.offset;
    d.storage = std::move(copy);
    return d;
  }

  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t height) override {
    for (size_t r = 0; r < height; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch,
                  static_cast<const char*>(src) + r * src_pitch, width);
  }
  void run_step(int, const std::function<void()>& body) override { body(); }
  void invalidate_step() override {}

  void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm) override {
    cpu::shuffle_indices(rows, seed, epoch, perm);
  }
  void gather_batch(const BackendDataset& data, const int32_t* perm, const int32_t* first, int rows,
                    bool binarize, RngState rng, float* out) override {
    cpu::gather_batch(data.u8, data.f32, data.dim, perm, first, rows, data.scale, data.offset,
                      binarize, rng, out, data.clip_to_unit);
  }
  void advance_batch_start(int32_t* first, int rows) override {
    cpu::advance_batch_start(first, rows);
  }
  void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                          LogvarClamp clamp, BatchReduction reduction, float* z,
                          float* kl_per_sample, float* kl_reduced) override {
    cpu::reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, reduction, z, kl_per_sample,
                            kl_reduced);
  }
  void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps,
                                    int batch, int dim, LogvarClamp clamp, BatchReduction reduction,
                                    float* z, float* kl_per_sample, float* kl_reduced) override {
    cpu::reparam_kl_forward_given_eps(mu, logvar, eps, batch, dim, clamp, reduction, z,
                                      kl_per_sample, kl_reduced);
  }
  void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch,
                           int dim, RngState rng, const float* kl_weight, float loss_scale,
                           LogvarClamp clamp, BatchReduction reduction, float* dmu,
                           float* dlogvar) override {
    cpu::reparam_kl_backward(dz, mu, logvar, batch, dim, rng, kl_weight, loss_scale, clamp,
                             reduction, dmu, dlogvar);
  }
  void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                     const float* eps, int batch, int dim, const float* kl_weight,
                                     float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                     float* dmu, float* dlogvar) override {
    cpu::reparam_kl_backward_given_eps(dz, mu, logvar, eps, batch, dim, kl_weight, loss_scale,
                                       clamp, reduction, dmu, dlogvar);
  }
  void draw_normal_eps(int batch, int dim, RngState rng, float scale, float* eps) override {
    cpu::draw_normal_eps(batch, dim, rng, eps, scale);
  }
  void free_bits_forward(const float* mu, const float* logvar, int batch, int dim,
                         LogvarClamp clamp, float free_bits, float* kl_dim_mean,
                         float* kl_floored) override {
    cpu::free_bits_forward(mu, logvar, batch, dim, clamp, free_bits, kl_dim_mean, kl_floored);
  }
  void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                          int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                          float loss_scale, BatchReduction reduction, float* dmu,
                          float* dlogvar) override {
    cpu::free_bits_backward(mu, logvar, kl_dim_mean, batch, dim, clamp, free_bits, kl_weight,
                            loss_scale, reduction, dmu, dlogvar);
  }
  void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                   ReconLoss loss, BatchReduction reduction, float loss_scale,
                                   float* loss_per_sample, float* loss_reduced,
                                   float* grad_output) override {
    cpu::recon_loss_forward_backward(output, target, batch, dim, loss, reduction, loss_scale,
                                     loss_per_sample, loss_reduced, grad_output);
  }
  void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                        float* grad_scale) override {
    cpu::global_grad_norm(grads, count, max_norm, grad_norm, grad_scale);
  }
  void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                    const StepState* state, const OptimizerConfig& opt,
                    const float* grad_scale) override {
    cpu::adamw_update(params, m, v, grads, count, state, opt, grad_scale);
  }
  void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                          uint64_t total_steps) override {
    cpu::advance_step_state(state, kl, opt, total_steps);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace fusedvae

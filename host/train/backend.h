// @brief What the one training step (vae_trainer.cpp) needs from a device: memory, the fused ops
// and the layers' products. Two implementations: the CPU (CPU twins + oneDNN, host/train/cpu/)
// and the GPU (kernels + cuBLASLt on one stream, host/train/gpu/).
//
// Every op has the name and argument order of its CPU twin (host/ops/) and GPU launcher
// (kernels/); pointers point to the backend's memory (host memory on the CPU, device memory on the
// GPU), scalars that change from step to step included, so the GPU step never synchronises with
// the host. The ops that move data between host and backend memory synchronise; no other does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "host/train/train_config.h"
#include "host/train/trainer.h"
#include "kernels/op_params.h"

namespace fusedvae {

// How a layer sits in its stack: what the step asks of it beyond its module's own sizes.
struct LayerContext {
  Activation output_act = Activation::kIdentity;  // the activation module after it, fused
  Activation input_act = Activation::kIdentity;   // the activation that produced its input
  bool needs_input_grad = true;                   // false where the input is the data
  bool accumulate_input_grad = false;             // dx += ... (a second reader of the same input)
};

// A layer (one module, with the activation module after it fused) on one backend, bound to its
// slice of the parameter and gradient buffers.
class LayerRun {
 public:
  virtual ~LayerRun() = default;
  virtual int out() const = 0;  // features of its output
  // Host-side preparation for batches of `rows` (cuBLASLt plans); outside the step, may allocate.
  // `input_producer`: the layer whose output this one reads, if any (it may hand over a mask).
  virtual void prepare_rows(int rows, const LayerRun* input_producer) = 0;
  // Bytes of side output (a ReLU mask) forward writes for `rows` rows; 0 if none.
  virtual size_t aux_bytes(int rows) const = 0;
  virtual void forward(int rows, const float* x, float* y, void* aux) const = 0;
  // From dy (the gradient of the output before output_act): the parameter gradients (overwritten)
  // and, when the context needs it, dx (written or accumulated, input_act's derivative applied).
  // x_aux: the input producer's aux output.
  virtual void backward(int rows, const float* dy, const float* x, const void* x_aux,
                        float* dx) const = 0;
};

// A recurrent layer (a GRU module) on one backend, bound to its slice of the parameter and gradient
// buffers, over batch_first sequences: x [batch, steps, in] -> y [batch, steps, out], with the
// initial and final states [layers * dirs, batch, hidden] (PyTorch's order; host/ops/gru_cpu.h).
// It keeps what its backward needs from its last forward, in memory of its own per batch size.
class SequenceRun {
 public:
  virtual ~SequenceRun() = default;
  virtual int out() const = 0;  // features per step of y
  // Host-side preparation (plans, memory) for batches of `batch` sequences of `steps`; outside
  // the step, may allocate.
  virtual void prepare(int batch, int steps) = 0;
  // h0 null: zero. Writes y and h_n.
  virtual void forward(int batch, const float* x, const float* h0, float* y, float* h_n) = 0;
  // From dy and d_h_n (either null: zero) and the inputs of the last forward on `batch`: the
  // parameter gradients (overwritten), dx and d_h0 (either null: not wanted).
  virtual void backward(int batch, const float* x, const float* dy, const float* d_h_n, float* dx,
                        float* d_h0) = 0;
};

enum class BackendKind : int { kCpu = 0, kGpu = 1 };

// Device-resident copy of a dataset, in the backend's memory.
struct BackendDataset {
  const uint8_t* u8 = nullptr;  // one of the two is set
  const float* f32 = nullptr;
  int rows = 0;
  int dim = 0;
  float scale = 1.0f, offset = 0.0f;
  bool clip_to_unit = true;  // the gather clips to [0, 1] (images); false for standardised data
  std::shared_ptr<void> storage;  // owns the memory
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual std::string device_name() const = 0;
  // Whether a step without clipping should run AdamW on each layer right after its backward
  // (flat_parameters.h) rather than once over the whole buffer: where that keeps the operands in
  // cache (the CPU), not where it only adds launches (the GPU).
  virtual bool updates_by_layer() const = 0;

  // ---- memory: allocation, and copies between host and backend (these synchronise)
  virtual std::shared_ptr<void> allocate(size_t bytes) = 0;  // zero-filled, 256-byte aligned
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) const = 0;
  virtual BackendDataset upload_dataset(const Dataset& data) = 0;

  // ---- inside a step (no synchronisation)
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // `height` rows of `width` bytes from rows `src_pitch` bytes apart to rows `dst_pitch` apart
  // (a transpose of blocks: DyAD's [F, B, H] states to [B, F H] latents and back).
  virtual void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                       size_t height) = 0;
  // Runs `body` (one training step on `rows` rows). The GPU records it once as a CUDA graph and
  // replays it; invalidate_step() drops the recording when a pointer it baked in changes.
  virtual void run_step(int rows, const std::function<void()>& body) = 0;
  virtual void invalidate_step() = 0;

  // ---- the ops (host/ops/*_cpu.h and kernels/*.h)
  virtual void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm) = 0;
  virtual void gather_batch(const BackendDataset& data, const int32_t* perm, const int32_t* first,
                            int rows, bool binarize, RngState rng, float* out) = 0;
  virtual void advance_batch_start(int32_t* first, int rows) = 0;
  virtual void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim,
                                  RngState rng, LogvarClamp clamp, BatchReduction reduction,
                                  float* z, float* kl_per_sample, float* kl_reduced) = 0;
  virtual void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps,
                                            int batch, int dim, LogvarClamp clamp,
                                            BatchReduction reduction, float* z,
                                            float* kl_per_sample, float* kl_reduced) = 0;
  virtual void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch,
                                   int dim, RngState rng, const float* kl_weight, float loss_scale,
                                   LogvarClamp clamp, BatchReduction reduction, float* dmu,
                                   float* dlogvar) = 0;
  virtual void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                             const float* eps, int batch, int dim,
                                             const float* kl_weight, float loss_scale,
                                             LogvarClamp clamp, BatchReduction reduction,
                                             float* dmu, float* dlogvar) = 0;
  virtual void draw_normal_eps(int batch, int dim, RngState rng, float scale, float* eps) = 0;
  virtual void free_bits_forward(const float* mu, const float* logvar, int batch, int dim,
                                 LogvarClamp clamp, float free_bits, float* kl_dim_mean,
                                 float* kl_floored) = 0;
  virtual void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean,
                                  int batch, int dim, LogvarClamp clamp, float free_bits,
                                  const float* kl_weight, float loss_scale,
                                  BatchReduction reduction, float* dmu, float* dlogvar) = 0;
  virtual void recon_loss_forward_backward(const float* output, const float* target, int batch,
                                           int dim, ReconLoss loss, BatchReduction reduction,
                                           float loss_scale, float* loss_per_sample,
                                           float* loss_reduced, float* grad_output) = 0;
  virtual void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                                float* grad_scale) = 0;
  virtual void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                            const StepState* state, const OptimizerConfig& opt,
                            const float* grad_scale) = 0;
  virtual void advance_step_state(StepState* state, const KlSchedule& kl,
                                  const OptimizerConfig& opt, uint64_t total_steps) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// Throws std::runtime_error when no CUDA device is usable.
std::unique_ptr<Backend> make_gpu_backend(bool tf32, bool cuda_graph);

}  // namespace fusedvae

// @brief The training loop on the GPU: fused kernels around cuBLASLt Linear layers, one stream, no
// host synchronisation and no allocation inside a step.
//
// train_step is captured once as a CUDA graph (TrainConfig::cuda_graph; at the second call, after
// one uncaptured warm-up step) and replayed: the capture records exactly the function the
// uncaptured path runs (train_step_body), and everything that changes from step to step is read
// from device memory by the kernels (the batch's position in the permutation, the Philox draw, the
// step, KL weight and learning rate), never baked into the graph as a kernel argument. The
// per-epoch shuffle stays outside the graph (one launch per epoch).
//
// Mirrors the CPU trainer (host/train/cpu_trainer.cpp) definition for definition: the same random
// streams and draws, the same evaluation chunks, the same loss bookkeeping; only the arithmetic
// differs (float32 matrix products in another order, TF32 when asked).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "host/train/trainer_common.h"
#include "host/train/gpu_linear.h"
#include "host/train/trainer.h"
#include "kernels/adamw.h"
#include "kernels/batch_gather.h"
#include "kernels/cuda_check.h"
#include "kernels/free_bits.h"
#include "kernels/grad_norm.h"
#include "kernels/recon_loss.h"
#include "kernels/reparam_kl.h"
#include "kernels/step_math.cuh"
#include "kernels/step_state.h"
#include "kernels/vae_math.cuh"

namespace fusedvae {

bool cuda_device_present(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // The usual case on a machine without a GPU, said in words a user can act on.
    const std::string why = err == cudaErrorInsufficientDriver
                                ? "the NVIDIA driver is missing or older than this CUDA runtime"
                            : err == cudaErrorNoDevice ? "no CUDA-capable device is detected"
                                                       : cudaGetErrorString(err);
    if (reason) *reason = "no usable CUDA device: " + why + " (" + cudaGetErrorName(err) + ")";
    cudaGetLastError();  // clear the error so that later calls report their own
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "no usable CUDA device: cudaGetDeviceCount found 0 devices";
    return false;
  }
  return true;
}

namespace {

using gpu::Linear;
using gpu::LinearAct;
using gpu::LinearSpec;

// One cudaMalloc carved into 256-byte-aligned pieces (the alignment the Linear layers assume).
class DeviceArena {
 public:
  DeviceArena() = default;
  ~DeviceArena() { cudaFree(base_); }
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // Two passes over the same carving code: sizes first (base null), then the real pointers.
  void begin_sizing() {
    cudaFree(base_);
    base_ = nullptr;
    used_ = 0;
  }
  void allocate_sized() {
    const size_t bytes = std::max<size_t>(used_, 256);
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&base_, bytes));
    // Padded rows of a partial evaluation chunk read whatever is there: keep it finite.
    FUSEDVAE_CUDA_CHECK(cudaMemset(base_, 0, bytes));
    used_ = 0;
  }
  template <typename T>
  T* take(size_t count) {
    const size_t offset = (used_ + 255) / 256 * 256;
    used_ = offset + std::max<size_t>(count * sizeof(T), 1);
    return base_ ? reinterpret_cast<T*>(base_ + offset) : nullptr;
  }

 private:
  char* base_ = nullptr;
  size_t used_ = 0;
};

template <typename T>
T* device_alloc(size_t count) {
  T* p = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  return p;
}

// The per-step scalars that stay on the device.
struct DeviceScalars {
  StepState state;       // the state for the next step
  StepState last_state;  // the state the last step ran with (its KL weight and learning rate)
  float recon_reduced;
  float kl_reduced;
  float grad_norm;
  float grad_scale;
  float kl_floored;        // free bits: sum_j max(KL_j, free_bits), nats per sample
  float zero_kl_weight;    // stays 0: the reparameterization op's KL weight under free bits
  uint64_t eval_draw;      // Philox draw of the current evaluation sample
  uint64_t binarize_draw;  // evaluation binarises at draw 0
  int32_t batch_first;     // position in perm_ of the next train_step's batch
  int32_t eval_first;      // first row of the current evaluation chunk
};

class GpuTrainer final : public Trainer {
 public:
  explicit GpuTrainer(const TrainConfig& config)
      : config_(config), layout_(make_param_layout(config.model)) {
    check_train_config(config);
    std::string reason;
    if (!cuda_device_present(&reason)) throw std::runtime_error("GPU trainer: " + reason);
    int device = 0;
    FUSEDVAE_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    FUSEDVAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    // A way around a fused cuBLASLt epilogue that misbehaves on some device or library version:
    // plain products and the elementwise kernels give the same results within float rounding.
    // Named in device_name, which the benchmarks' rows and the CLI's log carry.
    fused_epilogues_ = std::getenv("FUSEDVAE_UNFUSED_EPILOGUES") == nullptr;
    device_name_ = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                   std::to_string(prop.minor) + ", cuBLASLt" + (config.tf32 ? ", TF32" : "") +
                   (fused_epilogues_ ? "" : ", unfused epilogues") +
                   (config.cuda_graph ? ", CUDA graph" : "") + ")";
    // A blocking stream: the plain cudaMemcpy/cudaMemset of the set-up and read-back paths (legacy
    // default stream) are then ordered with the step's work without further events.
    FUSEDVAE_CUDA_CHECK(cudaStreamCreate(&stream_));

    params_ = device_alloc<float>(layout_.total);
    grads_ = device_alloc<float>(layout_.total);
    m_ = device_alloc<float>(layout_.total);
    v_ = device_alloc<float>(layout_.total);
    scalars_ = device_alloc<DeviceScalars>(1);
    kl_dim_mean_ = device_alloc<float>(config.model.latent_dim);
    FUSEDVAE_CUDA_CHECK(cudaMemset(grads_, 0, layout_.total * sizeof(float)));
    FUSEDVAE_CUDA_CHECK(cudaMemset(m_, 0, layout_.total * sizeof(float)));
    FUSEDVAE_CUDA_CHECK(cudaMemset(v_, 0, layout_.total * sizeof(float)));
    FUSEDVAE_CUDA_CHECK(cudaMemset(scalars_, 0, sizeof(DeviceScalars)));
    std::vector<float> init(layout_.total);
    init_params_like_pytorch(layout_, config.seed, init.data());
    upload(params_, init);
    write_state(math::initial_step_state(config_.kl, config_.optimizer, 0));

    reduce_ws_ = gpu::create_reduction_workspace();
    norm_ws_ = gpu::create_grad_norm_workspace();
    engine_ = std::make_unique<gpu::LinearEngine>(config.tf32);
    build_layers();
    reserve_rows(config.batch_size);
  }

  ~GpuTrainer() override {
    if (stream_) cudaStreamSynchronize(stream_);
    drop_graph();
    layers_.clear();
    engine_.reset();
    gpu::destroy_reduction_workspace(&reduce_ws_);
    gpu::destroy_grad_norm_workspace(&norm_ws_);
    if (shuffle_ws_.capacity > 0) gpu::destroy_shuffle_workspace(&shuffle_ws_);
    for (void* p :
         {static_cast<void*>(params_), static_cast<void*>(grads_), static_cast<void*>(m_),
          static_cast<void*>(v_), static_cast<void*>(scalars_), static_cast<void*>(kl_dim_mean_),
          static_cast<void*>(data_u8_), static_cast<void*>(data_f32_), static_cast<void*>(perm_)})
      cudaFree(p);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string device_name() const override { return device_name_; }
  const TrainConfig& config() const override { return config_; }

  void set_train_data(const Dataset& data) override {
    check_train_data(data, config_);
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    cudaFree(data_u8_);
    cudaFree(data_f32_);
    cudaFree(perm_);
    data_u8_ = nullptr;
    data_f32_ = nullptr;
    if (shuffle_ws_.capacity > 0) gpu::destroy_shuffle_workspace(&shuffle_ws_);
    drop_graph();        // it holds the old data pointers and run length
    warmed_up_ = false;  // the first step on new data runs uncaptured again (loads its kernels)
    upload_dataset(data, &data_u8_, &data_f32_);
    perm_ = device_alloc<int32_t>(data.rows);
    shuffle_ws_ = gpu::create_shuffle_workspace(data.rows);
    data_rows_ = data.rows;
    data_scale_ = data.scale;
    data_offset_ = data.offset;
    total_steps_ = static_cast<uint64_t>(config_.epochs) * batches_per_epoch();
    // The learning rate of the first step depends on the run length (cosine).
    if (read_state().step == 0)
      write_state(math::initial_step_state(config_.kl, config_.optimizer, total_steps_));
    start_epoch(0);  // a valid order even for a train_step before any start_epoch
  }

  int batches_per_epoch() const override {
    return data_rows_ > 0 ? data_rows_ / config_.batch_size : 0;
  }

  void start_epoch(int epoch) override {
    require_data("start_epoch");
    gpu::shuffle_indices(data_rows_, config_.seed, static_cast<uint64_t>(epoch), perm_, shuffle_ws_,
                         stream_);
    FUSEDVAE_CUDA_CHECK(
        cudaMemsetAsync(&scalars_->batch_first, 0, sizeof(scalars_->batch_first), stream_));
    next_batch_ = 0;
  }

  void train_step(int batch_in_epoch) override {
    require_data("train_step");
    if (batch_in_epoch < 0 || batch_in_epoch >= batches_per_epoch())
      throw std::out_of_range("train_step: batch " + std::to_string(batch_in_epoch) +
                              " outside [0, " + std::to_string(batches_per_epoch()) + ")");
    const int rows = config_.batch_size;
    // The device position follows the calls in order (start_epoch, then batches 0, 1, ...); a call
    // out of that order (a run resumed mid-epoch, a repeated batch) moves it with one host write.
    if (batch_in_epoch != next_batch_) {
      const int32_t first = batch_in_epoch * rows;
      FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(&scalars_->batch_first, &first, sizeof(first),
                                          cudaMemcpyHostToDevice, stream_));
      // A pageable source may be read when the copy runs: wait for it before `first` goes.
      FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    // The first step runs uncaptured: whatever the libraries and the lazy module loader set up
    // on a first call happens outside the capture. Later steps replay the graph.
    if (config_.cuda_graph && warmed_up_) {
      if (graph_exec_ == nullptr || graph_rows_ != rows) capture_train_step(rows);
      FUSEDVAE_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
    } else {
      train_step_body(rows);
      warmed_up_ = true;
    }
    next_batch_ = batch_in_epoch + 1;
    last_rows_ = rows;
  }

  StepLosses last_losses() override {
    if (last_rows_ == 0) return StepLosses{};
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    DeviceScalars s{};
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(&s, scalars_, sizeof(s), cudaMemcpyDeviceToHost));
    std::vector<float> recon(last_rows_), kl(last_rows_);
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(recon.data(), buf_.recon_per_sample, last_rows_ * sizeof(float),
                                   cudaMemcpyDeviceToHost));
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(kl.data(), buf_.kl_per_sample, last_rows_ * sizeof(float),
                                   cudaMemcpyDeviceToHost));
    // The batch means in double, as the CPU trainer forms them (whatever the batch reduction).
    StepLosses losses;
    losses.recon = static_cast<float>(mean_in_double(recon));
    losses.kl = static_cast<float>(mean_in_double(kl));
    losses.kl_weight = s.last_state.kl_weight;
    const bool free_bits = config_.kl.free_bits > 0.0f;
    losses.loss = losses.recon + losses.kl_weight * (free_bits ? s.kl_floored : losses.kl);
    losses.lr = s.last_state.lr;
    losses.grad_norm = s.grad_norm;
    losses.step = s.state.step;
    return losses;
  }

  void train_step_on(const float* batch, int rows, const float* eps) override {
    if (rows < 1) throw std::invalid_argument("train_step_on: rows must be >= 1");
    reserve_rows(rows);
    copy_rows_in(buf_.x, batch, rows, config_.model.input_dim);
    if (eps) copy_rows_in(buf_.eps, eps, rows, config_.model.latent_dim);
    step(rows, eps ? buf_.eps : nullptr);
    last_rows_ = rows;
  }

  std::vector<float> params() const override { return download(params_, layout_.total); }
  std::vector<float> gradients() const override { return download(grads_, layout_.total); }

  void set_params(const std::vector<float>& params) override {
    require_size("set_params: parameters", params.size());
    upload(params_, params);
  }

  OptimizerState optimizer_state() const override {
    return {download(m_, layout_.total), download(v_, layout_.total), read_state()};
  }

  void set_optimizer_state(const OptimizerState& state) override {
    require_size("set_optimizer_state: m", state.m.size());
    require_size("set_optimizer_state: v", state.v.size());
    upload(m_, state.m);
    upload(v_, state.v);
    write_state(state.step_state);
  }

  void encode(const float* x, int rows, float* mu, float* logvar) override;
  void decode(const float* z, int rows, float* x_mean) override;
  EvalResult evaluate(const Dataset& data, int iwae_samples, uint64_t seed) override;

 private:
  // Per-batch device buffers, all carved from one arena sized for capacity_ rows.
  struct Buffers {
    float* x = nullptr;  // [rows, D] normalised input
    std::vector<float*> enc_acts, dec_acts;
    std::vector<void*> enc_masks, dec_masks;
    float *mu = nullptr, *logvar = nullptr, *z = nullptr, *eps = nullptr;
    float *dz = nullptr, *dmu = nullptr, *dlogvar = nullptr;
    float *out = nullptr, *grad_out = nullptr;
    float *recon_per_sample = nullptr, *kl_per_sample = nullptr;
    float *eval_recon = nullptr, *eval_kl = nullptr;  // kept apart so last_losses survives eval
    float *delta_a = nullptr, *delta_b = nullptr;     // backward scratch, [rows, widest hidden]
  };

  // Layers in carving order: encoder hidden, mu, logvar, decoder hidden, out.
  void build_layers() {
    const LinearAct act = gpu::linear_act_of(config_.model.activation);
    const bool enc_hidden = !layout_.encoder_hidden.empty();
    auto add = [&](const LinearLayer& layer, LinearAct output_act, LinearAct input_act,
                   bool needs_input_grad, bool accumulate) {
      LinearSpec spec;
      spec.in = layer.in;
      spec.out = layer.out;
      spec.output_act = output_act;
      spec.input_act = input_act;
      spec.needs_input_grad = needs_input_grad;
      spec.accumulate_input_grad = accumulate;
      gpu::LinearAlignment align;
      align.weight = params_ + layer.weight_offset;
      align.bias = params_ + layer.bias_offset;
      align.weight_grad = grads_ + layer.weight_offset;
      align.bias_grad = grads_ + layer.bias_offset;
      layers_.push_back(std::make_unique<Linear>(*engine_, spec, align, fused_epilogues_));
      return layers_.back().get();
    };
    for (size_t i = 0; i < layout_.encoder_hidden.size(); ++i)
      enc_.push_back(
          add(layout_.encoder_hidden[i], act, i == 0 ? LinearAct::kIdentity : act, i > 0, false));
    // The heads share their input: mu's backward writes its gradient plainly, logvar's adds its
    // own and then applies the activation's derivative to the sum.
    mu_head_ = add(layout_.mu, LinearAct::kIdentity, LinearAct::kIdentity, enc_hidden, false);
    logvar_head_ = add(layout_.logvar, LinearAct::kIdentity,
                       enc_hidden ? act : LinearAct::kIdentity, enc_hidden, true);
    for (size_t i = 0; i < layout_.decoder_hidden.size(); ++i)
      dec_.push_back(
          add(layout_.decoder_hidden[i], act, i == 0 ? LinearAct::kIdentity : act, true, false));
    out_layer_ = add(layout_.out, LinearAct::kIdentity, dec_.empty() ? LinearAct::kIdentity : act,
                     true, false);
  }

  // Plans for a batch of `rows` in every layer, in forward order so that each layer knows whether
  // the one feeding it writes a ReLU mask for this batch.
  void add_batch_plans(int rows) {
    const Linear* previous = nullptr;
    for (Linear* layer : enc_) {
      layer->add_batch(rows, previous != nullptr && previous->writes_relu_mask(rows));
      previous = layer;
    }
    // The heads never read a mask (mu has no derivative to apply, logvar applies it by kernel).
    mu_head_->add_batch(rows, false);
    logvar_head_->add_batch(rows, false);
    previous = nullptr;
    for (Linear* layer : dec_) {
      layer->add_batch(rows, previous != nullptr && previous->writes_relu_mask(rows));
      previous = layer;
    }
    out_layer_->add_batch(rows, previous != nullptr && previous->writes_relu_mask(rows));
  }

  // Buffers for `rows` rows and Linear plans for batches of exactly `rows`. Construction time for
  // the configured batch size; train_step_on with another size pays it once for that size.
  void reserve_rows(int rows) {
    add_batch_plans(rows);
    if (rows <= capacity_) return;
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    drop_graph();  // the buffers move
    capacity_ = rows;
    arena_.begin_sizing();
    carve(rows);
    arena_.allocate_sized();
    carve(rows);
  }

  void carve(int rows) {
    const size_t n = static_cast<size_t>(rows);
    const ModelConfig& m = config_.model;
    Buffers& b = buf_;
    b.x = arena_.take<float>(n * m.input_dim);
    b.out = arena_.take<float>(n * m.input_dim);
    b.grad_out = arena_.take<float>(n * m.input_dim);
    for (float** p : {&b.mu, &b.logvar, &b.z, &b.eps, &b.dz, &b.dmu, &b.dlogvar})
      *p = arena_.take<float>(n * m.latent_dim);
    for (float** p : {&b.recon_per_sample, &b.kl_per_sample, &b.eval_recon, &b.eval_kl})
      *p = arena_.take<float>(n);
    b.enc_acts.assign(enc_.size(), nullptr);
    b.enc_masks.assign(enc_.size(), nullptr);
    b.dec_acts.assign(dec_.size(), nullptr);
    b.dec_masks.assign(dec_.size(), nullptr);
    int widest = 1;
    for (size_t i = 0; i < enc_.size(); ++i) {
      const int width = enc_[i]->spec().out;
      b.enc_acts[i] = arena_.take<float>(n * width);
      b.enc_masks[i] = arena_.take<unsigned char>(gpu::relu_mask_bytes(width, rows));
      widest = std::max(widest, width);
    }
    for (size_t i = 0; i < dec_.size(); ++i) {
      const int width = dec_[i]->spec().out;
      b.dec_acts[i] = arena_.take<float>(n * width);
      b.dec_masks[i] = arena_.take<unsigned char>(gpu::relu_mask_bytes(width, rows));
      widest = std::max(widest, width);
    }
    b.delta_a = arena_.take<float>(n * widest);
    b.delta_b = arena_.take<float>(n * widest);
  }

  void layer_forward(const Linear* layer, const LinearLayer& l, int rows, const float* x, float* y,
                     void* relu_mask) {
    layer->forward(rows, x, params_ + l.weight_offset, params_ + l.bias_offset, y, relu_mask,
                   stream_);
  }

  // A stack of hidden layers from `input`; returns the top layer's activations (or `input`).
  const float* hidden_stack_forward(const std::vector<Linear*>& layers,
                                    const std::vector<LinearLayer>& params,
                                    const std::vector<float*>& acts,
                                    const std::vector<void*>& masks, const float* input, int rows) {
    for (size_t i = 0; i < layers.size(); ++i) {
      layer_forward(layers[i], params[i], rows, input, acts[i], masks[i]);
      input = acts[i];
    }
    return input;
  }

  // buf_.x -> hidden activations -> buf_.mu, buf_.logvar (the heads' raw outputs).
  void encoder_forward(int rows) {
    const float* top = hidden_stack_forward(enc_, layout_.encoder_hidden, buf_.enc_acts,
                                            buf_.enc_masks, buf_.x, rows);
    layer_forward(mu_head_, layout_.mu, rows, top, buf_.mu, nullptr);
    layer_forward(logvar_head_, layout_.logvar, rows, top, buf_.logvar, nullptr);
  }

  // buf_.z -> hidden activations -> buf_.out (logits for Bernoulli, means otherwise).
  void decoder_forward(int rows) {
    const float* top = hidden_stack_forward(dec_, layout_.decoder_hidden, buf_.dec_acts,
                                            buf_.dec_masks, buf_.z, rows);
    layer_forward(out_layer_, layout_.out, rows, top, buf_.out, nullptr);
  }

  // One layer's backward: its parameter gradients, and dL/d(its input's pre-activation) into
  // `input_grad` when the layer needs one. `input_mask`: the ReLU mask of the layer below.
  void layer_backward(const Linear* layer, const LinearLayer& l, int rows, const float* dy,
                      const float* input, const void* input_mask, float* input_grad) {
    layer->backward_weight(rows, dy, input, grads_ + l.weight_offset, grads_ + l.bias_offset,
                           stream_);
    if (layer->spec().needs_input_grad)
      layer->backward_input(rows, dy, params_ + l.weight_offset, input, input_mask, input_grad,
                            stream_);
  }

  // buf_.grad_out -> decoder parameter gradients and buf_.dz. Each backward_input applies the
  // derivative of the activation below, so `delta` is always dL/d(pre-activation).
  void decoder_backward(int rows) {
    const size_t hidden = dec_.size();
    const float* top_input = hidden > 0 ? buf_.dec_acts.back() : buf_.z;
    const void* top_mask = hidden > 0 ? buf_.dec_masks.back() : nullptr;
    float* delta = hidden > 0 ? buf_.delta_a : buf_.dz;
    layer_backward(out_layer_, layout_.out, rows, buf_.grad_out, top_input, top_mask, delta);
    for (size_t k = hidden; k-- > 0;) {
      const float* input = k > 0 ? buf_.dec_acts[k - 1] : buf_.z;
      const void* mask = k > 0 ? buf_.dec_masks[k - 1] : nullptr;
      float* next = k > 0 ? other_delta(delta) : buf_.dz;
      layer_backward(dec_[k], layout_.decoder_hidden[k], rows, delta, input, mask, next);
      delta = next;
    }
  }

  // buf_.dmu, buf_.dlogvar -> encoder parameter gradients.
  void encoder_backward(int rows) {
    const size_t hidden = enc_.size();
    const float* heads_input = hidden > 0 ? buf_.enc_acts.back() : buf_.x;
    layer_backward(mu_head_, layout_.mu, rows, buf_.dmu, heads_input, nullptr, buf_.delta_a);
    layer_backward(logvar_head_, layout_.logvar, rows, buf_.dlogvar, heads_input, nullptr,
                   buf_.delta_a);
    float* delta = buf_.delta_a;
    for (size_t k = hidden; k-- > 0;) {
      const float* input = k > 0 ? buf_.enc_acts[k - 1] : buf_.x;
      const void* mask = k > 0 ? buf_.enc_masks[k - 1] : nullptr;
      float* next = k > 0 ? other_delta(delta) : nullptr;
      layer_backward(enc_[k], layout_.encoder_hidden[k], rows, delta, input, mask, next);
      delta = next;
    }
  }

  float* other_delta(const float* delta) const {
    return delta == buf_.delta_a ? buf_.delta_b : buf_.delta_a;
  }

  // One training step on buf_.x (`rows` rows), in the order of trainer.h, all on stream_.
  // eps: device [rows, latent] given by the caller, or null to draw it from Philox.
  void step(int rows, const float* eps) {
    const ModelConfig& model = config_.model;
    const int d = model.latent_dim;
    const BatchReduction reduction = config_.reduction;
    const RngState rng{math::stream_seed(config_.seed, math::RngStream::kReparam),
                       &scalars_->state.draw_index};
    // With free bits the KL gradient comes from free_bits_backward alone; the reparameterization
    // op then contributes the path through z only (the CPU trainer does the same).
    const bool free_bits = config_.kl.free_bits > 0.0f;
    const float* reparam_kl_weight =
        free_bits ? &scalars_->zero_kl_weight : &scalars_->state.kl_weight;

    encoder_forward(rows);
    if (eps)
      gpu::reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, eps, rows, d, model.clamp, reduction,
                                        buf_.z, buf_.kl_per_sample, &scalars_->kl_reduced,
                                        reduce_ws_, stream_);
    else
      gpu::reparam_kl_forward(buf_.mu, buf_.logvar, rows, d, rng, model.clamp, reduction, buf_.z,
                              buf_.kl_per_sample, &scalars_->kl_reduced, reduce_ws_, stream_);
    if (free_bits)
      gpu::free_bits_forward(buf_.mu, buf_.logvar, rows, d, model.clamp, config_.kl.free_bits,
                             kl_dim_mean_, &scalars_->kl_floored, stream_);
    decoder_forward(rows);
    gpu::recon_loss_forward_backward(buf_.out, buf_.x, rows, model.input_dim, model.recon,
                                     reduction, 1.0f, buf_.recon_per_sample,
                                     &scalars_->recon_reduced, buf_.grad_out, reduce_ws_, stream_);

    decoder_backward(rows);
    if (eps)
      gpu::reparam_kl_backward_given_eps(buf_.dz, buf_.mu, buf_.logvar, eps, rows, d,
                                         reparam_kl_weight, 1.0f, model.clamp, reduction, buf_.dmu,
                                         buf_.dlogvar, stream_);
    else
      gpu::reparam_kl_backward(buf_.dz, buf_.mu, buf_.logvar, rows, d, rng, reparam_kl_weight, 1.0f,
                               model.clamp, reduction, buf_.dmu, buf_.dlogvar, stream_);
    if (free_bits)
      gpu::free_bits_backward(buf_.mu, buf_.logvar, kl_dim_mean_, rows, d, model.clamp,
                              config_.kl.free_bits, &scalars_->state.kl_weight, 1.0f, reduction,
                              buf_.dmu, buf_.dlogvar, stream_);
    encoder_backward(rows);

    gpu::global_grad_norm(grads_, layout_.total, config_.optimizer.max_grad_norm,
                          &scalars_->grad_norm, &scalars_->grad_scale, norm_ws_, stream_);
    gpu::adamw_update(params_, m_, v_, grads_, layout_.total, &scalars_->state, config_.optimizer,
                      &scalars_->grad_scale, stream_);
    // Keep the KL weight and learning rate this step ran with, for last_losses().
    FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(&scalars_->last_state, &scalars_->state, sizeof(StepState),
                                        cudaMemcpyDeviceToDevice, stream_));
    gpu::advance_step_state(&scalars_->state, config_.kl, config_.optimizer, total_steps_, stream_);
  }

  // train_step's device work, captured as is: gather batch *batch_first at the current draw, the
  // step, and the move to the next batch. Host state is not touched here: a graph replay runs the
  // device work alone.
  void train_step_body(int rows) {
    gpu::gather_batch(
        data_u8_, data_f32_, config_.model.input_dim, perm_, &scalars_->batch_first, rows,
        data_scale_, data_offset_, config_.binarize,
        {math::stream_seed(config_.seed, math::RngStream::kBinarize), &scalars_->state.draw_index},
        buf_.x, stream_);
    step(rows, nullptr);
    gpu::advance_batch_start(&scalars_->batch_first, rows, stream_);
  }

  // Records train_step_body(rows) into a graph and instantiates it. Thread-local capture mode: a
  // call of this thread inside the body that could synchronise or allocate (cudaMalloc, cudaMemcpy,
  // a stream or device synchronisation) fails the capture with an error instead of silently running
  // outside it, while other threads of the process are left alone. (stream_ is a blocking stream:
  // the legacy default stream is unusable until the capture ends; nothing here touches it.)
  void capture_train_step(int rows) {
    try {
      record_train_step(rows);
    } catch (const std::exception& e) {
      throw std::runtime_error(
          std::string("capturing the training step as a CUDA graph failed (--no-cuda-graph trains "
                      "without one): ") +
          e.what());
    }
  }

  void record_train_step(int rows) {
    drop_graph();
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    cudaGraph_t graph = nullptr;
    FUSEDVAE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      train_step_body(rows);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);  // ends the capture; the partial graph is dropped
      if (graph != nullptr) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    FUSEDVAE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t instantiated = cudaGraphInstantiate(&graph_exec_, graph, 0);
    cudaGraphDestroy(graph);  // the executable graph keeps what it needs
    if (instantiated != cudaSuccess) {
      graph_exec_ = nullptr;
      FUSEDVAE_CUDA_CHECK(instantiated);
    }
    graph_rows_ = rows;
  }

  // Called wherever a pointer or argument baked into the graph changes (new buffers, new data).
  void drop_graph() {
    if (graph_exec_ != nullptr) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
    graph_rows_ = 0;
  }

  // ---- host <-> device helpers (outside the step; these synchronise)

  void require_data(const char* what) const {
    if (perm_ == nullptr) throw std::logic_error(std::string(what) + ": call set_train_data first");
  }

  void require_size(const char* what, size_t size) const {
    if (size != layout_.total)
      throw std::invalid_argument(std::string(what) + " has " + std::to_string(size) +
                                  " values, the model has " + std::to_string(layout_.total));
  }

  void upload(float* device, const std::vector<float>& host) {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FUSEDVAE_CUDA_CHECK(
        cudaMemcpy(device, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  }

  std::vector<float> download(const float* device, size_t count) const {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<float> host(count);
    FUSEDVAE_CUDA_CHECK(
        cudaMemcpy(host.data(), device, count * sizeof(float), cudaMemcpyDeviceToHost));
    return host;
  }

  StepState read_state() const {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    StepState s;
    FUSEDVAE_CUDA_CHECK(
        cudaMemcpy(&s, &scalars_->state, sizeof(StepState), cudaMemcpyDeviceToHost));
    return s;
  }

  void write_state(const StepState& s) {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FUSEDVAE_CUDA_CHECK(
        cudaMemcpy(&scalars_->state, &s, sizeof(StepState), cudaMemcpyHostToDevice));
  }

  void copy_rows_in(float* device, const float* host, int rows, int cols) {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(device, host, static_cast<size_t>(rows) * cols * sizeof(float),
                                   cudaMemcpyHostToDevice));
  }

  void copy_rows_out(float* host, const float* device, int rows, int cols) {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(host, device, static_cast<size_t>(rows) * cols * sizeof(float),
                                   cudaMemcpyDeviceToHost));
  }

  void upload_dataset(const Dataset& data, uint8_t** u8, float** f32) {
    const size_t count = static_cast<size_t>(data.rows) * data.dim;
    if (data.is_u8()) {
      if (data.u8.size() != count)
        throw std::invalid_argument(data.source + ": holds " + std::to_string(data.u8.size()) +
                                    " bytes, expected rows x dim = " + std::to_string(count));
      *u8 = device_alloc<uint8_t>(count);
      FUSEDVAE_CUDA_CHECK(cudaMemcpy(*u8, data.u8.data(), count, cudaMemcpyHostToDevice));
    } else {
      if (data.f32.size() != count)
        throw std::invalid_argument(data.source + ": holds " + std::to_string(data.f32.size()) +
                                    " floats, expected rows x dim = " + std::to_string(count));
      *f32 = device_alloc<float>(count);
      FUSEDVAE_CUDA_CHECK(
          cudaMemcpy(*f32, data.f32.data(), count * sizeof(float), cudaMemcpyHostToDevice));
    }
  }

  // Calls f(first, count) over [0, rows) in chunks of batch_size rows (trainer.h). The Linear
  // layers always run a full batch_size (their plans exist for it); rows past `count` are padding
  // whose outputs are ignored (each output row depends on its own input row only).
  template <typename F>
  void for_each_chunk(int rows, F&& f) {
    if (rows < 0) throw std::invalid_argument("rows must be >= 0");
    const int chunk = config_.batch_size;
    for (int first = 0; first < rows; first += chunk) f(first, std::min(chunk, rows - first));
  }

  TrainConfig config_;
  ParamLayout layout_;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;

  float *params_ = nullptr, *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr;
  DeviceScalars* scalars_ = nullptr;
  float* kl_dim_mean_ = nullptr;  // [latent], free bits only
  ReductionWorkspace reduce_ws_{};
  gpu::GradNormWorkspace norm_ws_{};
  gpu::ShuffleWorkspace shuffle_ws_{};
  uint64_t total_steps_ = 0;              // 0 until set_train_data: the run length is unknown
  int last_rows_ = 0;                     // rows of the last step; 0 before the first
  int next_batch_ = 0;                    // the batch scalars_->batch_first points to (host mirror)
  cudaGraphExec_t graph_exec_ = nullptr;  // train_step_body captured, for graph_rows_ rows
  int graph_rows_ = 0;
  bool warmed_up_ = false;  // a train_step ran uncaptured

  uint8_t* data_u8_ = nullptr;
  float* data_f32_ = nullptr;
  int32_t* perm_ = nullptr;
  int data_rows_ = 0;
  float data_scale_ = 1.0f, data_offset_ = 0.0f;

  std::unique_ptr<gpu::LinearEngine> engine_;
  bool fused_epilogues_ = true;
  std::vector<std::unique_ptr<Linear>> layers_;  // owns the layers below
  std::vector<Linear*> enc_, dec_;
  Linear *mu_head_ = nullptr, *logvar_head_ = nullptr, *out_layer_ = nullptr;

  int capacity_ = 0;
  DeviceArena arena_;
  Buffers buf_;
};

// ---------------------------------------------------------------------------------------------
// Inference and evaluation (outside the training step; these synchronise)

void GpuTrainer::encode(const float* x, int rows, float* mu, float* logvar) {
  const int d = config_.model.latent_dim;
  const LogvarClamp clamp = config_.model.clamp;
  for_each_chunk(rows, [&](int first, int count) {
    copy_rows_in(buf_.x, x + static_cast<size_t>(first) * config_.model.input_dim, count,
                 config_.model.input_dim);
    encoder_forward(config_.batch_size);
    const size_t base = static_cast<size_t>(first) * d;
    copy_rows_out(mu + base, buf_.mu, count, d);
    copy_rows_out(logvar + base, buf_.logvar, count, d);
    for (size_t i = 0; i < static_cast<size_t>(count) * d; ++i)
      logvar[base + i] = math::clamp_logvar(logvar[base + i], clamp.min, clamp.max);
  });
}

void GpuTrainer::decode(const float* z, int rows, float* x_mean) {
  const int dim = config_.model.input_dim;
  const bool logits = config_.model.recon.kind == ReconLossKind::kBernoulliLogits;
  for_each_chunk(rows, [&](int first, int count) {
    copy_rows_in(buf_.z, z + static_cast<size_t>(first) * config_.model.latent_dim, count,
                 config_.model.latent_dim);
    decoder_forward(config_.batch_size);
    const size_t base = static_cast<size_t>(first) * dim;
    copy_rows_out(x_mean + base, buf_.out, count, dim);
    if (logits)
      for (size_t i = 0; i < static_cast<size_t>(count) * dim; ++i)
        x_mean[base + i] = math::sigmoid(x_mean[base + i]);
  });
}

// The definitions of trainer.h (and the CPU trainer's): sample k of dataset row r is row r of
// Philox draw k of the evaluation stream of `seed`, whatever the chunk; dynamic binarisation at
// draw 0 of the binarisation stream of `seed`.
EvalResult GpuTrainer::evaluate(const Dataset& data, int iwae_samples, uint64_t seed) {
  check_evaluation_input(data, config_.model.input_dim, iwae_samples);
  const ModelConfig& model = config_.model;
  const int d = model.latent_dim;
  const int dim = model.input_dim;
  const uint64_t eval_seed = math::stream_seed(seed, math::RngStream::kEvaluation);

  EvalResult result = sized_eval_result(data.rows, iwae_samples);
  if (data.rows == 0) return result;

  // The evaluation set is uploaded for this call (never inside a training step).
  uint8_t* data_u8 = nullptr;
  float* data_f32 = nullptr;
  int32_t* identity = nullptr;
  struct Release {
    std::vector<void*> pointers;
    ~Release() {
      for (void* p : pointers) cudaFree(p);
    }
  } release;
  upload_dataset(data, &data_u8, &data_f32);
  release.pointers = {data_u8, data_f32};
  identity = device_alloc<int32_t>(data.rows);
  release.pointers.push_back(identity);
  {
    std::vector<int32_t> rows_in_order(data.rows);
    for (int r = 0; r < data.rows; ++r) rows_in_order[r] = r;
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(identity, rows_in_order.data(), data.rows * sizeof(int32_t),
                                   cudaMemcpyHostToDevice));
  }
  FUSEDVAE_CUDA_CHECK(cudaMemset(&scalars_->binarize_draw, 0, sizeof(uint64_t)));
  const RngState binarize_rng{math::stream_seed(seed, math::RngStream::kBinarize),
                              &scalars_->binarize_draw};
  float* reduced = &scalars_->recon_reduced;  // scratch; the step's own value is not kept

  const size_t chunk_rows = static_cast<size_t>(config_.batch_size);
  std::vector<float> recon(chunk_rows), z(chunk_rows * d), eps(chunk_rows * d),
      logvar(chunk_rows * d);
  MonteCarloEval monte_carlo(&result, config_.batch_size, iwae_samples, d, model.clamp);
  for_each_chunk(data.rows, [&](int first, int rows) {
    // The gather reads its position from the device; copy_rows_out below synchronises before
    // `chunk_first` goes.
    const int32_t chunk_first = first;
    FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(&scalars_->eval_first, &chunk_first, sizeof(chunk_first),
                                        cudaMemcpyHostToDevice, stream_));
    gpu::gather_batch(data_u8, data_f32, dim, identity, &scalars_->eval_first, rows, data.scale,
                      data.offset, config_.binarize, binarize_rng, buf_.x, stream_);
    encoder_forward(config_.batch_size);
    // Recon at z = mu and the analytic KL (eps = 0 turns reparameterize into z = mu).
    FUSEDVAE_CUDA_CHECK(
        cudaMemsetAsync(buf_.eps, 0, static_cast<size_t>(rows) * d * sizeof(float), stream_));
    gpu::reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, buf_.eps, rows, d, model.clamp,
                                      BatchReduction::kSum, buf_.z, buf_.eval_kl, reduced,
                                      reduce_ws_, stream_);
    decoder_forward(config_.batch_size);
    gpu::recon_loss_forward_backward(buf_.out, buf_.x, rows, dim, model.recon, BatchReduction::kSum,
                                     1.0f, buf_.eval_recon, reduced, buf_.grad_out, reduce_ws_,
                                     stream_);
    copy_rows_out(result.recon.data() + first, buf_.eval_recon, rows, 1);
    copy_rows_out(result.kl.data() + first, buf_.eval_kl, rows, 1);
    if (iwae_samples > 0) copy_rows_out(logvar.data(), buf_.logvar, rows, d);
    for (int k = 0; k <= iwae_samples; ++k) {
      const uint64_t draw = k;
      FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(&scalars_->eval_draw, &draw, sizeof(draw),
                                          cudaMemcpyHostToDevice, stream_));
      gpu::draw_normal_eps(rows, d, {eval_seed, &scalars_->eval_draw, static_cast<uint64_t>(first)},
                           buf_.eps, stream_);
      // The KL of the sampled z is the analytic one again; its output goes to scratch.
      gpu::reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, buf_.eps, rows, d, model.clamp,
                                        BatchReduction::kSum, buf_.z, buf_.dz, reduced, reduce_ws_,
                                        stream_);
      decoder_forward(config_.batch_size);
      gpu::recon_loss_forward_backward(buf_.out, buf_.x, rows, dim, model.recon,
                                       BatchReduction::kSum, 1.0f, buf_.eval_recon, reduced,
                                       buf_.grad_out, reduce_ws_, stream_);
      copy_rows_out(recon.data(), buf_.eval_recon, rows, 1);  // synchronises: `draw` may go
      // The IWAE weights need z and eps too.
      if (k > 0) {
        copy_rows_out(z.data(), buf_.z, rows, d);
        copy_rows_out(eps.data(), buf_.eps, rows, d);
      }
      monte_carlo.add_sample(k, first, rows, recon.data(), z.data(), eps.data(), logvar.data());
    }
    monte_carlo.finish_chunk(first, rows);
  });

  fill_eval_means(&result);
  return result;
}

}  // namespace

std::unique_ptr<Trainer> make_gpu_trainer(const TrainConfig& config) {
  return std::make_unique<GpuTrainer>(config);
}

}  // namespace fusedvae

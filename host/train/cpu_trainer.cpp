// @brief The training loop on the CPU: the CPU twins of the fused ops around OpenBLAS products.
//
// Mirrors the GPU trainer step for step (trainer.h), so that the two can be checked against the
// same float64 reference. Every buffer is sized once for the batch; a step allocates nothing.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "host/ops/activation_cpu.h"
#include "host/ops/adamw_cpu.h"
#include "host/ops/batch_gather_cpu.h"
#include "host/ops/bias_cpu.h"
#include "host/ops/free_bits_cpu.h"
#include "host/ops/grad_norm_cpu.h"
#include "host/ops/recon_loss_cpu.h"
#include "host/ops/reparam_kl_cpu.h"
#include "host/ops/step_state_cpu.h"
#include "host/train/trainer.h"
#include "host/train/openblas_setup.h"
#include "host/train/trainer_common.h"
#include "kernels/step_math.cuh"
#include "kernels/vae_math.cuh"

namespace fusedvae {
namespace {

// ---------------------------------------------------------------------------------------------
// One nn.Linear on row-major batches: y = x W^T + b, and its backward.

// y[rows, out] = x[rows, in] W^T.
void linear_product(const float* x, int rows, const LinearLayer& layer, const float* params,
                    float* y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, layer.out, layer.in, 1.0f, x, layer.in,
              params + layer.weight_offset, layer.in, 0.0f, y, layer.out);
}

// Given dy = dL/dy [rows, out] and the layer's input x: dW = dy^T x and db = column sums of dy
// overwrite their slots in `grads` (every slot belongs to exactly one layer, so the step never
// zeroes the buffer); dx = dy W, added to dx scaled by dx_beta (1 sums the two latent heads),
// skipped when dx is null (the first layer's input is the data).
void linear_backward(const float* x, const float* dy, int rows, const LinearLayer& layer,
                     const float* params, float* grads, float* dx, float dx_beta) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, layer.out, layer.in, rows, 1.0f, dy,
              layer.out, x, layer.in, 0.0f, grads + layer.weight_offset, layer.in);
  cpu::bias_gradient(dy, rows, layer.out, grads + layer.bias_offset);
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, layer.in, layer.out, 1.0f, dy,
                layer.out, params + layer.weight_offset, layer.in, dx_beta, dx, layer.in);
}

double mean_of(const std::vector<float>& values, int rows) {
  double sum = 0.0;
  for (int r = 0; r < rows; ++r) sum += values[r];
  return sum / rows;
}

class CpuTrainer final : public Trainer {
 public:
  explicit CpuTrainer(const TrainConfig& config)
      : config_(config), layout_(make_param_layout(config.model)) {
    check_train_config(config);
    threads_ = configure_openblas_threads();
    params_.resize(layout_.total);
    grads_.assign(layout_.total, 0.0f);
    m_.assign(layout_.total, 0.0f);
    v_.assign(layout_.total, 0.0f);
    init_params_like_pytorch(layout_, config.seed, params_.data());
    state_ = math::initial_step_state(config_.kl, config_.optimizer, 0);
    kl_dim_mean_.resize(config.model.latent_dim);
    reserve_rows(config.batch_size);
  }

  std::string device_name() const override {
    const char* kernels = openblas_get_corename();
    return "cpu (OpenBLAS " + std::string(kernels ? kernels : "?") + ", " +
           std::to_string(threads_) + " threads)";
  }
  const TrainConfig& config() const override { return config_; }

  void set_train_data(const Dataset& data) override {
    check_train_data(data, config_);
    data_ = data;
    perm_.resize(data.rows);
    total_steps_ = static_cast<uint64_t>(config_.epochs) * batches_per_epoch();
    // The learning rate of the first step depends on the run length (cosine).
    if (state_.step == 0)
      state_ = math::initial_step_state(config_.kl, config_.optimizer, total_steps_);
    start_epoch(0);  // a valid order even for a train_step before any start_epoch
  }

  int batches_per_epoch() const override { return data_.rows / config_.batch_size; }

  void start_epoch(int epoch) override {
    require_data("start_epoch");
    cpu::shuffle_indices(data_.rows, config_.seed, static_cast<uint64_t>(epoch), perm_.data());
  }

  void train_step(int batch_in_epoch) override {
    require_data("train_step");
    if (batch_in_epoch < 0 || batch_in_epoch >= batches_per_epoch())
      throw std::out_of_range("train_step: batch " + std::to_string(batch_in_epoch) +
                              " outside [0, " + std::to_string(batches_per_epoch()) + ")");
    const int rows = config_.batch_size;
    gather_rows(data_, perm_.data(), batch_in_epoch * rows, rows, config_.binarize,
                {math::stream_seed(config_.seed, math::RngStream::kBinarize), &state_.draw_index},
                x_.data());
    step(x_.data(), rows, nullptr);
  }

  StepLosses last_losses() override { return last_; }

  void train_step_on(const float* batch, int rows, const float* eps) override {
    if (rows < 1) throw std::invalid_argument("train_step_on: rows must be >= 1");
    reserve_rows(rows);
    step(batch, rows, eps);
  }

  std::vector<float> params() const override { return params_; }
  std::vector<float> gradients() const override { return grads_; }

  void set_params(const std::vector<float>& params) override {
    require_size("set_params: parameters", params.size());
    params_ = params;
  }

  OptimizerState optimizer_state() const override { return {m_, v_, state_}; }

  void set_optimizer_state(const OptimizerState& state) override {
    require_size("set_optimizer_state: m", state.m.size());
    require_size("set_optimizer_state: v", state.v.size());
    m_ = state.m;
    v_ = state.v;
    state_ = state.step_state;
  }

  void encode(const float* x, int rows, float* mu, float* logvar) override {
    const int d = config_.model.latent_dim;
    const LogvarClamp clamp = config_.model.clamp;
    for_each_chunk(rows, [&](int first, int count) {
      encoder_forward(x + static_cast<size_t>(first) * config_.model.input_dim, count);
      const size_t base = static_cast<size_t>(first) * d;
      for (size_t i = 0; i < static_cast<size_t>(count) * d; ++i) {
        mu[base + i] = mu_[i];
        logvar[base + i] = math::clamp_logvar(logvar_[i], clamp.min, clamp.max);
      }
    });
  }

  void decode(const float* z, int rows, float* x_mean) override {
    const int dim = config_.model.input_dim;
    const bool logits = config_.model.recon.kind == ReconLossKind::kBernoulliLogits;
    for_each_chunk(rows, [&](int first, int count) {
      decoder_forward(z + static_cast<size_t>(first) * config_.model.latent_dim, count);
      const size_t base = static_cast<size_t>(first) * dim;
      for (size_t i = 0; i < static_cast<size_t>(count) * dim; ++i)
        x_mean[base + i] = logits ? math::sigmoid(out_[i]) : out_[i];
    });
  }

  EvalResult evaluate(const Dataset& data, int iwae_samples, uint64_t seed) override;

 private:
  void require_data(const char* what) const {
    if (perm_.empty()) throw std::logic_error(std::string(what) + ": call set_train_data first");
  }

  void require_size(const char* what, size_t size) const {
    if (size != layout_.total)
      throw std::invalid_argument(std::string(what) + " has " + std::to_string(size) +
                                  " values, the model has " + std::to_string(layout_.total));
  }

  // Sizes every per-batch buffer for `rows`; a no-op once they are large enough, so steps on
  // batches of the configured size never allocate.
  void reserve_rows(int rows) {
    if (rows <= capacity_) return;
    capacity_ = rows;
    const size_t n = static_cast<size_t>(rows);
    const ModelConfig& m = config_.model;
    const size_t latent = n * m.latent_dim;
    x_.resize(n * m.input_dim);
    out_.resize(n * m.input_dim);
    grad_out_.resize(n * m.input_dim);
    for (auto* buffer : {&mu_, &logvar_, &z_, &eps_, &dz_, &dmu_, &dlogvar_})
      buffer->resize(latent);
    recon_per_sample_.resize(n);
    kl_per_sample_.resize(n);
    encoder_acts_.resize(m.hidden.size());
    decoder_acts_.resize(m.hidden.size());
    int widest = 1;
    for (size_t i = 0; i < m.hidden.size(); ++i) {
      encoder_acts_[i].resize(n * layout_.encoder_hidden[i].out);
      decoder_acts_[i].resize(n * layout_.decoder_hidden[i].out);
      widest = std::max(widest, m.hidden[i]);
    }
    delta_a_.resize(n * widest);
    delta_b_.resize(n * widest);
  }

  template <typename F>
  void for_each_chunk(int rows, F&& f) {
    if (rows < 0) throw std::invalid_argument("rows must be >= 0");
    for (int first = 0; first < rows; first += capacity_)
      f(first, std::min(capacity_, rows - first));
  }

  // Normalised (and, with binarize, binarised) rows perm[first .. first + rows) of the data set.
  static void gather_rows(const Dataset& data, const int32_t* perm, int first, int rows,
                          bool binarize, RngState rng, float* out) {
    cpu::gather_batch(data.is_u8() ? data.u8.data() : nullptr,
                      data.is_u8() ? nullptr : data.f32.data(), data.dim, perm, &first, rows,
                      data.scale, data.offset, binarize, rng, out);
  }

  const float* bias(const LinearLayer& layer) const { return params_.data() + layer.bias_offset; }

  // x [rows, D] -> hidden activations -> mu_, logvar_ (the heads' raw outputs; the clamp is
  // applied by the reparameterization op).
  void encoder_forward(const float* x, int rows) {
    const Activation act = config_.model.activation;
    const float* input = x;
    for (size_t i = 0; i < layout_.encoder_hidden.size(); ++i) {
      const LinearLayer& layer = layout_.encoder_hidden[i];
      linear_product(input, rows, layer, params_.data(), encoder_acts_[i].data());
      cpu::bias_activation_forward(encoder_acts_[i].data(), bias(layer), rows, layer.out, act);
      input = encoder_acts_[i].data();
    }
    for (auto [layer, head] :
         {std::pair{&layout_.mu, &mu_}, std::pair{&layout_.logvar, &logvar_}}) {
      linear_product(input, rows, *layer, params_.data(), head->data());
      cpu::bias_add(head->data(), bias(*layer), rows, layer->out);
    }
  }

  // z [rows, d] -> hidden activations -> out_ (logits for Bernoulli, means otherwise).
  void decoder_forward(const float* z, int rows) {
    const Activation act = config_.model.activation;
    const float* input = z;
    for (size_t i = 0; i < layout_.decoder_hidden.size(); ++i) {
      const LinearLayer& layer = layout_.decoder_hidden[i];
      linear_product(input, rows, layer, params_.data(), decoder_acts_[i].data());
      cpu::bias_activation_forward(decoder_acts_[i].data(), bias(layer), rows, layer.out, act);
      input = decoder_acts_[i].data();
    }
    linear_product(input, rows, layout_.out, params_.data(), out_.data());
    cpu::bias_add(out_.data(), bias(layout_.out), rows, layout_.out.out);
  }

  // Backpropagates through a stack of hidden layers (activation, then Linear), top to bottom.
  // `delta` holds dL/d(output of the top layer); the result, dL/d(input of the bottom layer), goes
  // to `input_grad` (null: not needed). delta_a_/delta_b_ alternate as scratch.
  void hidden_stack_backward(const std::vector<LinearLayer>& layers,
                             const std::vector<std::vector<float>>& acts, const float* stack_input,
                             float* delta, int rows, float* input_grad) {
    const Activation act = config_.model.activation;
    for (size_t k = layers.size(); k-- > 0;) {
      const LinearLayer& layer = layers[k];
      cpu::activation_backward(acts[k].data(), delta, rows, layer.out, act);
      const float* input = k > 0 ? acts[k - 1].data() : stack_input;
      float* next =
          k > 0 ? (delta == delta_a_.data() ? delta_b_.data() : delta_a_.data()) : input_grad;
      linear_backward(input, delta, rows, layer, params_.data(), grads_.data(), next, 0.0f);
      delta = next;
    }
  }

  // grad_out_ -> gradients of the decoder's parameters, and dz_.
  void decoder_backward(int rows) {
    const bool has_hidden = !layout_.decoder_hidden.empty();
    const float* top_input = has_hidden ? decoder_acts_.back().data() : z_.data();
    float* top_input_grad = has_hidden ? delta_a_.data() : dz_.data();
    linear_backward(top_input, grad_out_.data(), rows, layout_.out, params_.data(), grads_.data(),
                    top_input_grad, 0.0f);
    if (has_hidden)
      hidden_stack_backward(layout_.decoder_hidden, decoder_acts_, z_.data(), delta_a_.data(), rows,
                            dz_.data());
  }

  // dmu_, dlogvar_ -> gradients of the encoder's parameters. The heads share their input, so its
  // gradient is the sum of the two heads' contributions.
  void encoder_backward(const float* x, int rows) {
    const bool has_hidden = !layout_.encoder_hidden.empty();
    const float* heads_input = has_hidden ? encoder_acts_.back().data() : x;
    float* heads_input_grad = has_hidden ? delta_a_.data() : nullptr;
    linear_backward(heads_input, dmu_.data(), rows, layout_.mu, params_.data(), grads_.data(),
                    heads_input_grad, 0.0f);
    linear_backward(heads_input, dlogvar_.data(), rows, layout_.logvar, params_.data(),
                    grads_.data(), heads_input_grad, 1.0f);
    if (has_hidden)
      hidden_stack_backward(layout_.encoder_hidden, encoder_acts_, x, delta_a_.data(), rows,
                            nullptr);
  }

  // One training step, in the order of trainer.h. eps: given [rows, latent], or null to draw it
  // from Philox at the current draw index.
  void step(const float* x, int rows, const float* eps) {
    const ModelConfig& model = config_.model;
    const int d = model.latent_dim;
    const BatchReduction reduction = config_.reduction;
    const RngState rng{math::stream_seed(config_.seed, math::RngStream::kReparam),
                       &state_.draw_index};
    // With free bits the KL gradient comes from free_bits_backward alone; the reparameterization
    // op then contributes the path through z only.
    const bool free_bits = config_.kl.free_bits > 0.0f;
    static constexpr float kNoKlWeight = 0.0f;
    const float* reparam_kl_weight = free_bits ? &kNoKlWeight : &state_.kl_weight;

    encoder_forward(x, rows);
    float kl_reduced = 0.0f;
    if (eps)
      cpu::reparam_kl_forward_given_eps(mu_.data(), logvar_.data(), eps, rows, d, model.clamp,
                                        reduction, z_.data(), kl_per_sample_.data(), &kl_reduced);
    else
      cpu::reparam_kl_forward(mu_.data(), logvar_.data(), rows, d, rng, model.clamp, reduction,
                              z_.data(), kl_per_sample_.data(), &kl_reduced);
    float kl_floored = 0.0f;
    if (free_bits)
      cpu::free_bits_forward(mu_.data(), logvar_.data(), rows, d, model.clamp, config_.kl.free_bits,
                             kl_dim_mean_.data(), &kl_floored);
    decoder_forward(z_.data(), rows);
    float recon_reduced = 0.0f;
    cpu::recon_loss_forward_backward(out_.data(), x, rows, model.input_dim, model.recon, reduction,
                                     1.0f, recon_per_sample_.data(), &recon_reduced,
                                     grad_out_.data());

    decoder_backward(rows);
    if (eps)
      cpu::reparam_kl_backward_given_eps(dz_.data(), mu_.data(), logvar_.data(), eps, rows, d,
                                         reparam_kl_weight, 1.0f, model.clamp, reduction,
                                         dmu_.data(), dlogvar_.data());
    else
      cpu::reparam_kl_backward(dz_.data(), mu_.data(), logvar_.data(), rows, d, rng,
                               reparam_kl_weight, 1.0f, model.clamp, reduction, dmu_.data(),
                               dlogvar_.data());
    if (free_bits)
      cpu::free_bits_backward(mu_.data(), logvar_.data(), kl_dim_mean_.data(), rows, d, model.clamp,
                              config_.kl.free_bits, &state_.kl_weight, 1.0f, reduction, dmu_.data(),
                              dlogvar_.data());
    encoder_backward(x, rows);

    float grad_norm = 0.0f, grad_scale = 1.0f;
    cpu::global_grad_norm(grads_.data(), grads_.size(), config_.optimizer.max_grad_norm, &grad_norm,
                          &grad_scale);
    cpu::adamw_update(params_.data(), m_.data(), v_.data(), grads_.data(), params_.size(), &state_,
                      config_.optimizer, &grad_scale);

    last_.recon = static_cast<float>(mean_of(recon_per_sample_, rows));
    last_.kl = static_cast<float>(mean_of(kl_per_sample_, rows));
    last_.kl_weight = state_.kl_weight;
    last_.loss = last_.recon + state_.kl_weight * (free_bits ? kl_floored : last_.kl);
    last_.lr = state_.lr;
    last_.grad_norm = grad_norm;
    cpu::advance_step_state(&state_, config_.kl, config_.optimizer, total_steps_);
    last_.step = state_.step;
  }

  TrainConfig config_;
  ParamLayout layout_;
  int threads_ = 1;
  std::vector<float> params_, grads_, m_, v_;
  StepState state_;
  uint64_t total_steps_ = 0;  // 0 until set_train_data: the run length is unknown
  StepLosses last_;

  Dataset data_;
  std::vector<int32_t> perm_;

  int capacity_ = 0;  // rows the per-batch buffers hold
  std::vector<float> x_, out_, grad_out_;
  std::vector<float> mu_, logvar_, z_, eps_, dz_, dmu_, dlogvar_;
  std::vector<float> recon_per_sample_, kl_per_sample_;
  std::vector<float> kl_dim_mean_;  // [latent], free bits only
  std::vector<std::vector<float>> encoder_acts_, decoder_acts_;
  std::vector<float> delta_a_, delta_b_;  // backward scratch, [rows, widest hidden layer]
};

// Per sample, in nats; the draws are trainer.h's (sample k of dataset row r: row r of draw k of
// the evaluation stream of `seed`, whatever the chunk), so only the seed changes the numbers.
EvalResult CpuTrainer::evaluate(const Dataset& data, int iwae_samples, uint64_t seed) {
  check_evaluation_input(data, config_.model.input_dim, iwae_samples);
  const ModelConfig& model = config_.model;
  const int d = model.latent_dim;
  const int dim = model.input_dim;
  const uint64_t eval_seed = math::stream_seed(seed, math::RngStream::kEvaluation);
  const uint64_t binarize_draw = 0;
  const RngState binarize_rng{math::stream_seed(seed, math::RngStream::kBinarize), &binarize_draw};

  EvalResult result = sized_eval_result(data.rows, iwae_samples);

  std::vector<int32_t> identity(data.rows);
  for (int r = 0; r < data.rows; ++r) identity[r] = r;
  std::vector<float> kl_scratch(capacity_);
  MonteCarloEval monte_carlo(&result, capacity_, iwae_samples, d, model.clamp);
  float reduced = 0.0f;
  for_each_chunk(data.rows, [&](int first, int rows) {
    gather_rows(data, identity.data(), first, rows, config_.binarize, binarize_rng, x_.data());
    encoder_forward(x_.data(), rows);
    // Recon at z = mu and the analytic KL (eps = 0 turns reparameterize into z = mu).
    std::fill(eps_.begin(), eps_.begin() + static_cast<size_t>(rows) * d, 0.0f);
    cpu::reparam_kl_forward_given_eps(mu_.data(), logvar_.data(), eps_.data(), rows, d, model.clamp,
                                      BatchReduction::kSum, z_.data(), kl_per_sample_.data(),
                                      &reduced);
    decoder_forward(z_.data(), rows);
    cpu::recon_loss_forward_backward(out_.data(), x_.data(), rows, dim, model.recon,
                                     BatchReduction::kSum, 1.0f, recon_per_sample_.data(), &reduced,
                                     grad_out_.data());
    for (int r = 0; r < rows; ++r) {
      result.recon[first + r] = recon_per_sample_[r];
      result.kl[first + r] = kl_per_sample_[r];
    }
    for (int k = 0; k <= iwae_samples; ++k) {
      const uint64_t draw = k;
      cpu::draw_normal_eps(rows, d, {eval_seed, &draw, static_cast<uint64_t>(first)}, eps_.data());
      cpu::reparam_kl_forward_given_eps(mu_.data(), logvar_.data(), eps_.data(), rows, d,
                                        model.clamp, BatchReduction::kSum, z_.data(),
                                        kl_scratch.data(), &reduced);
      decoder_forward(z_.data(), rows);
      cpu::recon_loss_forward_backward(out_.data(), x_.data(), rows, dim, model.recon,
                                       BatchReduction::kSum, 1.0f, recon_per_sample_.data(),
                                       &reduced, grad_out_.data());
      monte_carlo.add_sample(k, first, rows, recon_per_sample_.data(), z_.data(), eps_.data(),
                             logvar_.data());
    }
    monte_carlo.finish_chunk(first, rows);
  });

  fill_eval_means(&result);
  return result;
}

}  // namespace

std::unique_ptr<Trainer> make_cpu_trainer(const TrainConfig& config) {
  return std::make_unique<CpuTrainer>(config);
}

}  // namespace fusedvae

// @brief The training step and the evaluation of a VAE, written once for every backend.
//
// A step, in the order the data flows (VaeTrainer::step):
//   gather + normalise the batch -> encoder -> reparameterization + KL -> decoder ->
//   reconstruction loss and its gradient -> decoder backward -> reparameterization + KL backward
//   -> encoder backward -> global-norm clipping -> AdamW -> advance the schedules.
// Without clipping, the CPU runs each layer's AdamW right after that layer's backward instead
// (host/train/flat_parameters.h).
// The architecture comes from host/model (a list of modules); the arithmetic from the backend
// (host/train/backend.h): the CPU twins and oneDNN, or the kernels and cuBLASLt. Everything that
// changes from step to step (the batch position, the Philox draw, the step, the KL weight and the
// learning rate) lives in the backend's memory, so the GPU records the step once as a CUDA graph.
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "host/train/backend.h"
#include "host/train/backend_arena.h"
#include "host/train/flat_parameters.h"
#include "host/train/module_registry.h"
#include "host/train/trainer.h"
#include "host/train/trainer_common.h"
#include "kernels/reparam_kl_math.cuh"
#include "kernels/recon_loss_math.cuh"
#include "kernels/rng_streams.cuh"
#include "kernels/step_state_math.cuh"

namespace fusedvae {
namespace {

using Layers = std::vector<std::unique_ptr<LayerRun>>;

// The per-step scalars, in the backend's memory.
struct StepScalars {
  StepState state;       // the state for the next step
  StepState last_state;  // the state the last step ran with (its KL weight and learning rate)
  float recon_reduced;
  float kl_reduced;
  float eval_reduced;  // evaluation's batch sums (not kept)
  float grad_norm;
  float grad_scale;
  float kl_floored;        // free bits: sum_j max(KL_j, free_bits), nats per sample
  float zero_kl_weight;    // stays 0: the reparameterization op's KL weight under free bits
  uint64_t eval_draw;      // Philox draw of the current evaluation sample
  uint64_t binarize_draw;  // evaluation binarises at draw 0
  int32_t batch_first;     // position in the permutation of the next train_step's batch
  int32_t eval_first;      // first row of the current evaluation chunk
};

// The activation after the last module of a stack (the one its readers' backward applies).
Activation output_activation(const std::vector<Module>& stack) {
  return !stack.empty() && stack.back().is(activation_definition()) ? stack.back().activation
                                                                    : Activation::kIdentity;
}

class VaeTrainer final : public Trainer {
 public:
  VaeTrainer(const TrainConfig& config, std::unique_ptr<Backend> backend)
      : config_(config),
        backend_(std::move(backend)),
        flat_(*backend_, config_.optimizer),
        arena_(*backend_) {
    check_train_config(config);
    architecture_ = mlp_vae(config.model);
    layout_ = make_param_layout(architecture_);
    flat_.allocate(layout_.total);
    scalars_storage_ = backend_->allocate(sizeof(StepScalars));
    kl_dim_mean_storage_ = backend_->allocate(config.model.latent_dim * sizeof(float));
    scalars_ = static_cast<StepScalars*>(scalars_storage_.get());
    kl_dim_mean_ = static_cast<float*>(kl_dim_mean_storage_.get());

    std::vector<float> init(layout_.total);
    init_params_like_pytorch(architecture_, config.seed, init.data());
    set_params(init);
    write_state(math::initial_step_state(config_.kl, config_.optimizer, 0));
    build_layers();
    reserve_rows(config.batch_size);
  }

  std::string device_name() const override { return backend_->device_name(); }
  const TrainConfig& config() const override { return config_; }

  void set_train_data(const Dataset& data) override {
    check_train_data(data, config_);
    backend_->invalidate_step();  // the recorded step holds the old data pointers and run length
    train_ = backend_->upload_dataset(data);
    perm_storage_ = backend_->allocate(data.rows * sizeof(int32_t));
    perm_ = static_cast<int32_t*>(perm_storage_.get());
    total_steps_ = static_cast<uint64_t>(config_.epochs) * batches_per_epoch();
    // The learning rate of the first step depends on the run length (cosine).
    if (read_state().step == 0)
      write_state(math::initial_step_state(config_.kl, config_.optimizer, total_steps_));
    start_epoch(0);  // a valid order even for a train_step before any start_epoch
  }

  int batches_per_epoch() const override { return train_.rows / config_.batch_size; }

  void start_epoch(int epoch) override {
    require_data("start_epoch");
    backend_->shuffle_indices(train_.rows, config_.seed, static_cast<uint64_t>(epoch), perm_);
    set_scalar(&scalars_->batch_first, int32_t{0});
    next_batch_ = 0;
  }

  void train_step(int batch_in_epoch) override {
    require_data("train_step");
    if (batch_in_epoch < 0 || batch_in_epoch >= batches_per_epoch())
      throw std::out_of_range("train_step: batch " + std::to_string(batch_in_epoch) +
                              " outside [0, " + std::to_string(batches_per_epoch()) + ")");
    const int rows = config_.batch_size;
    // The batch position follows the calls in order (start_epoch, then batches 0, 1, ...); a call
    // out of that order (a run resumed mid-epoch, a repeated batch) moves it with one write.
    if (batch_in_epoch != next_batch_) set_scalar(&scalars_->batch_first, batch_in_epoch * rows);
    backend_->run_step(rows, [this, rows] { train_step_body(rows); });
    next_batch_ = batch_in_epoch + 1;
    last_rows_ = rows;
  }

  StepLosses last_losses() override {
    if (last_rows_ == 0) return StepLosses{};
    flat_.settle_grad_norm(update_scalars());
    StepScalars s{};
    backend_->download(&s, scalars_, sizeof(s));
    const std::vector<float> recon = download(buf_.recon_per_sample, last_rows_);
    const std::vector<float> kl = download(buf_.kl_per_sample, last_rows_);
    // The batch means in double, whatever the batch reduction.
    StepLosses losses;
    losses.recon = static_cast<float>(mean_in_double(recon));
    losses.kl = static_cast<float>(mean_in_double(kl));
    losses.kl_weight = s.last_state.kl_weight;
    losses.loss = losses.recon + losses.kl_weight * (free_bits() ? s.kl_floored : losses.kl);
    losses.lr = s.last_state.lr;
    losses.grad_norm = s.grad_norm;
    losses.step = s.state.step;
    return losses;
  }

  void train_step_on(const float* batch, int rows, const float* eps) override {
    if (rows < 1) throw std::invalid_argument("train_step_on: rows must be >= 1");
    reserve_rows(rows);
    upload_rows(buf_.x, batch, rows, config_.model.input_dim);
    if (eps) upload_rows(buf_.eps, eps, rows, config_.model.latent_dim);
    step(rows, eps ? buf_.eps : nullptr);
    last_rows_ = rows;
  }

  std::vector<float> params() const override { return flat_.download_params(); }
  std::vector<float> gradients() const override { return flat_.download_grads(); }

  void set_params(const std::vector<float>& params) override {
    flat_.upload_params(params, "set_params: parameters");
  }

  OptimizerState optimizer_state() const override {
    return {flat_.download_m(), flat_.download_v(), read_state()};
  }

  void set_optimizer_state(const OptimizerState& state) override {
    flat_.upload_moments(state.m, state.v);
    write_state(state.step_state);
  }

  void encode(const float* x, int rows, float* mu, float* logvar) override;
  void decode(const float* z, int rows, float* x_mean) override;
  EvalResult evaluate(const Dataset& data, int iwae_samples, uint64_t seed) override;

 private:
  // Per-batch buffers, carved from one arena sized for capacity_ rows.
  struct Buffers {
    float* x = nullptr;                      // [rows, D] normalised input
    std::vector<float*> enc_acts, dec_acts;  // each layer's output
    std::vector<void*> enc_aux, dec_aux;     // each layer's side output (ReLU masks)
    float *mu = nullptr, *logvar = nullptr, *z = nullptr, *eps = nullptr;
    float *dz = nullptr, *dmu = nullptr, *dlogvar = nullptr;
    float* grad_out = nullptr;  // the output is the last decoder layer's (dec_acts.back())
    float *recon_per_sample = nullptr, *kl_per_sample = nullptr;
    float *eval_recon = nullptr, *eval_kl = nullptr;  // kept apart so last_losses survives eval
    float *delta_a = nullptr, *delta_b = nullptr;     // backward scratch, [rows, widest layer]
  };

  bool free_bits() const { return config_.kl.free_bits > 0.0f; }

  // ------------------------------------------------------------------------------------------
  // The training step

  // train_step's work, recorded as is by the GPU backend: gather batch *batch_first at the current
  // draw, the step, and the move to the next batch.
  void train_step_body(int rows) {
    backend_->gather_batch(
        train_, perm_, &scalars_->batch_first, rows, config_.binarize,
        {math::stream_seed(config_.seed, math::RngStream::kBinarize), &scalars_->state.draw_index},
        buf_.x);
    step(rows, nullptr);
    backend_->advance_batch_start(&scalars_->batch_first, rows);
  }

  // One training step on buf_.x (`rows` rows). eps: [rows, latent] in backend memory given by the
  // caller, or null to draw it from Philox at the current draw index.
  void step(int rows, const float* eps) {
    Backend& b = *backend_;
    const ModelConfig& model = config_.model;
    const int d = model.latent_dim;
    const BatchReduction reduction = config_.reduction;
    const RngState rng{math::stream_seed(config_.seed, math::RngStream::kReparam),
                       &scalars_->state.draw_index};
    // With free bits the KL gradient comes from free_bits_backward alone; the reparameterization
    // op then contributes the path through z only.
    const float* reparam_kl_weight =
        free_bits() ? &scalars_->zero_kl_weight : &scalars_->state.kl_weight;

    encoder_forward(rows);
    if (eps)
      b.reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, eps, rows, d, model.clamp, reduction,
                                     buf_.z, buf_.kl_per_sample, &scalars_->kl_reduced);
    else
      b.reparam_kl_forward(buf_.mu, buf_.logvar, rows, d, rng, model.clamp, reduction, buf_.z,
                           buf_.kl_per_sample, &scalars_->kl_reduced);
    if (free_bits())
      b.free_bits_forward(buf_.mu, buf_.logvar, rows, d, model.clamp, config_.kl.free_bits,
                          kl_dim_mean_, &scalars_->kl_floored);
    const float* out = decoder_forward(rows);
    b.recon_loss_forward_backward(out, buf_.x, rows, model.input_dim, model.recon, reduction, 1.0f,
                                  buf_.recon_per_sample, &scalars_->recon_reduced, buf_.grad_out);

    stack_backward(decoder_, decoder_slices_, buf_.dec_acts, buf_.dec_aux, buf_.z, buf_.grad_out,
                   rows, buf_.dz);
    if (eps)
      b.reparam_kl_backward_given_eps(buf_.dz, buf_.mu, buf_.logvar, eps, rows, d,
                                      reparam_kl_weight, 1.0f, model.clamp, reduction, buf_.dmu,
                                      buf_.dlogvar);
    else
      b.reparam_kl_backward(buf_.dz, buf_.mu, buf_.logvar, rows, d, rng, reparam_kl_weight, 1.0f,
                            model.clamp, reduction, buf_.dmu, buf_.dlogvar);
    if (free_bits())
      b.free_bits_backward(buf_.mu, buf_.logvar, kl_dim_mean_, rows, d, model.clamp,
                           config_.kl.free_bits, &scalars_->state.kl_weight, 1.0f, reduction,
                           buf_.dmu, buf_.dlogvar);
    encoder_backward(rows);

    flat_.finish_step(update_scalars());
    // Keep the KL weight and learning rate this step ran with, for last_losses().
    b.copy(&scalars_->last_state, &scalars_->state, sizeof(StepState));
    b.advance_step_state(&scalars_->state, config_.kl, config_.optimizer, total_steps_);
  }

  void update_layer(const ParamSlice& slice) { flat_.update_layer(slice, &scalars_->state); }

  UpdateScalars update_scalars() const {
    return {&scalars_->state, &scalars_->grad_norm, &scalars_->grad_scale};
  }

  // A stack's forward from `input`; returns its output (or `input` when it is empty).
  static const float* stack_forward(const Layers& layers, const std::vector<float*>& acts,
                                    const std::vector<void*>& aux, const float* input, int rows) {
    for (size_t i = 0; i < layers.size(); ++i) {
      layers[i]->forward(rows, input, acts[i], aux[i]);
      input = acts[i];
    }
    return input;
  }

  // buf_.x -> encoder -> buf_.mu, buf_.logvar (the heads' raw outputs; the reparameterization
  // clamps logvar).
  void encoder_forward(int rows) {
    const float* h = stack_forward(encoder_, buf_.enc_acts, buf_.enc_aux, buf_.x, rows);
    mu_head_->forward(rows, h, buf_.mu, nullptr);
    logvar_head_->forward(rows, h, buf_.logvar, nullptr);
  }

  // buf_.z -> decoder -> its output (logits for Bernoulli, means otherwise).
  const float* decoder_forward(int rows) {
    return stack_forward(decoder_, buf_.dec_acts, buf_.dec_aux, buf_.z, rows);
  }

  // Backward through a stack from dy (the gradient of its output before the top activation):
  // every layer's parameter gradients (and update) and, for the first layer, the gradient of the
  // stack's input (null: none is needed). delta_a/delta_b alternate as scratch.
  void stack_backward(const Layers& layers, const std::vector<ParamSlice>& slices,
                      const std::vector<float*>& acts, const std::vector<void*>& aux,
                      const float* stack_input, const float* dy, int rows, float* input_grad) {
    for (size_t k = layers.size(); k-- > 0;) {
      const float* input = k > 0 ? acts[k - 1] : stack_input;
      const void* input_aux = k > 0 ? aux[k - 1] : nullptr;
      float* next = k > 0 ? (dy == buf_.delta_a ? buf_.delta_b : buf_.delta_a) : input_grad;
      layers[k]->backward(rows, dy, input, input_aux, next);
      update_layer(slices[k]);
      dy = next;
    }
  }

  // buf_.dmu, buf_.dlogvar -> encoder parameter gradients. The heads share their input: mu's
  // backward writes its gradient, logvar's adds its own and applies the trunk's activation
  // derivative to the sum.
  void encoder_backward(int rows) {
    const float* h = encoder_.empty() ? buf_.x : buf_.enc_acts.back();
    mu_head_->backward(rows, buf_.dmu, h, nullptr, buf_.delta_a);
    update_layer(mu_slice_);
    logvar_head_->backward(rows, buf_.dlogvar, h, nullptr, buf_.delta_a);
    update_layer(logvar_slice_);
    stack_backward(encoder_, encoder_slices_, buf_.enc_acts, buf_.enc_aux, buf_.x, buf_.delta_a,
                   rows, nullptr);
  }

  // ------------------------------------------------------------------------------------------
  // Set-up

  void build_layers() {
    encoder_ = build_stack(*backend_, architecture_.encoder, layout_, flat_.params(), flat_.grads(),
                           false);
    LayerContext mu, logvar;
    mu.needs_input_grad = logvar.needs_input_grad = !encoder_.empty();
    logvar.accumulate_input_grad = true;
    logvar.input_act = output_activation(architecture_.encoder);
    mu_head_ = build_layer(*backend_, architecture_.mu, mu, layout_, flat_.params(), flat_.grads());
    logvar_head_ = build_layer(*backend_, architecture_.logvar, logvar, layout_, flat_.params(),
                               flat_.grads());
    decoder_ =
        build_stack(*backend_, architecture_.decoder, layout_, flat_.params(), flat_.grads(), true);
    encoder_slices_ = stack_param_slices(architecture_.encoder, layout_);
    decoder_slices_ = stack_param_slices(architecture_.decoder, layout_);
    mu_slice_ = layout_.slice_of(architecture_.mu);
    logvar_slice_ = layout_.slice_of(architecture_.logvar);
  }

  // Layers prepared for batches of `rows` (in forward order: a layer's input producer first) and
  // buffers for at least `rows` rows. Called outside the step; a no-op when already done.
  void reserve_rows(int rows) {
    auto prepare = [rows](const Layers& stack) {
      const LayerRun* previous = nullptr;
      for (const auto& layer : stack) {
        layer->prepare_rows(rows, previous);
        previous = layer.get();
      }
    };
    prepare(encoder_);
    // The heads read no side output (mu has no derivative to apply; logvar applies it itself).
    mu_head_->prepare_rows(rows, nullptr);
    logvar_head_->prepare_rows(rows, nullptr);
    prepare(decoder_);
    if (rows <= capacity_) return;
    backend_->invalidate_step();  // the buffers move
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
    b.grad_out = arena_.take<float>(n * m.input_dim);
    for (float** p : {&b.mu, &b.logvar, &b.z, &b.eps, &b.dz, &b.dmu, &b.dlogvar})
      *p = arena_.take<float>(n * m.latent_dim);
    for (float** p : {&b.recon_per_sample, &b.kl_per_sample, &b.eval_recon, &b.eval_kl})
      *p = arena_.take<float>(n);
    int widest = 1;
    auto carve_stack = [&](const Layers& stack, std::vector<float*>* acts,
                           std::vector<void*>* aux) {
      acts->assign(stack.size(), nullptr);
      aux->assign(stack.size(), nullptr);
      for (size_t i = 0; i < stack.size(); ++i) {
        (*acts)[i] = arena_.take<float>(n * stack[i]->out());
        const size_t aux_bytes = stack[i]->aux_bytes(rows);
        if (aux_bytes > 0) (*aux)[i] = arena_.take<unsigned char>(aux_bytes);
        widest = std::max(widest, stack[i]->out());
      }
    };
    carve_stack(encoder_, &b.enc_acts, &b.enc_aux);
    carve_stack(decoder_, &b.dec_acts, &b.dec_aux);
    b.delta_a = arena_.take<float>(n * widest);
    b.delta_b = arena_.take<float>(n * widest);
  }

  // ------------------------------------------------------------------------------------------
  // Host <-> backend (outside the step; these synchronise)

  void require_data(const char* what) const {
    if (perm_ == nullptr) throw std::logic_error(std::string(what) + ": call set_train_data first");
  }

  template <typename T>
  void set_scalar(T* in_backend, T value) {
    upload_value(*backend_, in_backend, value);
  }

  std::vector<float> download(const float* src, size_t count) const {
    return download_floats(*backend_, src, count);
  }

  void upload_rows(float* dst, const float* host, int rows, int cols) {
    backend_->upload(dst, host, static_cast<size_t>(rows) * cols * sizeof(float));
  }

  StepState read_state() const { return download_value(*backend_, &scalars_->state); }
  void write_state(const StepState& s) { upload_value(*backend_, &scalars_->state, s); }

  // Calls f(first, count) over [0, rows) in chunks of batch_size rows (trainer.h).
  template <typename F>
  void for_each_chunk(int rows, F&& f) {
    if (rows < 0) throw std::invalid_argument("rows must be >= 0");
    const int chunk = config_.batch_size;
    for (int first = 0; first < rows; first += chunk) {
      const int count = std::min(chunk, rows - first);
      reserve_rows(count);
      f(first, count);
    }
  }

  TrainConfig config_;
  std::unique_ptr<Backend> backend_;
  VaeArchitecture architecture_;
  ParamLayout layout_;

  FlatParameters flat_;  // parameters, gradients, Adam moments
  std::shared_ptr<void> scalars_storage_, kl_dim_mean_storage_, perm_storage_;
  StepScalars* scalars_ = nullptr;
  float* kl_dim_mean_ = nullptr;  // [latent], free bits only
  uint64_t total_steps_ = 0;      // 0 until set_train_data: the run length is unknown
  int last_rows_ = 0;             // rows of the last step; 0 before the first
  int next_batch_ = 0;            // the batch scalars_->batch_first points to (host mirror)

  BackendDataset train_;
  int32_t* perm_ = nullptr;

  Layers encoder_, decoder_;
  std::unique_ptr<LayerRun> mu_head_, logvar_head_;
  std::vector<ParamSlice> encoder_slices_, decoder_slices_;  // each layer's parameters
  ParamSlice mu_slice_, logvar_slice_;

  int capacity_ = 0;  // rows the per-batch buffers hold
  Arena arena_;
  Buffers buf_;
};

// ---------------------------------------------------------------------------------------------
// Inference and evaluation (outside the training step; these synchronise)

void VaeTrainer::encode(const float* x, int rows, float* mu, float* logvar) {
  const int d = config_.model.latent_dim;
  const LogvarClamp clamp = config_.model.clamp;
  for_each_chunk(rows, [&](int first, int count) {
    upload_rows(buf_.x, x + static_cast<size_t>(first) * config_.model.input_dim, count,
                config_.model.input_dim);
    encoder_forward(count);
    const size_t base = static_cast<size_t>(first) * d;
    const size_t values = static_cast<size_t>(count) * d;
    backend_->download(mu + base, buf_.mu, values * sizeof(float));
    backend_->download(logvar + base, buf_.logvar, values * sizeof(float));
    for (size_t i = 0; i < values; ++i)
      logvar[base + i] = math::clamp_logvar(logvar[base + i], clamp.min, clamp.max);
  });
}

void VaeTrainer::decode(const float* z, int rows, float* x_mean) {
  const int dim = config_.model.input_dim;
  const bool logits = config_.model.recon.kind == ReconLossKind::kBernoulliLogits;
  for_each_chunk(rows, [&](int first, int count) {
    upload_rows(buf_.z, z + static_cast<size_t>(first) * config_.model.latent_dim, count,
                config_.model.latent_dim);
    const float* out = decoder_forward(count);
    const size_t base = static_cast<size_t>(first) * dim;
    const size_t values = static_cast<size_t>(count) * dim;
    backend_->download(x_mean + base, out, values * sizeof(float));
    if (logits)
      for (size_t i = 0; i < values; ++i) x_mean[base + i] = math::sigmoid(x_mean[base + i]);
  });
}

// Per sample, in nats; the draws are trainer.h's (sample k of dataset row r: row r of draw k of
// the evaluation stream of `seed`, whatever the chunk; dynamic binarisation at draw 0 of the
// binarisation stream of `seed`), so only the seed changes the numbers.
EvalResult VaeTrainer::evaluate(const Dataset& data, int iwae_samples, uint64_t seed) {
  check_evaluation_input(data, config_.model.input_dim, iwae_samples);
  Backend& b = *backend_;
  const ModelConfig& model = config_.model;
  const int d = model.latent_dim;
  const int dim = model.input_dim;
  const uint64_t eval_seed = math::stream_seed(seed, math::RngStream::kEvaluation);

  EvalResult result = sized_eval_result(data.rows, iwae_samples);
  if (data.rows == 0) return result;

  // The evaluation set is uploaded for this call (never inside a training step).
  const BackendDataset eval_data = b.upload_dataset(data);
  const std::shared_ptr<void> identity_storage = b.allocate(data.rows * sizeof(int32_t));
  int32_t* identity = static_cast<int32_t*>(identity_storage.get());
  {
    std::vector<int32_t> rows_in_order(data.rows);
    for (int r = 0; r < data.rows; ++r) rows_in_order[r] = r;
    b.upload(identity, rows_in_order.data(), data.rows * sizeof(int32_t));
  }
  set_scalar(&scalars_->binarize_draw, uint64_t{0});
  const RngState binarize_rng{math::stream_seed(seed, math::RngStream::kBinarize),
                              &scalars_->binarize_draw};
  float* reduced = &scalars_->eval_reduced;

  const size_t chunk_rows = static_cast<size_t>(config_.batch_size);
  std::vector<float> recon(chunk_rows), z(chunk_rows * d), eps(chunk_rows * d),
      logvar(chunk_rows * d);
  MonteCarloEval monte_carlo(&result, config_.batch_size, iwae_samples, d, model.clamp);
  for_each_chunk(data.rows, [&](int first, int rows) {
    const size_t latent_bytes = static_cast<size_t>(rows) * d * sizeof(float);
    set_scalar(&scalars_->eval_first, int32_t{first});
    b.gather_batch(eval_data, identity, &scalars_->eval_first, rows, config_.binarize, binarize_rng,
                   buf_.x);
    encoder_forward(rows);
    // Recon at z = mu and the analytic KL (eps = 0 turns reparameterize into z = mu).
    b.fill_zero(buf_.eps, latent_bytes);
    b.reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, buf_.eps, rows, d, model.clamp,
                                   BatchReduction::kSum, buf_.z, buf_.eval_kl, reduced);
    const float* out = decoder_forward(rows);
    b.recon_loss_forward_backward(out, buf_.x, rows, dim, model.recon, BatchReduction::kSum, 1.0f,
                                  buf_.eval_recon, reduced, buf_.grad_out);
    b.download(result.recon.data() + first, buf_.eval_recon, rows * sizeof(float));
    b.download(result.kl.data() + first, buf_.eval_kl, rows * sizeof(float));
    if (iwae_samples > 0) b.download(logvar.data(), buf_.logvar, latent_bytes);
    for (int k = 0; k <= iwae_samples; ++k) {
      set_scalar(&scalars_->eval_draw, static_cast<uint64_t>(k));
      b.draw_normal_eps(rows, d, {eval_seed, &scalars_->eval_draw, static_cast<uint64_t>(first)},
                        1.0f, buf_.eps);
      // The KL of the sampled z is the analytic one again; its output goes to scratch.
      b.reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, buf_.eps, rows, d, model.clamp,
                                     BatchReduction::kSum, buf_.z, buf_.dz, reduced);
      out = decoder_forward(rows);
      b.recon_loss_forward_backward(out, buf_.x, rows, dim, model.recon, BatchReduction::kSum, 1.0f,
                                    buf_.eval_recon, reduced, buf_.grad_out);
      b.download(recon.data(), buf_.eval_recon, rows * sizeof(float));
      // The IWAE weights need z and eps too.
      if (k > 0) {
        b.download(z.data(), buf_.z, latent_bytes);
        b.download(eps.data(), buf_.eps, latent_bytes);
      }
      monte_carlo.add_sample(k, first, rows, recon.data(), z.data(), eps.data(), logvar.data());
    }
    monte_carlo.finish_chunk(first, rows);
  });

  fill_eval_means(&result);
  return result;
}

}  // namespace

std::unique_ptr<Trainer> make_cpu_trainer(const TrainConfig& config) {
  check_train_config(config);
  return std::make_unique<VaeTrainer>(config, make_cpu_backend());
}

std::unique_ptr<Trainer> make_trainer(const TrainConfig& config, std::unique_ptr<Backend> backend) {
  check_train_config(config);
  return std::make_unique<VaeTrainer>(config, std::move(backend));
}

std::unique_ptr<Trainer> make_gpu_trainer(const TrainConfig& config) {
  check_train_config(config);
  return std::make_unique<VaeTrainer>(config, make_gpu_backend(config.tf32, config.cuda_graph));
}

}  // namespace fusedvae

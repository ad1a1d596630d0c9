// @brief DyAD's training step and scoring on any backend (dyad_trainer.h, docs/dyad_model.md).
#include "host/train/dyad_trainer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "host/data/dataset.h"
#include "host/model/model_config.h"
#include "host/train/backend_arena.h"
#include "host/train/flat_parameters.h"
#include "host/train/module_registry.h"
#include "kernels/rng_streams.cuh"
#include "kernels/step_state_math.cuh"

namespace fusedvae {

void validate(const DyadTrainConfig& config) {
  validate(config.model);
  auto fail = [](const std::string& why) { throw std::invalid_argument("dyad config: " + why); };
  auto finite_at_least = [&](const char* what, float value, float low) {
    if (!std::isfinite(value) || !(value >= low))
      fail(std::string(what) + " must be finite and >= " + std::to_string(low) + ", got " +
           std::to_string(value));
  };
  if (config.batch_size < 1)
    fail("batch_size must be >= 1, got " + std::to_string(config.batch_size));
  if (config.epochs < 0) fail("epochs must be >= 0, got " + std::to_string(config.epochs));
  if (!(config.optimizer.lr > 0.0f) || !std::isfinite(config.optimizer.lr))
    fail("lr must be > 0, got " + std::to_string(config.optimizer.lr));
  if (!(config.optimizer.min_lr >= 0.0f && config.optimizer.min_lr <= config.optimizer.lr))
    fail("the cosine's final rate must lie in [0, lr]");
  finite_at_least("weight_decay", config.optimizer.weight_decay, 0.0f);
  finite_at_least("max_grad_norm", config.optimizer.max_grad_norm, 0.0f);
  finite_at_least("noise_scale", config.noise_scale, 0.0f);
  finite_at_least("nll_weight", config.nll_weight, 0.0f);
  finite_at_least("label_weight", config.label_weight, 0.0f);
  finite_at_least("smooth_l1_beta", config.smooth_l1_beta, 0.0f);
  finite_at_least("kl weight", config.kl.weight, 0.0f);
  if (config.kl.kind == KlScheduleKind::kLinear && !(config.kl.x0 >= 0.0f))
    fail("kl x0 must be >= 0");
  if (!(config.clamp.min < config.clamp.max)) fail("the logvar clamp needs min < max");
}

namespace {

// The per-step scalars, in the backend's memory.
struct DyadScalars {
  StepState state;       // for the next step
  StepState last_state;  // the last step's (its KL weight and learning rate)
  float recon_reduced;   // batch mean of the per-sample SmoothL1 sums
  float mileage_reduced;
  float kl_reduced;
  float eval_reduced;  // scoring's batch sums (not kept)
  float grad_norm;
  float grad_scale;
  int32_t batch_first;
  uint64_t zero_draw;  // the gathers' (unused) binarisation draw
};

class BackendDyadTrainer final : public DyadTrainer {
 public:
  BackendDyadTrainer(const DyadTrainConfig& config, std::unique_ptr<Backend> backend)
      : config_(config),
        backend_(std::move(backend)),
        flat_(*backend_, config_.optimizer),
        arena_(*backend_) {
    validate(config_);
    const DyadModelConfig& m = config_.model;
    arch_ = dyad_architecture(m);
    layout_ = make_param_layout(arch_.modules());
    response_ = m.response_channels();
    flat_.allocate(layout_.total);
    scalars_storage_ = backend_->allocate(sizeof(DyadScalars));
    scalars_ = static_cast<DyadScalars*>(scalars_storage_.get());

    std::vector<float> init(layout_.total);
    init_params_like_pytorch(arch_.modules(), config_.seed, init.data());
    set_params(init);
    write_state(math::initial_step_state(config_.kl, config_.optimizer, 0));
    build_layers();
    reserve_rows(config_.batch_size);
  }

  std::string device_name() const override { return backend_->device_name(); }
  const DyadTrainConfig& config() const override { return config_; }
  size_t param_count() const override { return layout_.total; }

  void set_train_data(const SnippetBatch& data) override {
    if (data.mileage == nullptr) throw std::invalid_argument("dyad training needs the mileage");
    if (data.count < config_.batch_size)
      throw std::invalid_argument(std::to_string(data.count) +
                                  " training snippets, fewer than one batch of " +
                                  std::to_string(config_.batch_size));
    backend_->invalidate_step();
    const Split split = split_channels(data);
    train_.x = backend_->upload_dataset(as_dataset(split.x, data.count, "snippets"));
    train_.u = backend_->upload_dataset(as_dataset(split.u, data.count, "decoder input"));
    train_.y = backend_->upload_dataset(as_dataset(split.y, data.count, "responses"));
    train_.m = backend_->upload_dataset(as_dataset(
        std::vector<float>(data.mileage, data.mileage + data.count), data.count, "mileage"));
    // Standardised snippets (negative values and all) are gathered as they are.
    for (BackendDataset* d : {&train_.x, &train_.u, &train_.y, &train_.m}) d->clip_to_unit = false;
    perm_storage_ = backend_->allocate(data.count * sizeof(int32_t));
    perm_ = static_cast<int32_t*>(perm_storage_.get());
    total_steps_ = static_cast<uint64_t>(config_.epochs) * batches_per_epoch();
    if (read_state().step == 0)
      write_state(math::initial_step_state(config_.kl, config_.optimizer, total_steps_));
    start_epoch(0);
  }

  int batches_per_epoch() const override { return train_.x.rows / config_.batch_size; }

  void start_epoch(int epoch) override {
    require_data();
    backend_->shuffle_indices(train_.x.rows, config_.seed, static_cast<uint64_t>(epoch), perm_);
    set_scalar(&scalars_->batch_first, int32_t{0});
    next_batch_ = 0;
  }

  void train_step(int batch_in_epoch) override {
    require_data();
    if (batch_in_epoch < 0 || batch_in_epoch >= batches_per_epoch())
      throw std::out_of_range("train_step: batch " + std::to_string(batch_in_epoch) +
                              " outside [0, " + std::to_string(batches_per_epoch()) + ")");
    const int rows = config_.batch_size;
    if (batch_in_epoch != next_batch_) set_scalar(&scalars_->batch_first, batch_in_epoch * rows);
    backend_->run_step(rows, [this, rows] {
      const RngState no_binarize{0, &scalars_->zero_draw};
      for (const auto& [data, out] : {std::pair{&train_.x, buf_.x}, std::pair{&train_.u, buf_.u},
                                      std::pair{&train_.y, buf_.y}, std::pair{&train_.m, buf_.m}})
        backend_->gather_batch(*data, perm_, &scalars_->batch_first, rows, false, no_binarize, out);
      step(rows, nullptr);
      backend_->advance_batch_start(&scalars_->batch_first, rows);
    });
    next_batch_ = batch_in_epoch + 1;
    last_rows_ = rows;
  }

  DyadLosses last_losses() override {
    if (last_rows_ == 0) return DyadLosses{};
    DyadScalars s{};
    backend_->download(&s, scalars_, sizeof(s));
    DyadLosses losses;
    losses.recon = s.recon_reduced / static_cast<float>(response_values());
    losses.mileage = s.mileage_reduced;
    losses.kl = s.kl_reduced;
    losses.kl_weight = s.last_state.kl_weight;
    losses.lr = s.last_state.lr;
    losses.loss = config_.nll_weight * losses.recon + config_.label_weight * losses.mileage +
                  losses.kl_weight * losses.kl;
    losses.step = s.state.step;
    return losses;
  }

  void train_step_on(const SnippetBatch& batch, const float* eps) override {
    if (batch.count < 1) throw std::invalid_argument("train_step_on: no snippets");
    if (batch.mileage == nullptr) throw std::invalid_argument("train_step_on: no mileage");
    reserve_rows(batch.count);
    upload_batch(batch);
    backend_->upload(buf_.m, batch.mileage, batch.count * sizeof(float));
    if (eps) backend_->upload(buf_.eps, eps, latent_floats(batch.count) * sizeof(float));
    step(batch.count, eps ? buf_.eps : nullptr);
    last_rows_ = batch.count;
  }

  DyadStepOutputs last_outputs() const override {
    const size_t rows = static_cast<size_t>(last_rows_);
    DyadStepOutputs out;
    out.mu = download(buf_.mu, latent_floats(last_rows_));
    out.logvar = download(buf_.logvar, latent_floats(last_rows_));
    out.z = download(buf_.z, latent_floats(last_rows_));
    out.pred = download(buf_.pred, rows * response_values());
    out.mileage_pred = download(buf_.mileage_pred, rows);
    out.kl_per_sample = download(buf_.kl_per_sample, rows);
    return out;
  }

  std::vector<float> params() const override { return flat_.download_params(); }
  std::vector<float> gradients() const override { return flat_.download_grads(); }
  void set_params(const std::vector<float>& params) override {
    flat_.upload_params(params, "set_params: parameters");
  }

  DyadScores score(const SnippetBatch& data) override;

 private:
  // Per-batch buffers ([rows, ...] each), carved from one arena.
  struct Buffers {
    float *x, *u, *y, *m;                  // all channels, decoder input, responses, mileage
    float *enc_out, *enc_states, *hidden;  // encoder output (unused), h_n [F, B, H], [B, F H]
    float *mu, *logvar, *z, *eps, *dz, *dmu, *dlogvar;
    float *dec_h0_rows, *dec_h0, *dec_out, *dec_states;  // latent2hidden [B, F H], [F, B, H]
    float *pred, *grad_pred;                             // [B T, Cr]
    float *mileage_hidden, *mileage_pred, *grad_mileage;
    void* mileage_aux;
    float *d_dec_out, *d_dec_h0, *d_dec_h0_rows, *d_hidden, *d_enc_states, *d_mileage_hidden;
    float *recon_per_sample, *mileage_per_sample, *kl_per_sample;
  };

  struct Split {
    std::vector<float> x, u, y;
  };

  struct TrainData {
    BackendDataset x, u, y, m;
  };

  int steps() const { return config_.model.steps; }
  int state_width() const { return config_.model.final_states() * config_.model.hidden; }
  size_t latent_floats(int rows) const { return static_cast<size_t>(rows) * config_.model.latent; }
  size_t response_values() const { return static_cast<size_t>(steps()) * response_.size(); }

  // ------------------------------------------------------------------------------------------
  // The step

  void step(int rows, const float* given_eps) {
    Backend& b = *backend_;
    const DyadModelConfig& m = config_.model;
    const int d = m.latent;
    const BatchReduction mean = BatchReduction::kMean;
    encode(rows);
    // z = mu + sigma * eps with eps already times noise_scale: the given-eps ops then give the
    // path through z its noise_scale and leave the KL term alone.
    if (given_eps == nullptr) {
      const RngState rng{math::stream_seed(config_.seed, math::RngStream::kReparam),
                         &scalars_->state.draw_index};
      b.draw_normal_eps(rows, d, rng, config_.noise_scale, buf_.eps);
    } else if (config_.noise_scale != 1.0f) {
      scale_given_eps(rows);
    }
    b.reparam_kl_forward_given_eps(buf_.mu, buf_.logvar, buf_.eps, rows, d, config_.clamp, mean,
                                   buf_.z, buf_.kl_per_sample, &scalars_->kl_reduced);
    decode(rows);
    ReconLoss smooth_l1;
    smooth_l1.kind = ReconLossKind::kSmoothL1;
    smooth_l1.smooth_l1_beta = config_.smooth_l1_beta;
    b.recon_loss_forward_backward(buf_.pred, buf_.y, rows, static_cast<int>(response_values()),
                                  smooth_l1, mean,
                                  config_.nll_weight / static_cast<float>(response_values()),
                                  buf_.recon_per_sample, &scalars_->recon_reduced, buf_.grad_pred);
    mileage_head_[0]->forward(rows, buf_.mu, buf_.mileage_hidden, buf_.mileage_aux);
    mileage_head_[1]->forward(rows, buf_.mileage_hidden, buf_.mileage_pred, nullptr);
    ReconLoss squared;
    squared.kind = ReconLossKind::kMse;
    b.recon_loss_forward_backward(buf_.mileage_pred, buf_.m, rows, 1, squared, mean,
                                  config_.label_weight, buf_.mileage_per_sample,
                                  &scalars_->mileage_reduced, buf_.grad_mileage);

    // Backward: the decoder, latent2hidden, z, then the mileage head adds into dmu, the heads
    // into the encoder's final states, the encoder.
    output_layer_->backward(rows * steps(), buf_.grad_pred, buf_.dec_out, nullptr, buf_.d_dec_out);
    update(slices_.output);
    decoder_->backward(rows, buf_.u, buf_.d_dec_out, nullptr, nullptr, buf_.d_dec_h0);
    update(slices_.decoder);
    states_to_rows(buf_.d_dec_h0, buf_.d_dec_h0_rows, rows);
    latent2hidden_->backward(rows, buf_.d_dec_h0_rows, buf_.z, nullptr, buf_.dz);
    update(slices_.latent2hidden);
    b.reparam_kl_backward_given_eps(buf_.dz, buf_.mu, buf_.logvar, buf_.eps, rows, d,
                                    &scalars_->state.kl_weight, 1.0f, config_.clamp, mean, buf_.dmu,
                                    buf_.dlogvar);
    mileage_head_[1]->backward(rows, buf_.grad_mileage, buf_.mileage_hidden, buf_.mileage_aux,
                               buf_.d_mileage_hidden);
    update(slices_.mileage[1]);
    mileage_head_[0]->backward(rows, buf_.d_mileage_hidden, buf_.mu, nullptr, buf_.dmu);
    update(slices_.mileage[0]);
    mean_head_->backward(rows, buf_.dmu, buf_.hidden, nullptr, buf_.d_hidden);
    update(slices_.mean);
    logvar_head_->backward(rows, buf_.dlogvar, buf_.hidden, nullptr, buf_.d_hidden);
    update(slices_.logvar);
    rows_to_states(buf_.d_hidden, buf_.d_enc_states, rows);
    encoder_->backward(rows, buf_.x, nullptr, buf_.d_enc_states, nullptr, nullptr);
    update(slices_.encoder);

    flat_.finish_step({&scalars_->state, &scalars_->grad_norm, &scalars_->grad_scale});
    b.copy(&scalars_->last_state, &scalars_->state, sizeof(StepState));
    b.advance_step_state(&scalars_->state, config_.kl, config_.optimizer, total_steps_);
  }

  // buf_.x -> encoder -> its final states per sample -> mu, logvar.
  void encode(int rows) {
    encoder_->forward(rows, buf_.x, nullptr, buf_.enc_out, buf_.enc_states);
    states_to_rows(buf_.enc_states, buf_.hidden, rows);
    mean_head_->forward(rows, buf_.hidden, buf_.mu, nullptr);
    logvar_head_->forward(rows, buf_.hidden, buf_.logvar, nullptr);
  }

  // buf_.z -> latent2hidden -> the decoder's initial states -> decoder over buf_.u -> buf_.pred.
  void decode(int rows) {
    latent2hidden_->forward(rows, buf_.z, buf_.dec_h0_rows, nullptr);
    rows_to_states(buf_.dec_h0_rows, buf_.dec_h0, rows);
    decoder_->forward(rows, buf_.u, buf_.dec_h0, buf_.dec_out, buf_.dec_states);
    output_layer_->forward(rows * steps(), buf_.dec_out, buf_.pred, nullptr);
  }

  // States [F, B, H] (PyTorch's h_n) <-> rows [B, F H]: state f of sample b is columns
  // [f H, (f + 1) H) of row b, so sample b's latent depends on sample b alone (DyAD's view()
  // without the transpose mixed them).
  void states_to_rows(const float* states, float* rows_out, int rows) {
    const size_t h = config_.model.hidden * sizeof(float);
    for (int f = 0; f < config_.model.final_states(); ++f)
      backend_->copy_2d(reinterpret_cast<char*>(rows_out) + f * h, state_width() * sizeof(float),
                        reinterpret_cast<const char*>(states) + f * rows * h, h, h, rows);
  }
  void rows_to_states(const float* rows_in, float* states, int rows) {
    const size_t h = config_.model.hidden * sizeof(float);
    for (int f = 0; f < config_.model.final_states(); ++f)
      backend_->copy_2d(reinterpret_cast<char*>(states) + f * rows * h, h,
                        reinterpret_cast<const char*>(rows_in) + f * h,
                        state_width() * sizeof(float), h, rows);
  }

  // A given eps (train_step_on) times noise_scale, on the host before it is uploaded again.
  void scale_given_eps(int rows) {
    std::vector<float> eps = download(buf_.eps, latent_floats(rows));
    for (float& e : eps) e *= config_.noise_scale;
    backend_->upload(buf_.eps, eps.data(), eps.size() * sizeof(float));
  }

  // ------------------------------------------------------------------------------------------
  // Set-up

  void build_layers() {
    Backend& b = *backend_;
    encoder_ = build_sequence_layer(b, arch_.encoder_rnn, layout_, flat_.params(), flat_.grads());
    decoder_ = build_sequence_layer(b, arch_.decoder_rnn, layout_, flat_.params(), flat_.grads());
    LayerContext head;  // the heads share their input: logvar's gradient adds to mu's
    mean_head_ = build_layer(b, arch_.hidden2mean, head, layout_, flat_.params(), flat_.grads());
    head.accumulate_input_grad = true;
    logvar_head_ = build_layer(b, arch_.hidden2log_v, head, layout_, flat_.params(), flat_.grads());
    latent2hidden_ =
        build_layer(b, arch_.latent2hidden, LayerContext{}, layout_, flat_.params(), flat_.grads());
    output_layer_ = build_layer(b, arch_.outputs2response, LayerContext{}, layout_, flat_.params(),
                                flat_.grads());
    // mean2mileage: Linear + ReLU (fused), Linear; its input gradient adds to the KL's dmu.
    LayerContext first, second;
    first.output_act = Activation::kRelu;
    first.accumulate_input_grad = true;
    second.input_act = Activation::kRelu;
    mileage_head_[0] =
        build_layer(b, arch_.mean2mileage[0], first, layout_, flat_.params(), flat_.grads());
    mileage_head_[1] =
        build_layer(b, arch_.mean2mileage[2], second, layout_, flat_.params(), flat_.grads());
    slices_ = {layout_.slice_of(arch_.encoder_rnn),
               layout_.slice_of(arch_.decoder_rnn),
               layout_.slice_of(arch_.hidden2mean),
               layout_.slice_of(arch_.hidden2log_v),
               layout_.slice_of(arch_.latent2hidden),
               layout_.slice_of(arch_.outputs2response),
               {layout_.slice_of(arch_.mean2mileage[0]), layout_.slice_of(arch_.mean2mileage[2])}};
  }

  // AdamW on a layer whose backward is done (flat_parameters.h: on the CPU without clipping;
  // otherwise a no-op, and finish_step updates the whole buffer).
  void update(const ParamSlice& slice) { flat_.update_layer(slice, &scalars_->state); }

  void reserve_rows(int rows) {
    encoder_->prepare(rows, steps());
    decoder_->prepare(rows, steps());
    for (LayerRun* layer : {mean_head_.get(), logvar_head_.get(), latent2hidden_.get()})
      layer->prepare_rows(rows, nullptr);
    output_layer_->prepare_rows(rows * steps(), nullptr);
    mileage_head_[0]->prepare_rows(rows, nullptr);
    mileage_head_[1]->prepare_rows(rows, mileage_head_[0].get());
    if (rows <= capacity_) return;
    backend_->invalidate_step();
    capacity_ = rows;
    arena_.begin_sizing();
    carve(rows);
    arena_.allocate_sized();
    carve(rows);
  }

  void carve(int rows) {
    const DyadModelConfig& m = config_.model;
    const size_t n = rows, t = steps();
    const size_t seq = n * t * m.directions() * m.hidden;
    const size_t states = n * state_width();
    Buffers& b = buf_;
    b.x = arena_.take<float>(n * t * m.channels);
    b.u = arena_.take<float>(n * t * m.decoder_inputs());
    b.y = arena_.take<float>(n * response_values());
    b.m = arena_.take<float>(n);
    for (float** p : {&b.enc_out, &b.dec_out, &b.d_dec_out}) *p = arena_.take<float>(seq);
    for (float** p : {&b.enc_states, &b.hidden, &b.dec_h0_rows, &b.dec_h0, &b.dec_states,
                      &b.d_dec_h0, &b.d_dec_h0_rows, &b.d_hidden, &b.d_enc_states})
      *p = arena_.take<float>(states);
    for (float** p : {&b.mu, &b.logvar, &b.z, &b.eps, &b.dz, &b.dmu, &b.dlogvar})
      *p = arena_.take<float>(latent_floats(rows));
    for (float** p : {&b.pred, &b.grad_pred}) *p = arena_.take<float>(n * response_values());
    for (float** p : {&b.mileage_hidden, &b.d_mileage_hidden})
      *p = arena_.take<float>(n * m.mileage_hidden());
    b.mileage_aux =
        arena_.take<unsigned char>(std::max<size_t>(mileage_head_[0]->aux_bytes(rows), 1));
    for (float** p : {&b.mileage_pred, &b.grad_mileage, &b.recon_per_sample, &b.mileage_per_sample,
                      &b.kl_per_sample})
      *p = arena_.take<float>(n);
  }

  // ------------------------------------------------------------------------------------------
  // Host side

  // The set's channels split three ways: all of them, the decoder's input, the responses.
  Split split_channels(const SnippetBatch& data) const {
    const DyadModelConfig& m = config_.model;
    const size_t values = static_cast<size_t>(data.count) * steps();
    Split s;
    s.x.assign(data.x, data.x + values * m.channels);
    s.u.resize(values * m.decoder_inputs());
    s.y.resize(values * response_.size());
    for (size_t i = 0; i < values; ++i) {
      const float* row = data.x + i * m.channels;
      for (int c = 0; c < m.decoder_inputs(); ++c)
        s.u[i * m.decoder_inputs() + c] = row[m.decoder_channels[c]];
      for (size_t c = 0; c < response_.size(); ++c)
        s.y[i * response_.size() + c] = row[response_[c]];
    }
    return s;
  }

  Dataset as_dataset(std::vector<float> values, int count, const char* what) const {
    Dataset d;
    d.source = what;
    d.rows = count;
    d.dim = static_cast<int>(values.size() / static_cast<size_t>(count));
    d.f32 = std::move(values);
    return d;
  }

  void upload_batch(const SnippetBatch& batch) {
    const Split s = split_channels(batch);
    backend_->upload(buf_.x, s.x.data(), s.x.size() * sizeof(float));
    backend_->upload(buf_.u, s.u.data(), s.u.size() * sizeof(float));
    backend_->upload(buf_.y, s.y.data(), s.y.size() * sizeof(float));
  }

  void require_data() const {
    if (perm_ == nullptr) throw std::logic_error("dyad trainer: call set_train_data first");
  }
  template <typename T>
  void set_scalar(T* in_backend, T value) {
    upload_value(*backend_, in_backend, value);
  }
  std::vector<float> download(const float* src, size_t count) const {
    return download_floats(*backend_, src, count);
  }
  StepState read_state() const { return download_value(*backend_, &scalars_->state); }
  void write_state(const StepState& s) { upload_value(*backend_, &scalars_->state, s); }

  DyadTrainConfig config_;
  std::unique_ptr<Backend> backend_;
  DyadArchitecture arch_;
  ParamLayout layout_;
  std::vector<int> response_;

  FlatParameters flat_;  // parameters, gradients, Adam moments
  std::shared_ptr<void> scalars_storage_, perm_storage_;
  DyadScalars* scalars_ = nullptr;
  int32_t* perm_ = nullptr;
  TrainData train_;
  uint64_t total_steps_ = 0;
  int last_rows_ = 0;
  int next_batch_ = 0;

  std::unique_ptr<SequenceRun> encoder_, decoder_;
  std::unique_ptr<LayerRun> mean_head_, logvar_head_, latent2hidden_, output_layer_;
  std::unique_ptr<LayerRun> mileage_head_[2];
  struct LayerSlices {  // each layer's parameters in flat_
    ParamSlice encoder, decoder, mean, logvar, latent2hidden, output, mileage[2];
  } slices_;

  int capacity_ = 0;
  Arena arena_;
  Buffers buf_{};
};

DyadScores BackendDyadTrainer::score(const SnippetBatch& data) {
  DyadScores result;
  result.score.resize(data.count);
  result.mu.resize(latent_floats(data.count));
  const size_t snippet_values = static_cast<size_t>(steps()) * config_.model.channels;
  ReconLoss squared;
  squared.kind = ReconLossKind::kMse;
  for (int first = 0; first < data.count; first += config_.batch_size) {
    const int rows = std::min(config_.batch_size, data.count - first);
    reserve_rows(rows);
    upload_batch({data.x + first * snippet_values, nullptr, rows});
    encode(rows);
    // z = mu: eps = 0 through the same reparameterization.
    backend_->fill_zero(buf_.eps, latent_floats(rows) * sizeof(float));
    backend_->reparam_kl_forward_given_eps(
        buf_.mu, buf_.logvar, buf_.eps, rows, config_.model.latent, config_.clamp,
        BatchReduction::kSum, buf_.z, buf_.dz, &scalars_->eval_reduced);
    decode(rows);
    backend_->recon_loss_forward_backward(
        buf_.pred, buf_.y, rows, static_cast<int>(response_values()), squared, BatchReduction::kSum,
        1.0f, buf_.recon_per_sample, &scalars_->eval_reduced, buf_.grad_pred);
    const std::vector<float> sums = download(buf_.recon_per_sample, rows);
    for (int r = 0; r < rows; ++r)
      result.score[first + r] = sums[r] / static_cast<float>(response_values());
    backend_->download(result.mu.data() + latent_floats(first), buf_.mu,
                       latent_floats(rows) * sizeof(float));
  }
  return result;
}

}  // namespace

std::unique_ptr<DyadTrainer> make_dyad_trainer(const DyadTrainConfig& config,
                                               std::unique_ptr<Backend> backend) {
  validate(config);
  return std::make_unique<BackendDyadTrainer>(config, std::move(backend));
}

}  // namespace fusedvae

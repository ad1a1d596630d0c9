// DyAD's training step (host/train/dyad_trainer.h) against the float64 NumPy reference
// (python_ref/dyad/dyad_ref.py, golden cases from python_ref/dyad/make_dyad_golden.py): the
// forward values, the loss and its parts, every parameter tensor's gradient and the parameters
// after AdamW, on the CPU and (where there is one) the GPU. Then what the reference cannot show:
// each sample's numbers depend on that sample alone (DyAD's original mixed them), and the same
// seed trains to the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "host/ops/batch_gather_cpu.h"
#include "host/train/dyad_trainer.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::GoldenCase;
using test::Tolerance;

// Tolerances as the GRU's (test_gru_cpu.cpp): the golden cases record err32, how far the same
// reference evaluated in float32 strays from float64 on each tensor; an implementation with other
// summation orders (oneDNN's blocking, the GRU's fixed-order bias sums) errs by a small multiple
// of it, plus a few roundings of the value itself.
constexpr double kErr32Factor = 8.0;
constexpr double kRel = 8 * test::kFloat32Roundoff;

Tolerance tolerance(const GoldenCase& c, const std::string& name) {
  return {test::kDenormalAbs + kErr32Factor * c.manifest.at("err32").at(name).get<double>(), kRel};
}

DyadTrainConfig config_of(const GoldenCase& c) {
  const nlohmann::json& m = c.manifest;
  DyadTrainConfig config;
  config.model.channels = m.at("channels");
  config.model.steps = m.at("steps");
  config.model.decoder_channels = m.at("decoder_channels").get<std::vector<int>>();
  config.model.hidden = m.at("hidden");
  config.model.layers = m.at("layers");
  config.model.bidirectional = m.at("bidirectional");
  config.model.latent = m.at("latent");
  config.batch_size = m.at("batch");
  config.noise_scale = m.at("noise_scale");
  config.nll_weight = m.at("nll_weight");
  config.label_weight = m.at("label_weight");
  config.smooth_l1_beta = m.at("smooth_l1_beta");
  config.clamp = {m.at("clamp_min"), m.at("clamp_max")};
  config.kl.kind = KlScheduleKind::kConstant;  // the case's weight for its one step
  config.kl.weight = m.at("kl_weight");
  const nlohmann::json& o = m.at("optimizer");
  config.optimizer.lr = o.at("lr");
  config.optimizer.beta1 = o.at("beta1");
  config.optimizer.beta2 = o.at("beta2");
  config.optimizer.eps = o.at("eps");
  config.optimizer.weight_decay = o.at("weight_decay");
  return config;
}

std::vector<float> slice(const std::vector<float>& v, size_t offset, size_t count) {
  return {v.begin() + offset, v.begin() + offset + count};
}
std::vector<double> slice(const std::vector<double>& v, size_t offset, size_t count) {
  return {v.begin() + offset, v.begin() + offset + count};
}

void check_golden_cases(BackendKind kind) {
  test::AccuracySummary summary(kind == BackendKind::kCpu ? "cpu dyad step" : "gpu dyad step");
  for (const GoldenCase& c : test::golden_cases("dyad_step")) {
    SCOPED_TRACE(c.name);
    const DyadTrainConfig config = config_of(c);
    auto trainer = make_dyad_trainer(
        config, kind == BackendKind::kCpu ? make_cpu_backend() : make_gpu_backend(false, false));
    const std::vector<float> params = c.f32("params");
    trainer->set_params(params);
    const std::vector<float> x = c.f32("x"), mileage = c.f32("mileage"), eps = c.f32("eps");
    trainer->train_step_on({x.data(), mileage.data(), config.batch_size}, eps.data());

    const DyadStepOutputs out = trainer->last_outputs();
    // `err32_name`: the tensor's entry in the case's err32 (its own name unless given).
    auto check = [&](const std::string& name, const std::vector<float>& actual,
                     const std::vector<double>& reference, std::string err32_name = "") {
      const Tolerance tol = tolerance(c, err32_name.empty() ? name : err32_name);
      summary.add(name, c.name, test::expect_close(name, actual, reference, nullptr, tol));
    };
    check("mu", out.mu, c.f64("mu"));
    check("logvar", out.logvar, c.f64("logvar"));
    check("z", out.z, c.f64("z"));
    check("pred", out.pred, c.f64("pred"));
    check("mileage_pred", out.mileage_pred, c.f64("mileage_pred"));
    check("kl_per_sample", out.kl_per_sample, c.f64("kl_per_sample"));
    const DyadLosses losses = trainer->last_losses();
    check("recon", {losses.recon}, {c.manifest.at("recon").get<double>()});
    check("mileage_loss", {losses.mileage}, {c.manifest.at("mileage_loss").get<double>()});
    check("kl", {losses.kl}, {c.manifest.at("kl").get<double>()});
    check("loss", {losses.loss}, {c.manifest.at("loss").get<double>()});

    // Every parameter tensor's gradient, and the parameters after the one AdamW step: Adam's
    // first step moves each parameter by lr * g / (|g| + eps), so a gradient error e moves it by
    // at most lr * e / (|g| + eps) (and never more than 2 lr) besides the decay's rounding.
    const std::vector<float> grads = trainer->gradients(), after = trainer->params();
    const std::vector<double> grads_ref = c.f64("grads"), after_ref = c.f64("params_after");
    const double lr = config.optimizer.lr, adam_eps = config.optimizer.eps;
    size_t offset = 0;
    for (const nlohmann::json& entry : c.manifest.at("param_names")) {
      const std::string name = entry.at(0);
      size_t count = 1;
      for (int64_t d : entry.at(1).get<std::vector<int64_t>>()) count *= d;
      const Tolerance grad_tol = tolerance(c, "grads:" + name);
      check("grad " + name, slice(grads, offset, count), slice(grads_ref, offset, count),
            "grads:" + name);
      for (size_t i = offset; i < offset + count; ++i) {
        const double moved =
            std::min(2 * lr, lr * kErr32Factor * (grad_tol.abs + kRel * std::fabs(grads_ref[i])) /
                                 (std::fabs(grads_ref[i]) + adam_eps));
        const double tol = moved + 4 * test::kFloat32Roundoff * std::fabs(after_ref[i]);
        ASSERT_LE(std::fabs(after[i] - after_ref[i]), tol)
            << "params_after " << name << " [" << i - offset << "]";
      }
      offset += count;
    }
    EXPECT_EQ(offset, params.size()) << "the golden case's tensors do not cover the parameters";

    // The snippet score at z = mu, with the parameters before the step.
    trainer->set_params(params);
    const DyadScores scores = trainer->score({x.data(), nullptr, config.batch_size});
    summary.add(
        "score", c.name,
        test::expect_close("score", scores.score, c.f64("score"), nullptr, tolerance(c, "pred")));
  }
}

TEST(DyadStepCpu, GoldenCases) {
  check_golden_cases(BackendKind::kCpu);
}

TEST(DyadStepGpu, GoldenCases) {
  FUSEDVAE_REQUIRE_GPU();
  check_golden_cases(BackendKind::kGpu);
}

// A small model over random snippets (never zeros), normalised-looking values.
DyadTrainConfig small_config(int batch) {
  DyadTrainConfig config;
  config.model.channels = 5;
  config.model.steps = 7;
  config.model.decoder_channels = {1, 3};
  config.model.hidden = 6;
  config.model.layers = 2;
  config.model.latent = 3;
  config.batch_size = batch;
  config.kl.kind = KlScheduleKind::kLinear;
  config.kl.weight = 0.1f;
  config.kl.x0 = 3;
  config.optimizer.lr = 3e-3f;
  config.optimizer.weight_decay = 1e-6f;
  config.seed = 11;
  return config;
}

// Changing sample j changes nothing of sample i, bit for bit: its latent, its reconstruction, its
// mileage, its KL and its score, at every batch size (1 included: DyAD's squeeze() dropped the
// batch dimension there).
TEST(DyadStepCpu, EachSampleDependsOnItselfAlone) {
  for (int batch : {1, 2, 5}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    const DyadTrainConfig config = small_config(batch);
    const size_t per_sample = static_cast<size_t>(config.model.steps) * config.model.channels;
    const std::vector<float> x = test::random_floats(batch * per_sample, -2.0f, 2.0f, 3);
    const std::vector<float> mileage = test::random_floats(batch, 0.0f, 1.0f, 4);
    const std::vector<float> eps = test::random_floats(batch * config.model.latent, -2, 2, 5);
    auto trainer = make_dyad_trainer(config, make_cpu_backend());
    const std::vector<float> params = trainer->params();

    auto run = [&](const std::vector<float>& input) {
      trainer->set_params(params);
      trainer->train_step_on({input.data(), mileage.data(), batch}, eps.data());
      DyadStepOutputs out = trainer->last_outputs();
      trainer->set_params(params);
      return std::make_pair(out, trainer->score({input.data(), nullptr, batch}));
    };
    const auto [base, base_scores] = run(x);
    for (int j = 0; j < batch; ++j) {
      std::vector<float> changed = x;
      for (size_t k = 0; k < per_sample; ++k) changed[j * per_sample + k] *= -1.5f;
      const auto [out, scores] = run(changed);
      const int d = config.model.latent;
      const size_t pred_width = static_cast<size_t>(config.model.steps) * config.model.responses();
      bool sample_j_moved = false;
      for (int i = 0; i < batch; ++i) {
        auto same = [&](const std::vector<float>& a, const std::vector<float>& b, size_t width) {
          return std::equal(a.begin() + i * width, a.begin() + (i + 1) * width,
                            b.begin() + i * width);
        };
        const bool all_same = same(out.mu, base.mu, d) && same(out.logvar, base.logvar, d) &&
                              same(out.z, base.z, d) && same(out.pred, base.pred, pred_width) &&
                              same(out.mileage_pred, base.mileage_pred, 1) &&
                              same(out.kl_per_sample, base.kl_per_sample, 1) &&
                              same(scores.score, base_scores.score, 1) &&
                              same(scores.mu, base_scores.mu, d);
        if (i == j)
          sample_j_moved = !all_same;
        else
          EXPECT_TRUE(all_same) << "sample " << i << " changed when sample " << j << " did";
      }
      EXPECT_TRUE(sample_j_moved) << "changing sample " << j << " changed nothing of it";
    }
  }
}

// Two runs of the same seed give the same parameters bit for bit; another seed does not.
TEST(DyadStepCpu, SameSeedTrainsToTheSameBits) {
  const DyadTrainConfig config = small_config(4);
  const int count = 18;
  const size_t per_sample = static_cast<size_t>(config.model.steps) * config.model.channels;
  const std::vector<float> x = test::random_floats(count * per_sample, -2.0f, 2.0f, 6);
  const std::vector<float> mileage = test::random_floats(count, 0.0f, 1.0f, 7);
  auto train = [&](uint64_t seed) {
    DyadTrainConfig c = config;
    c.seed = seed;
    c.epochs = 2;
    auto trainer = make_dyad_trainer(c, make_cpu_backend());
    trainer->set_train_data({x.data(), mileage.data(), count});
    for (int epoch = 0; epoch < c.epochs; ++epoch) {
      trainer->start_epoch(epoch);
      for (int b = 0; b < trainer->batches_per_epoch(); ++b) trainer->train_step(b);
    }
    EXPECT_TRUE(std::isfinite(trainer->last_losses().loss));
    return trainer->params();
  };
  const std::vector<float> first = train(11), again = train(11), other = train(12);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other);
}

// The resident path (set_train_data, the gathers of the shuffled batch, Philox eps) trains exactly
// as train_step_on given the same snippets in the shuffle's order: the gathers hand the
// standardised values over unchanged (no clipping to [0, 1], negative values and all).
TEST(DyadStepCpu, ResidentBatchesTrainAsTheSameSnippetsGiven) {
  DyadTrainConfig config = small_config(6);
  config.noise_scale = 0.3f;
  const int count = 6;
  const size_t per_sample = static_cast<size_t>(config.model.steps) * config.model.channels;
  const std::vector<float> x = test::random_floats(count * per_sample, -3.0f, 3.0f, 8);
  const std::vector<float> mileage = test::random_floats(count, 0.0f, 1.0f, 9);
  auto resident = make_dyad_trainer(config, make_cpu_backend());
  resident->set_train_data({x.data(), mileage.data(), count});
  resident->start_epoch(0);
  resident->train_step(0);

  std::vector<int32_t> perm(count);
  cpu::shuffle_indices(count, config.seed, 0, perm.data());
  std::vector<float> shuffled_x, shuffled_mileage;
  for (int32_t row : perm) {
    shuffled_x.insert(shuffled_x.end(), x.begin() + row * per_sample,
                      x.begin() + (row + 1) * per_sample);
    shuffled_mileage.push_back(mileage[row]);
  }
  auto given = make_dyad_trainer(config, make_cpu_backend());
  given->train_step_on({shuffled_x.data(), shuffled_mileage.data(), count}, nullptr);
  EXPECT_EQ(resident->params(), given->params());
  EXPECT_EQ(resident->last_losses().loss, given->last_losses().loss);
}

TEST(DyadConfig, BadSettingsAreOneLineErrors) {
  auto rejects = [](DyadTrainConfig c, const std::string& words) {
    try {
      make_dyad_trainer(c, make_cpu_backend());
      ADD_FAILURE() << "accepted: " << words;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  };
  DyadTrainConfig c = small_config(2);
  c.model.decoder_channels = {1, 9};
  rejects(c, "decoder channel 9");
  c = small_config(2);
  c.model.decoder_channels = {0, 1, 2, 3, 4};
  rejects(c, "no response channel");
  c = small_config(2);
  c.model.decoder_channels = {2, 2};
  rejects(c, "twice");
  c = small_config(2);
  c.noise_scale = NAN;
  rejects(c, "noise_scale");
  c = small_config(0);
  rejects(c, "batch_size");
}

}  // namespace
}  // namespace fusedvae

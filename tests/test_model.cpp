// @brief The flat parameter layout (carving order, PyTorch names), the initialisation and the
// validation of a model configuration.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/model/gru_module.h"
#include "host/model/model_config.h"
#include "host/ops/gru_cpu.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

ModelConfig odd_config() {
  ModelConfig c;
  c.input_dim = 13;
  c.hidden = {9, 7};
  c.latent_dim = 3;
  return c;
}

TEST(MlpVae, IsLinearAndActivationModulesWithPytorchNames) {
  const VaeArchitecture arch = mlp_vae(odd_config());
  auto describe = [](const Module& m) {
    return std::string(m.kind->kind_name) + " " + m.name + " " + std::to_string(m.in) + "->" +
           std::to_string(m.out);
  };
  std::vector<std::string> encoder, decoder;
  for (const Module& m : arch.encoder) encoder.push_back(describe(m));
  for (const Module& m : arch.decoder) decoder.push_back(describe(m));
  EXPECT_EQ(encoder,
            (std::vector<std::string>{"linear encoder.0 13->9", "activation encoder.0.act 9->9",
                                      "linear encoder.1 9->7", "activation encoder.1.act 7->7"}));
  EXPECT_EQ(describe(arch.mu), "linear encoder.mu 7->3");
  EXPECT_EQ(describe(arch.logvar), "linear encoder.logvar 7->3");
  EXPECT_EQ(decoder,
            (std::vector<std::string>{"linear decoder.0 3->7", "activation decoder.0.act 7->7",
                                      "linear decoder.1 7->9", "activation decoder.1.act 9->9",
                                      "linear decoder.out 9->13"}));
  for (const Module& m : arch.encoder)
    if (m.is(activation_definition())) EXPECT_EQ(m.activation, Activation::kRelu);
}

TEST(ParamLayout, CarvesTensorsInModuleOrderWithPytorchNames) {
  const ParamLayout layout = make_param_layout(odd_config());
  struct Expected {
    const char* name;
    int in, out;
  };
  const Expected expected[] = {{"encoder.0", 13, 9},     {"encoder.1", 9, 7}, {"encoder.mu", 7, 3},
                               {"encoder.logvar", 7, 3}, {"decoder.0", 3, 7}, {"decoder.1", 7, 9},
                               {"decoder.out", 9, 13}};
  ASSERT_EQ(layout.tensors.size(), 14u);
  size_t cursor = 0;
  for (size_t i = 0; i < 7; ++i) {
    SCOPED_TRACE(expected[i].name);
    const ParamTensor& weight = layout.tensors[2 * i];
    const ParamTensor& bias = layout.tensors[2 * i + 1];
    EXPECT_EQ(weight.name, std::string(expected[i].name) + ".weight");
    EXPECT_EQ(weight.shape, (std::vector<int64_t>{expected[i].out, expected[i].in}));
    EXPECT_EQ(weight.offset, cursor);  // contiguous, weight before bias
    cursor += static_cast<size_t>(expected[i].in) * expected[i].out;
    EXPECT_EQ(bias.name, std::string(expected[i].name) + ".bias");
    EXPECT_EQ(bias.shape, (std::vector<int64_t>{expected[i].out}));
    EXPECT_EQ(bias.offset, cursor);
    cursor += expected[i].out;
  }
  EXPECT_EQ(layout.total, cursor);
}

// The layout model_spec.py prints for a command line, against the C++ one.
void expect_python_layout(const std::string& arguments, const ParamLayout& layout) {
  const std::string command = std::string(FUSEDVAE_PYTHON) + " " + test::source_dir() +
                              "/python_ref/model_spec.py " + arguments;
  SCOPED_TRACE(command);
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string text;
  char chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof(chunk), pipe)) > 0;) text.append(chunk, n);
  ASSERT_EQ(pclose(pipe), 0) << text;
  const nlohmann::json python = nlohmann::json::parse(text);
  ASSERT_EQ(python.at("tensors").size(), layout.tensors.size());
  for (size_t i = 0; i < layout.tensors.size(); ++i) {
    const nlohmann::json& t = python.at("tensors")[i];
    EXPECT_EQ(t[0].get<std::string>(), layout.tensors[i].name);
    EXPECT_EQ(t[1].get<std::vector<int64_t>>(), layout.tensors[i].shape) << layout.tensors[i].name;
    EXPECT_EQ(t[2].get<size_t>(), layout.tensors[i].offset) << layout.tensors[i].name;
  }
  EXPECT_EQ(python.at("total").get<size_t>(), layout.total);
}

// A module as model_spec.py describes it.
nlohmann::json module_json(const Module& m) {
  if (m.is(gru_definition()))
    return {{"kind", "gru"},      {"name", m.name},     {"in", m.in},
            {"hidden", m.hidden}, {"layers", m.layers}, {"bidirectional", m.bidirectional},
            {"out", m.out}};
  if (m.is(linear_definition()))
    return {{"kind", "linear"}, {"name", m.name}, {"in", m.in}, {"out", m.out}};
  return {{"kind", "activation"},
          {"function", m.activation == Activation::kTanh ? "tanh" : "relu"}};
}

nlohmann::json architecture_json(const VaeArchitecture& arch) {
  nlohmann::json encoder = nlohmann::json::array(), decoder = nlohmann::json::array();
  for (const Module& m : arch.encoder) encoder.push_back(module_json(m));
  for (const Module& m : arch.decoder) decoder.push_back(module_json(m));
  return {{"encoder", encoder},
          {"mu", module_json(arch.mu)},
          {"logvar", module_json(arch.logvar)},
          {"decoder", decoder}};
}

// A DyAD-like sequence VAE: bidirectional 2-layer GRU encoder, GRU decoder. Only its layout is
// defined (no training step runs GRU modules yet).
VaeArchitecture gru_vae() {
  VaeArchitecture arch;
  arch.encoder = {gru_module("encoder.rnn", 7, 13, 2, true)};
  arch.mu = linear_module("encoder.mu", 26, 3);
  arch.logvar = linear_module("encoder.logvar", 26, 3);
  arch.decoder = {gru_module("decoder.rnn", 3, 5, 1, false),
                  activation_module("decoder.rnn.act", 5, Activation::kTanh),
                  linear_module("decoder.out", 5, 7)};
  return arch;
}

// python_ref/model_spec.py is the same description in Python (the float64 reference model and
// the PyTorch loaders derive their layout from it): both must carve the same tensors, for the MLP
// VAEs the command line builds and for a description with GRU modules.
TEST(ParamLayout, PythonDescriptionCarvesTheSameTensors) {
  ModelConfig bare = odd_config();
  bare.hidden.clear();
  ModelConfig wide;
  wide.hidden = {1024, 512};
  wide.latent_dim = 64;
  for (const ModelConfig& config : {odd_config(), bare, ModelConfig{}, wide}) {
    std::string hidden;
    for (int w : config.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(w);
    expect_python_layout("--input-dim " + std::to_string(config.input_dim) + " --hidden '" +
                             hidden + "' --latent " + std::to_string(config.latent_dim),
                         make_param_layout(config));
  }
  const VaeArchitecture arch = gru_vae();
  expect_python_layout("--layout-of '" + architecture_json(arch).dump() + "'",
                       make_param_layout(arch));
}

// The GRU module's tensors are nn.GRU's, carved where the GRU op (host/ops/gru_cpu.h) reads them.
TEST(ParamLayout, GruModuleCarvesTheGruOpsParameterOrder) {
  const VaeArchitecture arch = gru_vae();
  const ParamLayout layout = make_param_layout(arch);
  const Module& rnn = arch.encoder[0];
  const size_t start = layout.offset_of(rnn);
  cpu::GruShape shape;
  shape.batch = shape.steps = 1;
  shape.input = rnn.in;
  shape.hidden = rnn.hidden;
  shape.layers = rnn.layers;
  shape.bidirectional = rnn.bidirectional;
  EXPECT_EQ(rnn.out, 26);
  for (int layer = 0; layer < 2; ++layer)
    for (int d = 0; d < 2; ++d) {
      const std::string suffix = "_l" + std::to_string(layer) + (d ? "_reverse" : "");
      const cpu::GruTensorOffsets o = cpu::gru_param_offsets(shape, layer, d);
      const int64_t in = layer == 0 ? 7 : 26;
      const ParamTensor& w_ih = layout.at("encoder.rnn.weight_ih" + suffix);
      EXPECT_EQ(w_ih.offset - start, o.weight_ih) << suffix;
      EXPECT_EQ(w_ih.shape, (std::vector<int64_t>{39, in}));
      const ParamTensor& w_hh = layout.at("encoder.rnn.weight_hh" + suffix);
      EXPECT_EQ(w_hh.offset - start, o.weight_hh) << suffix;
      EXPECT_EQ(w_hh.shape, (std::vector<int64_t>{39, 13}));
      EXPECT_EQ(layout.at("encoder.rnn.bias_ih" + suffix).offset - start, o.bias_ih) << suffix;
      EXPECT_EQ(layout.at("encoder.rnn.bias_hh" + suffix).offset - start, o.bias_hh) << suffix;
      EXPECT_EQ(layout.at("encoder.rnn.bias_hh" + suffix).shape, (std::vector<int64_t>{39}));
    }
  EXPECT_EQ(layout.offset_of(arch.mu) - start, cpu::gru_param_count(shape));
}

TEST(ParamLayout, NoHiddenLayersAndTheDefaultModel) {
  ModelConfig c = odd_config();
  c.hidden.clear();
  const ParamLayout bare = make_param_layout(c);
  EXPECT_EQ(bare.total, 2u * (13 * 3 + 3) + (3 * 13 + 13));
  // 784-400-20: 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784.
  EXPECT_EQ(make_param_layout(ModelConfig{}).total, 652824u);
}

TEST(InitParams, UniformWithinFanInBoundsAndReproducible) {
  const VaeArchitecture arch = mlp_vae(odd_config());
  const ParamLayout layout = make_param_layout(arch);
  std::vector<float> a(layout.total), b(layout.total), other(layout.total);
  init_params_like_pytorch(arch, 7, a.data());
  init_params_like_pytorch(arch, 7, b.data());
  init_params_like_pytorch(arch, 8, other.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  for (const Module* module : arch.modules()) {
    if (!module->is(linear_definition())) continue;
    const float bound = 1.0f / std::sqrt(static_cast<float>(module->in));
    const size_t begin = layout.offset_of(*module);
    const size_t end = layout.at(module->name + ".bias").offset + module->out;
    double sum = 0.0, sum_sq = 0.0;
    for (size_t i = begin; i < end; ++i) {
      EXPECT_LE(std::fabs(a[i]), bound) << module->name << " [" << i << "]";
      sum += a[i];
      sum_sq += static_cast<double>(a[i]) * a[i];
    }
    // U(-b, b) has variance b^2 / 3: the sample variance of >= 21 values lies within a factor of
    // 2 of it with overwhelming probability (and fails for a constant or a wrong bound).
    const double n = static_cast<double>(end - begin);
    const double variance = sum_sq / n - (sum / n) * (sum / n);
    EXPECT_GT(variance, bound * bound / 6.0) << module->name;
    EXPECT_LT(variance, bound * bound / 1.5) << module->name;
  }
}

// nn.GRU's initialisation: every tensor ~ U(-1/sqrt(H), 1/sqrt(H)), whatever its fan-in.
TEST(InitParams, GruUniformWithinOneOverSqrtHidden) {
  const VaeArchitecture arch = gru_vae();
  const ParamLayout layout = make_param_layout(arch);
  std::vector<float> params(layout.total);
  init_params_like_pytorch(arch, 3, params.data());
  for (const Module* module : {&arch.encoder[0], &arch.decoder[0]}) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(module->hidden));
    size_t begin = layout.offset_of(*module), end = begin;
    for (const ParamTensor& t : layout.tensors)
      if (t.name.rfind(module->name + ".", 0) == 0) end = t.offset + t.size();
    double sum_sq = 0.0, max_abs = 0.0;
    for (size_t i = begin; i < end; ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(params[i])));
      sum_sq += static_cast<double>(params[i]) * params[i];
    }
    EXPECT_LE(max_abs, bound) << module->name;
    EXPECT_GT(max_abs, 0.9 * bound) << module->name;  // fills the range, not 1/sqrt(in)'s
    const double variance = sum_sq / static_cast<double>(end - begin);
    EXPECT_GT(variance, bound * bound / 6.0) << module->name;
    EXPECT_LT(variance, bound * bound / 1.5) << module->name;
  }
}

TEST(ModelConfigValidate, RejectsBadSizesWithAReason) {
  auto expect_rejected = [](ModelConfig c, const char* needle) {
    try {
      validate(c);
      ADD_FAILURE() << "accepted a config with " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  ModelConfig c = odd_config();
  c.input_dim = 0;
  expect_rejected(c, "input_dim");
  c = odd_config();
  c.latent_dim = -1;
  expect_rejected(c, "latent_dim");
  c = odd_config();
  c.hidden = {9, 0};
  expect_rejected(c, "hidden layer 1");
  c = odd_config();
  c.clamp.min = 3.0f;
  c.clamp.max = 3.0f;
  expect_rejected(c, "clamp");
  c = odd_config();
  c.recon.kind = ReconLossKind::kGaussian;
  c.recon.gaussian_sigma = 0.0f;
  expect_rejected(c, "sigma");
  EXPECT_NO_THROW(validate(odd_config()));
}

TEST(Activation, NamesRoundTrip) {
  for (Activation a : {Activation::kRelu, Activation::kTanh}) {
    Activation parsed = a == Activation::kRelu ? Activation::kTanh : Activation::kRelu;
    EXPECT_TRUE(parse_activation(activation_name(a), &parsed));
    EXPECT_EQ(parsed, a);
  }
  Activation unused;
  EXPECT_FALSE(parse_activation("gelu", &unused));
}

}  // namespace
}  // namespace fusedvae

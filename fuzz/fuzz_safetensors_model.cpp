// @brief libFuzzer harness: a model.safetensors checkpoint, decoded and checked against the
// architecture the seed corpus was written for (30-16-2), as eval and --resume do; its
// input_dim is read from __metadata__ first, as open_run does.
#include <string>

#include "fuzz/fuzz_support.h"
#include "host/cli/checkpoint.h"
#include "host/io/safetensors.h"

FUSEDVAE_FUZZ_TARGET(safetensors_model) {
  const std::vector<unsigned char> bytes(data, data + size);
  fusedvae::fuzz::expect_no_crash([&] {
    const fusedvae::io::SafetensorsFile file =
        fusedvae::io::decode_safetensors(bytes, "model.safetensors");
    fusedvae::ModelConfig model;
    model.hidden = {16};
    model.latent_dim = 2;
    const auto dim = file.metadata.find("input_dim");
    model.input_dim = std::stoi(dim == file.metadata.end() ? "30" : dim->second);
    fusedvae::validate(model);
    fusedvae::cli::CheckpointInfo info;
    fusedvae::cli::decode_model(bytes, "model.safetensors", model, &info);
  });
  return 0;
}

// @brief libFuzzer harness: a model.safetensors checkpoint, decoded and checked against the
// architecture the seed corpus was written for (30-16-2), as eval and --resume do; its
// input_dim is read from __metadata__ first, as open_run does.
#include <stdexcept>
#include <string>

#include "fuzz/fuzz_support.h"
#include "host/cli/checkpoint.h"
#include "host/io/safetensors.h"

FUSEDVAE_FUZZ_TARGET(safetensors_model) {
  const std::vector<unsigned char> bytes(data, data + size);
  fusedvae::fuzz::expect_no_crash(
      [&] {
        const fusedvae::io::SafetensorsFile file =
            fusedvae::io::decode_safetensors(bytes, "model.safetensors");
        fusedvae::ModelConfig model;
        model.hidden = {16};
        model.latent_dim = 2;
        model.input_dim = fusedvae::cli::checkpoint_input_dim(file, "model.safetensors");
        try {  // as open_run does
          fusedvae::validate(model);
        } catch (const std::exception& e) {
          throw std::runtime_error(std::string("model.safetensors: ") + e.what());
        }
        fusedvae::cli::CheckpointInfo info;
        fusedvae::cli::decode_model(bytes, "model.safetensors", model, &info);
      },
      "model.safetensors");
  return 0;
}

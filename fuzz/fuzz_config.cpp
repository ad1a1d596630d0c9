// @brief libFuzzer harness: a JSON config file (`train --config`), parsed, applied over the
// defaults and cross-checked, then written back as config.json is.
#include <nlohmann/json.hpp>

#include "fuzz/fuzz_support.h"
#include "host/cli/run_config.h"

FUSEDVAE_FUZZ_TARGET(config) {
  fusedvae::fuzz::expect_no_crash([&] {
    const nlohmann::json object = nlohmann::json::parse(data, data + size);
    fusedvae::cli::RunConfig config;
    fusedvae::cli::apply_json(object, "fuzz.json", &config);
    fusedvae::cli::validate(config);
    fusedvae::cli::to_json(config).dump();
  });
  return 0;
}

// @brief libFuzzer harness: an optimizer.safetensors checkpoint (Adam moments, step counters)
// decoded for a model of 1122 parameters (the seed corpus's 30-16-2).
#include "fuzz/fuzz_support.h"
#include "host/cli/checkpoint.h"

FUSEDVAE_FUZZ_TARGET(safetensors_optimizer) {
  const std::vector<unsigned char> bytes(data, data + size);
  fusedvae::fuzz::expect_no_crash(
      [&] {
        fusedvae::cli::CheckpointInfo info;
        fusedvae::cli::decode_optimizer(bytes, "optimizer.safetensors", 1122, &info);
      },
      "optimizer.safetensors");
  return 0;
}

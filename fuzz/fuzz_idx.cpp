// @brief libFuzzer harness: an IDX image file (raw; gzip too when the input starts with its magic).
#include "fuzz/fuzz_support.h"
#include "host/data/idx.h"

FUSEDVAE_FUZZ_TARGET(idx) {
  fusedvae::fuzz::expect_no_crash(
      [&] { fusedvae::data::decode_idx(fusedvae::fuzz::bytes_of(data, size), "fuzz-idx3-ubyte"); },
      "fuzz-idx3-ubyte");
  return 0;
}

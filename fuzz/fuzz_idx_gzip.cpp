// @brief libFuzzer harness: a gzipped IDX image file. The input always goes through zlib's inflate
// (the gzip magic is put in front when the mutator dropped it), so that the stream handling of
// host/data/file_bytes.cpp (truncation, corruption, concatenated members, the size hint) is what
// gets fuzzed.
#include "fuzz/fuzz_support.h"
#include "host/data/idx.h"

FUSEDVAE_FUZZ_TARGET(idx_gzip) {
  std::vector<uint8_t> bytes = fusedvae::fuzz::bytes_of(data, size);
  if (bytes.size() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b)
    bytes.insert(bytes.begin(), {0x1f, 0x8b});
  fusedvae::fuzz::expect_no_crash(
      [&] { fusedvae::data::decode_idx(std::move(bytes), "fuzz-idx3-ubyte.gz"); },
      "fuzz-idx3-ubyte.gz");
  return 0;
}

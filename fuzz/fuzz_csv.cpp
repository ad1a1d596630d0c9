// @brief libFuzzer harness: a CSV dataset. The first byte picks the label column (none, an index,
// a header name), the rest is the file.
#include "fuzz/fuzz_support.h"
#include "host/data/csv.h"

FUSEDVAE_FUZZ_TARGET(csv) {
  if (size == 0) return 0;
  static const char* const kLabelColumns[] = {"", "0", "2", "label", "99999999"};
  const std::string label = kLabelColumns[data[0] % 5];
  const std::vector<uint8_t> text = fusedvae::fuzz::bytes_of(data + 1, size - 1);
  fusedvae::fuzz::expect_no_crash([&] { fusedvae::data::decode_csv(text, "fuzz.csv", label); },
                                  "fuzz.csv");
  return 0;
}

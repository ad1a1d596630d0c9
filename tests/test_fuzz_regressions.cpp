// @brief Every fuzz harness (fuzz/) replayed, in every build, on its committed seeds and on every
// input that once crashed it (fuzz/regressions/NAME/): each must end in a std::exception or
// succeed, never crash. Under the sanitizer build (build-san) the same replay runs with ASan and
// UBSan.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

int fuzz_idx(const uint8_t* data, size_t size);
int fuzz_idx_gzip(const uint8_t* data, size_t size);
int fuzz_npy(const uint8_t* data, size_t size);
int fuzz_csv(const uint8_t* data, size_t size);
int fuzz_safetensors_model(const uint8_t* data, size_t size);
int fuzz_safetensors_optimizer(const uint8_t* data, size_t size);
int fuzz_config(const uint8_t* data, size_t size);
int fuzz_cli(const uint8_t* data, size_t size);
int fuzz_snippets(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;
using Harness = int (*)(const uint8_t*, size_t);

// Feeds every file of fuzz/corpus/NAME and fuzz/regressions/NAME to `harness`; returns the count.
int replay(const std::string& name, Harness harness) {
  int count = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(FUSEDVAE_FUZZ_DIR) / kind / name;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::ifstream in(entry.path(), std::ios::binary);
      const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                       std::istreambuf_iterator<char>());
      SCOPED_TRACE(entry.path().string());
      EXPECT_EQ(harness(bytes.data(), bytes.size()), 0);
      ++count;
    }
  }
  return count;
}

TEST(FuzzRegressions, Idx) {
  EXPECT_GT(replay("idx", fuzz_idx), 0);
}
TEST(FuzzRegressions, IdxGzip) {
  EXPECT_GT(replay("idx_gzip", fuzz_idx_gzip), 0);
}
TEST(FuzzRegressions, Npy) {
  EXPECT_GT(replay("npy", fuzz_npy), 0);
}
TEST(FuzzRegressions, Csv) {
  EXPECT_GT(replay("csv", fuzz_csv), 0);
}
TEST(FuzzRegressions, SafetensorsModel) {
  EXPECT_GT(replay("safetensors_model", fuzz_safetensors_model), 0);
}
TEST(FuzzRegressions, SafetensorsOptimizer) {
  EXPECT_GT(replay("safetensors_optimizer", fuzz_safetensors_optimizer), 0);
}
TEST(FuzzRegressions, Config) {
  EXPECT_GT(replay("config", fuzz_config), 0);
}
TEST(FuzzRegressions, Cli) {
  EXPECT_GT(replay("cli", fuzz_cli), 0);
}
TEST(FuzzRegressions, Snippets) {
  EXPECT_GT(replay("snippets", fuzz_snippets), 0);
}

}  // namespace

// @brief safetensors: round trip, the header as other readers see it, clear errors on corrupt or
// truncated files, and atomic replacement that keeps the old file when a write fails.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>

#include <nlohmann/json.hpp>

#include "host/io/safetensors.h"
#include "tests/support/test_support.h"

namespace fusedvae::io {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("fusedvae_test_st_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

SafetensorsFile sample_file() {
  SafetensorsFile file;
  const std::vector<float> w = {1.5f, -2.25f, 3e-38f, 7.0f, 1e30f, -0.0f};  // [3, 2]
  const std::vector<float> b = {0.125f, -9.0f, 4.0f};
  file.tensors["encoder.0.weight"] = Tensor::from_floats(w.data(), {3, 2});
  file.tensors["encoder.0.bias"] = Tensor::from_floats(b.data(), {3});
  file.tensors["step"] = Tensor::from_u64({12345678901234ull});
  file.metadata["latent_dim"] = "2";
  file.metadata["activation"] = "relu";
  return file;
}

TEST(Safetensors, RoundTripKeepsNamesShapesBitsAndMetadata) {
  const fs::path path = temp_dir("roundtrip") / "model.safetensors";
  const SafetensorsFile original = sample_file();
  write_safetensors(path.string(), original);
  const SafetensorsFile back = read_safetensors(path.string());
  ASSERT_EQ(back.tensors.size(), original.tensors.size());
  for (const auto& [name, tensor] : original.tensors) {
    const Tensor& t = back.at(name, path.string());
    EXPECT_EQ(t.dtype, tensor.dtype) << name;
    EXPECT_EQ(t.shape, tensor.shape) << name;
    EXPECT_EQ(t.bytes, tensor.bytes) << name;
  }
  EXPECT_EQ(back.metadata, original.metadata);
  EXPECT_EQ(back.at("step", "x").to_u64()[0], 12345678901234ull);
  EXPECT_EQ(back.at("encoder.0.weight", "x").to_floats()[4], 1e30f);
}

// What a different reader (safetensors in Python) relies on: the 8-byte length, a JSON object with
// dtype/shape/data_offsets, 8-byte alignment of the data, offsets that tile the data exactly.
TEST(Safetensors, HeaderIsPlainJsonWithContiguousOffsets) {
  const std::vector<unsigned char> bytes = encode_safetensors(sample_file());
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + n);
  EXPECT_EQ(header["__metadata__"]["latent_dim"], "2");
  EXPECT_EQ(header["encoder.0.weight"]["dtype"], "F32");
  EXPECT_EQ(header["encoder.0.weight"]["shape"], nlohmann::json::array({3, 2}));
  EXPECT_EQ(header["step"]["dtype"], "U64");
  uint64_t total = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    total += entry["data_offsets"][1].get<uint64_t>() - entry["data_offsets"][0].get<uint64_t>();
  }
  EXPECT_EQ(total, bytes.size() - 8 - n);
}

void expect_error_mentions(const std::vector<unsigned char>& bytes, const std::string& fragment) {
  try {
    decode_safetensors(bytes, "bad.safetensors");
    FAIL() << "no exception for a file that should mention '" << fragment << "'";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("bad.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

TEST(Safetensors, CorruptAndTruncatedFilesAreClearErrors) {
  const std::vector<unsigned char> good = encode_safetensors(sample_file());
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);

  expect_error_mentions({1, 2, 3}, "not a safetensors file");
  std::vector<unsigned char> truncated(good.begin(), good.end() - 5);
  expect_error_mentions(truncated, "outside the file");
  std::vector<unsigned char> header_cut(good.begin(), good.begin() + 8 + n / 2);
  expect_error_mentions(header_cut, "header length");
  std::vector<unsigned char> bad_json = good;
  bad_json[8] = '[';
  bad_json[9] = '}';
  expect_error_mentions(bad_json, "not valid JSON");

  // A header that lies about the shape.
  auto rewrite = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto header = nlohmann::json::parse(good.begin() + 8, good.begin() + 8 + n);
    edit(header);
    std::string text = header.dump();
    const uint64_t len = text.size();
    std::vector<unsigned char> out(8 + len);
    std::memcpy(out.data(), &len, 8);
    std::memcpy(out.data() + 8, text.data(), len);
    out.insert(out.end(), good.begin() + 8 + n, good.end());
    return out;
  };
  expect_error_mentions(rewrite([](nlohmann::json& h) {
                          h["encoder.0.weight"]["shape"] = {4, 2};
                        }),
                        "its shape needs");
  expect_error_mentions(rewrite([](nlohmann::json& h) { h["encoder.0.bias"]["dtype"] = "F16"; }),
                        "unsupported dtype");
  expect_error_mentions(rewrite([](nlohmann::json& h) {
                          h["step"]["data_offsets"] = {0, 8};
                        }),
                        "overlap");
  expect_error_mentions(rewrite([](nlohmann::json& h) { h["step"].erase("shape"); }), "malformed");
  // Shapes whose size overflows, or that promise more than the file holds, are refused before
  // anything is allocated, naming the promise and the size.
  expect_error_mentions(rewrite([](nlohmann::json& h) {
                          h["encoder.0.weight"]["shape"] = {4294967296ull, 4294967296ull};
                        }),
                        "needs more than 2^64 bytes");
  expect_error_mentions(
      rewrite([](nlohmann::json& h) { h["encoder.0.weight"]["shape"] = {9223372036854775808ull}; }),
      "beyond int64");
  expect_error_mentions(rewrite([](nlohmann::json& h) {
                          h["encoder.0.weight"]["shape"] = {100000000000ull, 784};
                          h["encoder.0.weight"]["data_offsets"] = {0, 313600000000000ull * 4};
                        }),
                        "outside the file's");
  // 2^62 * 4 bytes wraps to 0 in 64 bits: an empty range must not pass as its size.
  expect_error_mentions(rewrite([](nlohmann::json& h) {
                          h["encoder.0.weight"]["shape"] = {4611686018427387904ull};
                          h["encoder.0.weight"]["data_offsets"] = {0, 0};
                        }),
                        "needs more than 2^64 bytes");
  EXPECT_THROW(read_safetensors("/nonexistent/model.safetensors"), std::runtime_error);
}

// python_ref/torch_vae.py's own reader (used where the safetensors package is absent) reads what
// we write, and rejects a truncated file.
TEST(Safetensors, PythonReferenceReaderAgrees) {
  const std::string source = fusedvae::test::source_dir();
  const fs::path dir = temp_dir("python");
  write_safetensors((dir / "m.safetensors").string(), sample_file());
  const std::vector<unsigned char> good = encode_safetensors(sample_file());
  std::ofstream((dir / "cut.safetensors").string(), std::ios::binary)
      .write(reinterpret_cast<const char*>(good.data()),
             static_cast<std::streamsize>(good.size() - 3));
  const std::string script =
      "import sys; sys.path.insert(0, '" + source +
      "/python_ref'); import torch_vae as t\n"
      "x, meta = t.read_safetensors('" +
      (dir / "m.safetensors").string() +
      "')\n"
      "w = x['encoder.0.weight']\n"
      "assert w.shape == (3, 2) and w.dtype.str == '<f4', w\n"
      "assert w[2, 0] == 1e30 and w[0, 1] == -2.25 and x['step'][0] == 12345678901234\n"
      "assert meta == {'latent_dim': '2', 'activation': 'relu'}, meta\n"
      "try:\n  t.read_safetensors('" +
      (dir / "cut.safetensors").string() +
      "')\n  sys.exit(3)\n"
      "except ValueError as e:\n  assert 'truncated' in str(e), e\n";
  std::ofstream(dir / "check.py") << script;
  EXPECT_EQ(std::system(("python3 " + (dir / "check.py").string()).c_str()), 0);
}

TEST(Safetensors, MissingTensorNamesIt) {
  try {
    sample_file().at("decoder.out.weight", "m.safetensors");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.out.weight"), std::string::npos);
  }
}

// A write that fails half-way (here: the file-size limit, as a full disk would) must leave the
// previous file byte-for-byte and no temporary file behind.
TEST(AtomicWrite, FailedWriteKeepsTheOldFileAndLeavesNoTemporary) {
  const fs::path dir = temp_dir("atomic");
  const fs::path path = dir / "model.safetensors";
  write_file_atomically(path.string(), std::string("old contents"));

  std::signal(SIGXFSZ, SIG_IGN);  // make the over-limit write fail with EFBIG instead of a signal
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string big(1 << 20, 'x');
  bool threw = false;
  try {
    write_file_atomically(path.string(), big);
  } catch (const std::runtime_error& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("unchanged"), std::string::npos) << e.what();
  }
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  EXPECT_TRUE(threw);

  std::ifstream in(path);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(contents, "old contents");
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1) << "a temporary file was left behind";

  write_file_atomically(path.string(), std::string("new"));
  std::ifstream again(path);
  std::string replaced((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  EXPECT_EQ(replaced, "new");
}

}  // namespace
}  // namespace fusedvae::io

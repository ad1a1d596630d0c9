// @brief The .npy reader and writer: round trip, dtypes, and clear errors on bad files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "host/io/npy.h"

namespace fusedvae::io {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("fusedvae_test_" + name + "_" + std::to_string(::getpid())))
      .string();
}

TEST(Npy, RoundTripKeepsShapeAndBits) {
  const std::vector<float> values = {1.5f, -2.25f, 3e-38f, 7.0f, 1e30f, -0.0f};
  const std::string path = temp_path("roundtrip.npy");
  write_npy(path, values.data(), {2, 3});
  const NpyArray a = read_npy(path);
  EXPECT_EQ(a.dtype, NpyDtype::kFloat32);
  EXPECT_EQ(a.shape, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(a.to_float32(), values);
  std::remove(path.c_str());
}

TEST(Npy, OneDimensionalShape) {
  const std::vector<float> values = {4.0f, 5.0f, 6.0f};
  const std::string path = temp_path("vector.npy");
  write_npy(path, values.data(), {3});
  EXPECT_EQ(read_npy(path).shape, (std::vector<size_t>{3}));
  std::remove(path.c_str());
}

TEST(Npy, MissingFileNamesThePath) {
  try {
    read_npy("/nonexistent/x.npy");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.npy"), std::string::npos);
  }
}

TEST(Npy, TruncatedDataIsAnError) {
  const std::vector<float> values(100, 1.0f);
  const std::string path = temp_path("truncated.npy");
  write_npy(path, values.data(), {100});
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
  EXPECT_THROW(read_npy(path), std::runtime_error);
  std::remove(path.c_str());
}

TEST(Npy, NotAnNpyFileIsAnError) {
  const std::string path = temp_path("garbage.npy");
  std::ofstream(path) << "this is not numpy";
  EXPECT_THROW(read_npy(path), std::runtime_error);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace fusedvae::io

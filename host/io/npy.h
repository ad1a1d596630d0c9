// @brief Reading and writing NumPy .npy files (format 1.0-3.0, C order, little-endian).
//
// Used for the golden cases the float64 reference writes, for NPY datasets and for exports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fusedvae::io {

enum class NpyDtype { kFloat32, kFloat64, kUint8, kInt32, kInt64 };

struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<size_t> shape;
  std::vector<unsigned char> bytes;  // the raw data, C order

  size_t size() const;  // number of elements
  // The values converted to float32 / float64 (any supported dtype).
  std::vector<float> to_float32() const;
  std::vector<double> to_float64() const;
};

// Throws std::runtime_error with a one-line message naming the file and what is wrong
// (missing, not NPY, unsupported dtype, Fortran order, a negative or malformed shape, a shape whose
// size overflows, a file that holds fewer or more data bytes than the header promises). Sizes are
// checked against the file before anything is allocated.
NpyArray read_npy(const std::string& path);
// The same for a whole file already in memory; `source` names it in messages (fuzzing, tests).
NpyArray decode_npy(const unsigned char* bytes, size_t size, const std::string& source);

void write_npy(const std::string& path, const float* data, const std::vector<size_t>& shape);

}  // namespace fusedvae::io

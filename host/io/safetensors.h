// @brief Reading and writing safetensors files (the Hugging Face format PyTorch users load with
// safetensors.torch.load_file), and atomic file replacement for checkpoints.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header, then the raw tensor data.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the start of the data) and may hold "__metadata__": a map of string to string.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fusedvae::io {

// One tensor. Only float32 ("F32") and uint64 ("U64", for step counters) are written or read.
struct Tensor {
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;  // little-endian raw data, C order

  static Tensor from_floats(const float* data, std::vector<int64_t> shape);
  static Tensor from_u64(const std::vector<uint64_t>& values);
  int64_t element_count() const;
  std::vector<float> to_floats() const;  // throws unless dtype is F32
  std::vector<uint64_t> to_u64() const;  // throws unless dtype is U64
};

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;

  // Throws std::runtime_error naming `source` when the tensor is absent.
  const Tensor& at(const std::string& name, const std::string& source) const;
};

// Serialises to the safetensors byte layout. Tensors are stored in name order; the header is
// padded with spaces to a multiple of 8 bytes so that the data is aligned.
std::vector<unsigned char> encode_safetensors(const SafetensorsFile& file);
// Parses and validates (header length, JSON, dtypes, shapes against offsets, offsets inside the
// data, no overlap). Throws std::runtime_error with a one-line message naming `source`.
SafetensorsFile decode_safetensors(const std::vector<unsigned char>& bytes,
                                   const std::string& source);

void write_safetensors(const std::string& path, const SafetensorsFile& file);  // atomic
SafetensorsFile read_safetensors(const std::string& path);

// Writes `bytes` to a temporary file in the directory of `path`, flushes it to disk (fsync), then
// renames it over `path`, so a crash or a full disk leaves either the old file or the new one,
// never a torn one. On failure the temporary file is removed and std::runtime_error is thrown.
void write_file_atomically(const std::string& path, const void* bytes, size_t size);
inline void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}
std::vector<unsigned char> read_file_bytes(const std::string& path);

}  // namespace fusedvae::io

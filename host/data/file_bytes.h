// @brief Reading a whole data file into memory, inflating it first when it is gzip-compressed
// (detected by the magic bytes 1f 8b, not by the name).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fusedvae::data {

// The file's bytes, decompressed if it is gzip (concatenated members included). Throws
// std::runtime_error "<path>: <problem>" when it cannot be opened or the gzip stream is truncated
// or corrupt.
std::vector<uint8_t> read_file_bytes(const std::string& path);

bool is_gzip(const std::vector<uint8_t>& bytes);

// `bytes` inflated when they are gzip, else unchanged; `source` names them in messages.
std::vector<uint8_t> inflate_if_gzip(std::vector<uint8_t> bytes, const std::string& source);

}  // namespace fusedvae::data

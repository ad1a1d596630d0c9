// @brief safetensors encoding, decoding with full validation, and atomic file replacement.
#include "host/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "host/io/memory_check.h"
#include "host/io/printable.h"

namespace fusedvae::io {
namespace {

// The format is little-endian; every platform we build for (x86-64, aarch64) is too, so tensor
// bytes are plain memcpy of the host values.
static_assert(sizeof(float) == 4, "float32 expected");

size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "U64") return 8;
  return 0;
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error(source + ": " + what);
}

// Header lengths beyond this are not a model we wrote (and would make us allocate wildly).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

}  // namespace

Tensor Tensor::from_floats(const float* data, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = "F32";
  t.shape = std::move(shape);
  t.bytes.resize(static_cast<size_t>(t.element_count()) * 4);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), data, t.bytes.size());
  return t;
}

Tensor Tensor::from_u64(const std::vector<uint64_t>& values) {
  Tensor t;
  t.dtype = "U64";
  t.shape = {static_cast<int64_t>(values.size())};
  t.bytes.resize(values.size() * 8);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

int64_t Tensor::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> Tensor::to_floats() const {
  if (dtype != "F32") throw std::runtime_error("tensor has dtype " + dtype + ", expected F32");
  std::vector<float> out(bytes.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

std::vector<uint64_t> Tensor::to_u64() const {
  if (dtype != "U64") throw std::runtime_error("tensor has dtype " + dtype + ", expected U64");
  std::vector<uint64_t> out(bytes.size() / 8);
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

const Tensor& SafetensorsFile::at(const std::string& name, const std::string& source) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) fail(source, "tensor '" + printable(name) + "' is missing");
  return it->second;
}

std::vector<unsigned char> encode_safetensors(const SafetensorsFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : file.metadata) meta[key] = value;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    if (dtype_size(tensor.dtype) == 0)
      throw std::invalid_argument("safetensors: unsupported dtype " + tensor.dtype + " for " +
                                  name);
    if (tensor.bytes.size() !=
        static_cast<size_t>(tensor.element_count()) * dtype_size(tensor.dtype))
      throw std::invalid_argument("safetensors: tensor " + name +
                                  " has a shape that does not match its data");
    header[name] = {{"dtype", tensor.dtype},
                    {"shape", tensor.shape},
                    {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  std::vector<unsigned char> out(8 + text.size() + offset);
  const uint64_t header_len = text.size();
  std::memcpy(out.data(), &header_len, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  unsigned char* data = out.data() + 8 + text.size();
  for (const auto& [name, tensor] : file.tensors) {
    if (!tensor.bytes.empty()) std::memcpy(data, tensor.bytes.data(), tensor.bytes.size());
    data += tensor.bytes.size();
  }
  return out;
}

SafetensorsFile decode_safetensors(const std::vector<unsigned char>& bytes,
                                   const std::string& source) {
  if (bytes.size() < 8)
    fail(source, "not a safetensors file (shorter than its 8-byte header length)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > bytes.size() - 8)
    fail(source, "not a safetensors file or truncated (header length " +
                     std::to_string(header_len) + " exceeds the file size " +
                     std::to_string(bytes.size()) + ")");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len);
  } catch (const nlohmann::json::exception&) {
    fail(source, "safetensors header is not valid JSON");
  }
  if (!header.is_object()) fail(source, "safetensors header is not a JSON object");

  const size_t data_begin = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_begin;
  SafetensorsFile file;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(source, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail(source, "__metadata__ value '" + printable(key) + "' is not a string");
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets") || !entry["dtype"].is_string() ||
        !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      fail(source, "tensor '" + printable(name) + "' has a malformed header entry");
    Tensor t;
    t.dtype = entry["dtype"].get<std::string>();
    const size_t elem = dtype_size(t.dtype);
    if (elem == 0)
      fail(source, "tensor '" + printable(name) + "' has unsupported dtype " + printable(t.dtype));
    // The shape's byte count, checked for overflow before it is compared with anything.
    uint64_t needed = elem;
    bool overflow = false;
    std::string shown;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) fail(source, "tensor '" + printable(name) + "' has a bad shape");
      const uint64_t n = d.get<uint64_t>();
      if (n > static_cast<uint64_t>(INT64_MAX))
        fail(source, "tensor '" + printable(name) + "' has a dimension beyond int64");
      if (n != 0 && needed > UINT64_MAX / n) overflow = true;
      needed = overflow ? needed : needed * n;
      if (n == 0) needed = 0, overflow = false;
      shown += (shown.empty() ? "" : ", ") + std::to_string(n);
      t.shape.push_back(static_cast<int64_t>(n));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      fail(source, "tensor '" + printable(name) + "' has bad data_offsets");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const std::string tensor =
        "tensor '" + printable(name) + "' (" + t.dtype + ", shape [" + shown + "])";
    if (overflow)
      fail(source, tensor + " needs more than 2^64 bytes; the file holds " +
                       std::to_string(data_size) + " bytes of data");
    if (begin > end || end > data_size)
      fail(source, tensor + " lies at data bytes [" + std::to_string(begin) + ", " +
                       std::to_string(end) + "), outside the file's " + std::to_string(data_size) +
                       " (truncated?)");
    if (end - begin != needed)
      fail(source, tensor + " has " + std::to_string(end - begin) + " bytes, its shape needs " +
                       std::to_string(needed));
    t.bytes.assign(bytes.begin() + data_begin + begin, bytes.begin() + data_begin + end);
    ranges.emplace_back(begin, end);
    file.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail(source, "tensors overlap in the data");
  return file;
}

void write_safetensors(const std::string& path, const SafetensorsFile& file) {
  const std::vector<unsigned char> bytes = encode_safetensors(file);
  write_file_atomically(path, bytes.data(), bytes.size());
}

SafetensorsFile read_safetensors(const std::string& path) {
  return decode_safetensors(read_file_bytes(path), path);
}

std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
  const std::streamoff size = in.tellg();
  if (size < 0) throw std::runtime_error(path + ": cannot determine the file size");
  check_fits_in_memory(path, static_cast<uint64_t>(size), "reading the file");
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw std::runtime_error(path + ": read error");
  return bytes;
}

void write_file_atomically(const std::string& path, const void* bytes, size_t size) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string temp =
      (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error(path + ": cannot create a temporary file (" + std::strerror(errno) +
                             ")");
  auto abandon = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    throw std::runtime_error(path + ": " + what + " (" + std::strerror(err) +
                             "); the previous file is unchanged");
  };
  const auto* p = static_cast<const unsigned char*>(bytes);
  size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      abandon("write failed");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) abandon("fsync failed");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    throw std::runtime_error(path + ": close failed (" + std::string(std::strerror(err)) + ")");
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    throw std::runtime_error(path + ": rename failed (" + std::string(std::strerror(err)) +
                             "); the previous file is unchanged");
  }
  // The rename itself must reach the disk too: fsync the directory (best effort).
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace fusedvae::io

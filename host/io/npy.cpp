// @brief .npy reader and writer.
#include "host/io/npy.h"

#include <cstring>
#include <fstream>
#include <regex>
#include <stdexcept>

namespace fusedvae::io {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLength = 6;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

size_t dtype_size(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32:
      return 4;
    case NpyDtype::kFloat64:
      return 8;
    case NpyDtype::kUint8:
      return 1;
    case NpyDtype::kInt32:
      return 4;
    case NpyDtype::kInt64:
      return 8;
  }
  return 0;
}

NpyDtype parse_dtype(const std::string& path, const std::string& descr) {
  if (descr == "<f4") return NpyDtype::kFloat32;
  if (descr == "<f8") return NpyDtype::kFloat64;
  if (descr == "|u1" || descr == "<u1") return NpyDtype::kUint8;
  if (descr == "<i4") return NpyDtype::kInt32;
  if (descr == "<i8") return NpyDtype::kInt64;
  fail(path, "unsupported NPY dtype '" + descr + "' (float32, float64, uint8, int32, int64 are)");
}

template <typename Out>
std::vector<Out> convert(const NpyArray& a) {
  std::vector<Out> out(a.size());
  const unsigned char* p = a.bytes.data();
  for (size_t i = 0; i < out.size(); ++i) {
    switch (a.dtype) {
      case NpyDtype::kFloat32: {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<Out>(v);
        break;
      }
      case NpyDtype::kFloat64: {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<Out>(v);
        break;
      }
      case NpyDtype::kUint8:
        out[i] = static_cast<Out>(p[i]);
        break;
      case NpyDtype::kInt32: {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<Out>(v);
        break;
      }
      case NpyDtype::kInt64: {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<Out>(v);
        break;
      }
    }
  }
  return out;
}

}  // namespace

size_t NpyArray::size() const {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  return n;
}

std::vector<float> NpyArray::to_float32() const {
  return convert<float>(*this);
}
std::vector<double> NpyArray::to_float64() const {
  return convert<double>(*this);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file");
  char magic[kMagicLength];
  unsigned char version[2];
  if (!in.read(magic, kMagicLength) || std::memcmp(magic, kMagic, kMagicLength) != 0)
    fail(path, "not an NPY file (bad magic)");
  if (!in.read(reinterpret_cast<char*>(version), 2)) fail(path, "truncated NPY header");
  uint32_t header_length = 0;
  if (version[0] == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) fail(path, "truncated NPY header");
    header_length = b[0] | (b[1] << 8);
  } else if (version[0] == 2 || version[0] == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) fail(path, "truncated NPY header");
    header_length = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    fail(path, "unsupported NPY version " + std::to_string(version[0]));
  }
  if (header_length > (1u << 20)) fail(path, "NPY header too long");
  std::string header(header_length, '\0');
  if (!in.read(header.data(), header_length)) fail(path, "truncated NPY header");

  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'")))
    fail(path, "NPY header has no descr");
  NpyArray array;
  array.dtype = parse_dtype(path, m[1]);
  if (!std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*(True|False)")))
    fail(path, "NPY header has no fortran_order");
  if (m[1] == "True") fail(path, "Fortran-order NPY arrays are not supported (save with C order)");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)")))
    fail(path, "NPY header has no shape");
  const std::string dims = m[1];
  std::regex number("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number);
       it != std::sregex_iterator(); ++it)
    array.shape.push_back(std::stoull(it->str()));

  const size_t expected = array.size() * dtype_size(array.dtype);
  array.bytes.resize(expected);
  if (expected > 0 && !in.read(reinterpret_cast<char*>(array.bytes.data()), expected))
    fail(path, "truncated NPY data: expected " + std::to_string(expected) + " bytes");
  return array;
}

void write_npy(const std::string& path, const float* data, const std::vector<size_t>& shape) {
  std::string dims;
  size_t count = 1;
  for (size_t d : shape) {
    dims += std::to_string(d) + ", ";
    count *= d;
  }
  if (shape.size() > 1) dims.erase(dims.size() - 1);  // "3, 4" (a 1-D shape keeps "(3,)")
  if (shape.size() > 1) dims.erase(dims.size() - 1);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = kMagicLength + 4 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path + ": cannot open for writing");
  out.write(kMagic, kMagicLength);
  const unsigned char version[2] = {1, 0};
  out.write(reinterpret_cast<const char*>(version), 2);
  const unsigned char length[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                   static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(length), 2);
  out.write(header.data(), header.size());
  out.write(reinterpret_cast<const char*>(data), count * sizeof(float));
  if (!out) throw std::runtime_error(path + ": write failed");
}

}  // namespace fusedvae::io

// @brief .npy reader and writer.
#include "host/io/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "host/io/memory_check.h"
#include "host/io/printable.h"

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
  fail(path, "unsupported NPY dtype '" + printable(descr) +
                 "' (float32, float64, uint8, int32, int64 are)");
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

// The magic, the version and the header length: 10 bytes (version 1) or 12 (versions 2 and 3).
constexpr size_t kPreambleMax = 12;

size_t preamble_length(unsigned char major_version) {
  return major_version == 1 ? 10 : 12;
}

// Checks the magic and version in the first `size` bytes and returns the header's length.
size_t preamble_header_length(const std::string& path, const unsigned char* b, size_t size) {
  if (size < kMagicLength || std::memcmp(b, kMagic, kMagicLength) != 0)
    fail(path, "not an NPY file (bad magic)");
  if (size < kMagicLength + 2) fail(path, "truncated NPY header");
  const unsigned char major = b[6];
  if (major != 1 && major != 2 && major != 3)
    fail(path, "unsupported NPY version " + std::to_string(major));
  if (size < preamble_length(major)) fail(path, "truncated NPY header");
  const uint32_t length =
      major == 1 ? b[8] | (b[9] << 8)
                 : b[8] | (b[9] << 8) | (b[10] << 16) | (static_cast<uint32_t>(b[11]) << 24);
  if (length > (1u << 20))
    fail(path, "NPY header length " + std::to_string(length) + " is implausible (over 1 MiB)");
  return length;
}

const char* dtype_name(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32:
      return "float32";
    case NpyDtype::kFloat64:
      return "float64";
    case NpyDtype::kUint8:
      return "uint8";
    case NpyDtype::kInt32:
      return "int32";
    case NpyDtype::kInt64:
      return "int64";
  }
  return "?";
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// The position just after `'key':` (or `"key":`) and any blanks in the header dict, or npos.
size_t value_of(const std::string& header, const std::string& key) {
  for (const char quote : {'\'', '"'}) {
    const std::string quoted = quote + key + quote;
    size_t p = header.find(quoted);
    if (p == std::string::npos) continue;
    p += quoted.size();
    while (p < header.size() && is_space(header[p])) ++p;
    if (p >= header.size() || header[p] != ':') return std::string::npos;
    ++p;
    while (p < header.size() && is_space(header[p])) ++p;
    return p;
  }
  return std::string::npos;
}

std::string trimmed(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// The shape tuple's text "(a, b, ...)" -> dimensions. Negative, non-integer or out-of-range
// dimensions are errors naming the shape as the header writes it.
std::vector<size_t> parse_shape(const std::string& path, const std::string& tuple) {
  const std::string shown = "(" + printable(tuple) + ")";
  std::vector<size_t> shape;
  size_t start = 0;
  while (start <= tuple.size()) {
    size_t comma = tuple.find(',', start);
    if (comma == std::string::npos) comma = tuple.size();
    std::string item = trimmed(tuple.substr(start, comma - start));
    const bool last = comma == tuple.size();
    start = comma + 1;
    if (item.empty()) {
      if (last && (shape.size() > 0 || trimmed(tuple).empty())) break;  // "(3,)" and "()"
      fail(path, "NPY shape " + shown + " is malformed");
    }
    if (item[0] == '-') fail(path, "NPY shape " + shown + " has a negative dimension");
    if (item.back() == 'L') item.pop_back();  // Python 2 long literals: (10L, 784L)
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos)
      fail(path, "NPY shape " + shown + " is malformed");
    if (item.size() > 19) fail(path, "NPY shape " + shown + " has a dimension beyond 64 bits");
    shape.push_back(std::stoull(item));
  }
  return shape;
}

// Parses the header dict into `array` (dtype and shape) and returns the data bytes the shape
// promises, after checking them against `data_available` (the file's bytes after the header).
size_t parse_header(const std::string& path, const std::string& header, uint64_t data_available,
                    NpyArray* array) {
  size_t p = value_of(header, "descr");
  if (p == std::string::npos || p >= header.size() || (header[p] != '\'' && header[p] != '"'))
    fail(path, "NPY header has no descr");
  const size_t descr_end = header.find(header[p], p + 1);
  if (descr_end == std::string::npos) fail(path, "NPY header has no descr");
  array->dtype = parse_dtype(path, header.substr(p + 1, descr_end - p - 1));

  p = value_of(header, "fortran_order");
  if (p == std::string::npos) fail(path, "NPY header has no fortran_order");
  if (header.compare(p, 4, "True") == 0)
    fail(path, "Fortran-order NPY arrays are not supported (save with C order)");
  if (header.compare(p, 5, "False") != 0) fail(path, "NPY header has no fortran_order");

  p = value_of(header, "shape");
  if (p == std::string::npos || p >= header.size() || header[p] != '(')
    fail(path, "NPY header has no shape");
  const size_t close = header.find(')', p);
  if (close == std::string::npos) fail(path, "NPY header has no shape");
  const std::string tuple = header.substr(p + 1, close - p - 1);
  array->shape = parse_shape(path, tuple);

  const size_t element = dtype_size(array->dtype);
  uint64_t bytes = element;
  bool overflow = false;
  for (size_t d : array->shape) {
    if (d != 0 && bytes > UINT64_MAX / d) overflow = true;
    bytes = overflow ? bytes : bytes * d;
  }
  bool zero = false;
  for (size_t d : array->shape) zero = zero || d == 0;
  if (zero) bytes = 0;
  const std::string promise = "NPY header promises shape (" + printable(trimmed(tuple)) + ") of " +
                              dtype_name(array->dtype) + ", ";
  if (overflow && !zero)
    fail(path, promise + "more than 2^64 bytes; the file holds " + std::to_string(data_available) +
                   " bytes of data");
  if (bytes != data_available)
    fail(path, promise + std::to_string(bytes) + " bytes of data, the file holds " +
                   std::to_string(data_available) +
                   (bytes > data_available ? " (truncated or a wrong header)"
                                           : " (extra bytes after the data)"));
  return static_cast<size_t>(bytes);
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
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, std::string("cannot open file (") + std::strerror(errno) + ")");
  const std::streamoff file_size = in.tellg();
  if (file_size < 0) fail(path, "cannot determine the file size");
  in.seekg(0);
  unsigned char preamble[kPreambleMax] = {};
  const size_t have = static_cast<size_t>(std::min<std::streamoff>(file_size, kPreambleMax));
  if (!in.read(reinterpret_cast<char*>(preamble), static_cast<std::streamsize>(have)))
    fail(path, "read failed");
  const size_t header_length = preamble_header_length(path, preamble, have);
  const size_t header_begin = preamble_length(preamble[6]);
  if (static_cast<uint64_t>(file_size) < header_begin + header_length)
    fail(path, "truncated NPY header: it promises " + std::to_string(header_length) +
                   " bytes, the file holds " + std::to_string(file_size - header_begin));
  std::string header(header_length, '\0');
  in.seekg(static_cast<std::streamoff>(header_begin));
  if (!in.read(header.data(), static_cast<std::streamsize>(header_length)))
    fail(path, "read failed");
  NpyArray array;
  const size_t data_begin = header_begin + header_length;
  const size_t expected =
      parse_header(path, header, static_cast<uint64_t>(file_size) - data_begin, &array);
  check_fits_in_memory(path, expected, "reading the array");
  array.bytes.resize(expected);
  if (expected > 0 &&
      !in.read(reinterpret_cast<char*>(array.bytes.data()), static_cast<std::streamsize>(expected)))
    fail(path, "read failed");
  return array;
}

NpyArray decode_npy(const unsigned char* bytes, size_t size, const std::string& source) {
  const size_t header_length = preamble_header_length(source, bytes, size);
  const size_t header_begin = preamble_length(bytes[6]);
  if (size < header_begin + header_length)
    fail(source, "truncated NPY header: it promises " + std::to_string(header_length) +
                     " bytes, the file holds " + std::to_string(size - header_begin));
  const std::string header(reinterpret_cast<const char*>(bytes) + header_begin, header_length);
  NpyArray array;
  const size_t data_begin = header_begin + header_length;
  const size_t expected = parse_header(source, header, size - data_begin, &array);
  array.bytes.assign(bytes + data_begin, bytes + data_begin + expected);
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

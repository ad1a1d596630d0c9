// @brief IDX reader: a 4-byte magic (0, 0, element type, rank), rank big-endian uint32
// dimensions, then the elements in C order.
#include "host/data/idx.h"

#include <climits>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "host/data/file_bytes.h"

namespace fusedvae::data {
namespace {

constexpr uint8_t kUnsignedByteType = 0x08;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

struct IdxArray {
  std::vector<size_t> dims;
  std::vector<uint8_t> bytes;  // header included
  size_t data_offset = 0;
};

IdxArray parse_idx(std::vector<uint8_t> file_bytes, const std::string& path, int min_rank,
                   int max_rank) {
  IdxArray a;
  a.bytes = std::move(file_bytes);
  const std::vector<uint8_t>& b = a.bytes;
  if (b.size() < 4) fail(path, "not an IDX file (shorter than the 4-byte magic number)");
  if (b[0] != 0 || b[1] != 0) {
    char magic[16];
    std::snprintf(magic, sizeof magic, "%02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
    fail(path, std::string("not an IDX file (magic bytes ") + magic + ", expected 00 00 08 0N)");
  }
  if (b[2] != kUnsignedByteType) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02x", b[2]);
    fail(path, std::string("unsupported IDX element type ") + type +
                   " (only unsigned bytes, 0x08, are supported)");
  }
  const int rank = b[3];
  if (rank < min_rank || rank > max_rank)
    fail(path, "IDX rank " + std::to_string(rank) + ", expected " + std::to_string(min_rank) +
                   (min_rank == max_rank ? "" : " to " + std::to_string(max_rank)));
  a.data_offset = 4 + 4 * static_cast<size_t>(rank);
  if (b.size() < a.data_offset) fail(path, "truncated IDX header");
  const size_t data_bytes = b.size() - a.data_offset;
  std::string shape;
  for (int i = 0; i < rank; ++i) {
    const uint8_t* p = b.data() + 4 + 4 * i;
    const size_t d = (static_cast<size_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    a.dims.push_back(d);
    shape += (shape.empty() ? "" : " x ") + std::to_string(d);
  }
  size_t elements = 1;
  for (size_t i = 0; i < a.dims.size(); ++i) {
    const size_t d = a.dims[i];
    if (d == 0) fail(path, "IDX dimension " + std::to_string(i) + " is zero");
    if (d > static_cast<size_t>(INT_MAX) || elements > SIZE_MAX / d)
      fail(path, "IDX header promises " + shape +
                     " bytes, beyond what any file holds; the file "
                     "holds " +
                     std::to_string(data_bytes));
    elements *= d;
  }
  if (data_bytes < elements)
    fail(path, "truncated IDX data: the header promises " + shape + " = " +
                   std::to_string(elements) + " bytes, the file holds " +
                   std::to_string(data_bytes));
  if (data_bytes > elements)
    fail(path, "IDX file has " + std::to_string(data_bytes - elements) + " bytes beyond the " +
                   shape + " = " + std::to_string(elements) + " its header describes");
  return a;
}

}  // namespace

Dataset decode_idx(std::vector<uint8_t> file_bytes, const std::string& source) {
  IdxArray images = parse_idx(inflate_if_gzip(std::move(file_bytes), source), source, 2, 3);
  Dataset d;
  d.source = source;
  size_t dim = images.dims[1];
  if (images.dims.size() == 3) {
    d.image_height = static_cast<int>(images.dims[1]);
    d.image_width = static_cast<int>(images.dims[2]);
    dim *= images.dims[2];
  }
  if (dim > static_cast<size_t>(INT_MAX)) fail(source, "IDX rows too long");
  d.rows = static_cast<int>(images.dims[0]);
  d.dim = static_cast<int>(dim);
  d.u8.assign(images.bytes.begin() + images.data_offset, images.bytes.end());
  d.scale = 1.0f / 255.0f;
  d.offset = 0.0f;
  return d;
}

Dataset read_idx(const std::string& images_path, const std::string& labels_path) {
  Dataset d = decode_idx(read_file_bytes(images_path), images_path);
  if (!labels_path.empty()) {
    const IdxArray labels = parse_idx(read_file_bytes(labels_path), labels_path, 1, 1);
    if (labels.dims[0] != static_cast<size_t>(d.rows))
      fail(labels_path, std::to_string(labels.dims[0]) + " labels for " + std::to_string(d.rows) +
                            " images in " + images_path);
    d.labels.assign(labels.bytes.begin() + labels.data_offset, labels.bytes.end());
  }
  return d;
}

}  // namespace fusedvae::data

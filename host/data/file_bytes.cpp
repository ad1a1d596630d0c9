// @brief Whole-file reads with transparent gzip inflation (zlib).
#include "host/data/file_bytes.h"

#include <zlib.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "host/io/memory_check.h"

namespace fusedvae::data {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::vector<uint8_t> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, "cannot determine the file size");
  io::check_fits_in_memory(path, static_cast<uint64_t>(size), "reading the file");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) fail(path, "read failed");
  return bytes;
}

// The gzip trailer stores the uncompressed size modulo 2^32; a corrupt one must not make us
// reserve gigabytes, so the hint is capped by deflate's best ratio (about 1032:1).
size_t inflated_size_hint(const std::vector<uint8_t>& gz) {
  if (gz.size() < 18) return 0;
  const uint8_t* t = gz.data() + gz.size() - 4;
  const size_t stored = t[0] | (t[1] << 8) | (t[2] << 16) | (static_cast<size_t>(t[3]) << 24);
  const size_t cap = gz.size() * 1032;
  return stored < cap ? stored : cap;
}

std::vector<uint8_t> inflate_gzip(const std::string& path, const std::vector<uint8_t>& gz) {
  std::vector<uint8_t> out(inflated_size_hint(gz) + 1);  // + 1 so a full buffer means "maybe more"
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(path, "zlib inflateInit2 failed");
  struct InflateEnd {
    z_stream* zs;
    ~InflateEnd() { inflateEnd(zs); }
  } end_on_exit{&zs};
  size_t consumed = 0, produced = 0;
  int status = Z_OK;
  while (true) {
    if (produced == out.size()) {
      io::check_fits_in_memory(path, out.size() * 2 + 4096, "inflating the gzip data");
      out.resize(out.size() * 2 + 4096);
    }
    // zlib counts in 32-bit uInt: feed and drain in chunks of at most 1 GiB.
    const size_t in_chunk = std::min<size_t>(gz.size() - consumed, size_t{1} << 30);
    const size_t out_chunk = std::min<size_t>(out.size() - produced, size_t{1} << 30);
    zs.next_in = const_cast<Bytef*>(gz.data() + consumed);
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(out_chunk);
    status = inflate(&zs, Z_NO_FLUSH);
    consumed += in_chunk - zs.avail_in;
    produced += out_chunk - zs.avail_out;
    if (status == Z_STREAM_END) {
      // Another gzip member may follow (files made with `cat a.gz b.gz`).
      if (consumed + 2 <= gz.size() && gz[consumed] == 0x1f && gz[consumed + 1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (status == Z_DATA_ERROR || status == Z_NEED_DICT || status == Z_MEM_ERROR) {
      fail(path, std::string("corrupt gzip data (") + (zs.msg ? zs.msg : "inflate error") + ")");
    }
    // Z_BUF_ERROR with input left means the output was full; without input, the stream ended early.
    const bool input_exhausted = consumed == gz.size();
    const bool output_full = produced == out.size();
    if (input_exhausted && !output_full)
      fail(path, "truncated gzip file (the compressed stream ends early)");
    // zlib reports a stall (no progress possible) as Z_BUF_ERROR; with room left it cannot recover.
    if (status == Z_BUF_ERROR && !output_full)
      fail(path, "corrupt gzip data (inflate made no progress)");
  }
  out.resize(produced);
  return out;
}

}  // namespace

bool is_gzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<uint8_t> inflate_if_gzip(std::vector<uint8_t> bytes, const std::string& source) {
  return is_gzip(bytes) ? inflate_gzip(source, bytes) : bytes;
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  return inflate_if_gzip(read_raw(path), path);
}

}  // namespace fusedvae::data

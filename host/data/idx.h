// @brief The IDX format of MNIST and Fashion-MNIST (raw or gzipped): unsigned-byte images
// [n, h, w] (or rows [n, d]) and unsigned-byte labels [n].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host/data/dataset.h"

namespace fusedvae::data {

// Images as uint8 rows of h * w values, with image_height/width set for 3-D files; labels from
// `labels_path` when it is not empty. scale/offset are left for the caller (load_splits) to set.
// Throws std::runtime_error "<file>: <problem>" for a bad magic number, an element type other
// than unsigned byte, wrong rank, zero dimensions, truncated or oversized data, or a label count
// that differs from the image count.
Dataset read_idx(const std::string& images_path, const std::string& labels_path);
// The same for an image file already in memory (raw or gzip bytes, no labels); `source` names it.
Dataset decode_idx(std::vector<uint8_t> file_bytes, const std::string& source);

}  // namespace fusedvae::data

// @brief A dataset held in memory as it was stored (uint8 or float32), with the affine map that
// normalises it to [0, 1]. The GPU trainer uploads it once and normalises each batch in the gather
// kernel; the CPU trainer does the same with the CPU twin.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fusedvae {

struct Dataset {
  std::string source;  // where it came from, for messages
  int rows = 0;
  int dim = 0;
  int image_height = 0;  // > 0 when the rows are images (IDX); used for pictures
  int image_width = 0;
  // Exactly one of these holds rows * dim values, row-major.
  std::vector<uint8_t> u8;
  std::vector<float> f32;
  // normalised = raw * scale + offset, in [0, 1]. uint8: 1/255, 0. float: min-max of the train
  // split.
  float scale = 1.0f;
  float offset = 0.0f;
  std::vector<int32_t> labels;  // empty when the format has none

  bool is_u8() const { return !u8.empty(); }
  float normalised(size_t row, int col) const;
};

struct DataSplits {
  Dataset train;
  Dataset validation;  // may be empty (rows == 0)
  Dataset test;
};

}  // namespace fusedvae

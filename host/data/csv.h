// @brief Datasets stored as comma-separated numbers (optionally gzipped), one row per line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host/data/dataset.h"

namespace fusedvae::data {

// The first non-blank line is a header when any of its cells is not a number; blank lines are
// skipped. `label_column` (empty = no labels) is a 0-based column index or, with a header, a
// column name; that column becomes the labels (whole numbers) and the rest the float32 data.
// Throws std::runtime_error naming the file and line for ragged rows, non-numeric cells, NaN/Inf
// or out-of-range values, and an unknown label column; naming the file for an empty file.
Dataset read_csv_dataset(const std::string& path, const std::string& label_column);
// The same for text already in memory (inflated); `source` names it in messages.
Dataset decode_csv(const std::vector<uint8_t>& text, const std::string& source,
                   const std::string& label_column);

}  // namespace fusedvae::data

// @brief Datasets stored as NumPy .npy arrays: float32, float64 or uint8, C order, [n, d] or
// images [n, h, w] (flattened to n rows of h * w), with optional labels [n] in a second file.
#pragma once

#include <string>

#include "host/data/dataset.h"
#include "host/io/npy.h"

namespace fusedvae::data {

// uint8 arrays are kept as uint8 (scale 1/255); float32/float64 become float32 (float64 values
// must fit float32). Labels: any integer dtype, or floats holding whole numbers, shape [n] or
// [n, 1]. Throws std::runtime_error "<file>: <problem>" for another dtype or rank, zero rows,
// NaN/Inf (naming the first bad row) or a label count that differs from the row count.
Dataset read_npy_dataset(const std::string& data_path, const std::string& labels_path);
// The dataset checks and conversion applied to an array already read (`data_path` for messages).
Dataset npy_dataset_from(const io::NpyArray& array, const std::string& data_path);

}  // namespace fusedvae::data

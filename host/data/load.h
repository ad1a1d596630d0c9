// @brief The data front end: where the train/validation/test splits come from, in which format,
// and how they are normalised to [0, 1].
//
// Sources, the first that applies:
//   1. `train_path` (and optionally `test_path`, `train_labels_path`, `test_labels_path`): files
//      in one format, IDX (MNIST style, raw or .gz), NPY or CSV.
//   2. `directory`: an MNIST-style directory holding train-images-idx3-ubyte and optionally
//      train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each raw or .gz;
//      the "train-images.idx3-ubyte" spelling is accepted too).
//   3. Neither: Fashion-MNIST from the Debian package dataset-fashion-mnist (kFashionMnistDir).
// Giving both a directory and a train path is an error, as are test or label paths without a
// train path.
//
// Validation: `validation_fraction` of the train rows (rounded, at least one when the fraction is
// positive), chosen by the Philox shuffle of (seed, kValidationEpoch), so the same seed always
// holds out the same rows. Both parts keep the file's row order.
//
// Normalisation (Dataset::scale/offset, applied by the gather as raw * scale + offset, clipped to
// [0, 1]) is decided by the TRAIN split (after the validation rows are taken out) and copied to
// every split:
//   - uint8 train data: scale 1/255, offset 0;
//   - float train data: min-max over all its values, scale = 1 / (max - min), offset = -min *
//     scale, so train values span exactly [0, 1]. Validation/test values outside the train range
//     are clipped. All-equal train data (max == min) gets scale 1, offset -min: the train values
//     map to 0, with no division by zero.
// All splits must have the same row length (dim).
#pragma once

#include <cstdint>
#include <string>

#include "host/data/dataset.h"

namespace fusedvae {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// The shuffle epoch the validation split is drawn with; training epochs never reach it.
constexpr uint64_t kValidationEpoch = ~uint64_t{0};

enum class DataFormat { kAuto, kIdx, kNpy, kCsv };

struct DataOptions {
  DataFormat format = DataFormat::kAuto;  // kAuto: from each file's extension
  std::string directory;                  // an MNIST-style directory
  std::string train_path;
  std::string train_labels_path;  // IDX / NPY labels; empty = none
  std::string test_path;          // empty = no test split
  std::string test_labels_path;
  std::string label_column;          // CSV: a 0-based index or a header name; empty = no labels
  double validation_fraction = 0.0;  // in [0, 1)
  uint64_t seed = 0;
};

// Throws std::invalid_argument for inconsistent options and std::runtime_error naming the file for
// anything wrong with the data.
DataSplits load_splits(const DataOptions& options);

// One file (plus labels) in the given format, its scale/offset not yet decided for float data.
Dataset load_dataset(const std::string& path, const std::string& labels_path, DataFormat format,
                     const std::string& label_column);

// By extension: .npy -> NPY; .csv, .csv.gz, .txt -> CSV; .gz, -ubyte, .idx* -> IDX.
DataFormat detect_format(const std::string& path);
// "auto", "idx", "npy", "csv"; parse returns false for anything else.
const char* data_format_name(DataFormat format);
bool parse_data_format(const std::string& name, DataFormat* format);

// The train-split normalisation described above, applied to every split.
void set_normalisation(DataSplits* splits);

}  // namespace fusedvae

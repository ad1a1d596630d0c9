// @brief The data front end: resolving sources, the validation split and the normalisation.
#include "host/data/load.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "host/data/csv.h"
#include "host/data/idx.h"
#include "host/data/npy_dataset.h"
#include "host/ops/batch_gather_cpu.h"

namespace fusedvae {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The first of the spellings MNIST distributions use that exists in `dir`, or "".
std::string find_mnist_file(const fs::path& dir, const std::string& stem, const std::string& kind) {
  for (const std::string& name : {stem + "-" + kind, stem + "." + kind})
    for (const std::string& suffix : {std::string(), std::string(".gz")}) {
      const fs::path p = dir / (name + suffix);
      if (fs::is_regular_file(p)) return p.string();
    }
  return "";
}

std::runtime_error fashion_mnist_missing() {
  return std::runtime_error(std::string("Fashion-MNIST not found at ") + kFashionMnistDir +
                            ": install the Debian package dataset-fashion-mnist (bash "
                            "scripts/setup.sh)");
}

struct ResolvedSources {
  std::string train, train_labels, test, test_labels;
  DataFormat format = DataFormat::kAuto;
};

ResolvedSources resolve_sources(const DataOptions& o) {
  ResolvedSources s;
  s.format = o.format;
  if (!o.train_path.empty() && !o.directory.empty())
    throw std::invalid_argument("data: give a directory or a train path, not both");
  if (!o.train_path.empty()) {
    s.train = o.train_path;
    s.train_labels = o.train_labels_path;
    s.test = o.test_path;
    s.test_labels = o.test_labels_path;
    return s;
  }
  if (!o.test_path.empty() || !o.train_labels_path.empty() || !o.test_labels_path.empty())
    throw std::invalid_argument("data: test or label paths given without a train path");
  if (o.format != DataFormat::kAuto && o.format != DataFormat::kIdx)
    throw std::invalid_argument(std::string("data: a directory holds IDX files, not ") +
                                data_format_name(o.format));
  const bool default_dataset = o.directory.empty();
  const fs::path dir = default_dataset ? kFashionMnistDir : o.directory;
  if (!fs::is_directory(dir)) {
    if (default_dataset) throw fashion_mnist_missing();
    throw std::runtime_error(dir.string() + ": not a directory");
  }
  s.train = find_mnist_file(dir, "train-images", "idx3-ubyte");
  if (s.train.empty()) {
    if (default_dataset) throw fashion_mnist_missing();
    throw std::runtime_error(dir.string() +
                             ": no train-images-idx3-ubyte[.gz] (an MNIST-style directory holds "
                             "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                             "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or .gz)");
  }
  s.train_labels = find_mnist_file(dir, "train-labels", "idx1-ubyte");
  s.test = find_mnist_file(dir, "t10k-images", "idx3-ubyte");
  if (!s.test.empty()) s.test_labels = find_mnist_file(dir, "t10k-labels", "idx1-ubyte");
  s.format = DataFormat::kIdx;
  return s;
}

Dataset take_rows(const Dataset& d, const std::vector<int32_t>& rows, const std::string& source) {
  Dataset out;
  out.source = source;
  out.rows = static_cast<int>(rows.size());
  out.dim = d.dim;
  out.image_height = d.image_height;
  out.image_width = d.image_width;
  out.scale = d.scale;
  out.offset = d.offset;
  const size_t dim = static_cast<size_t>(d.dim);
  for (int32_t r : rows) {
    const size_t begin = static_cast<size_t>(r) * dim;
    if (d.is_u8())
      out.u8.insert(out.u8.end(), d.u8.begin() + begin, d.u8.begin() + begin + dim);
    else
      out.f32.insert(out.f32.end(), d.f32.begin() + begin, d.f32.begin() + begin + dim);
    if (!d.labels.empty()) out.labels.push_back(d.labels[r]);
  }
  return out;
}

void split_validation(DataSplits* splits, double fraction, uint64_t seed) {
  Dataset& train = splits->train;
  if (fraction == 0.0) return;
  long held_out = std::lround(fraction * train.rows);
  held_out = std::max(held_out, 1L);
  if (held_out >= train.rows)
    throw std::invalid_argument(train.source + ": a validation fraction of " +
                                std::to_string(fraction) + " leaves no training rows out of " +
                                std::to_string(train.rows));
  std::vector<int32_t> perm(train.rows);
  cpu::shuffle_indices(train.rows, seed, kValidationEpoch, perm.data());
  std::vector<int32_t> validation_rows(perm.begin(), perm.begin() + held_out);
  std::vector<int32_t> train_rows(perm.begin() + held_out, perm.end());
  std::sort(validation_rows.begin(), validation_rows.end());
  std::sort(train_rows.begin(), train_rows.end());
  const std::string source = train.source;
  splits->validation = take_rows(train, validation_rows, source + " (validation split)");
  splits->train = take_rows(train, train_rows, source);
}

}  // namespace

DataFormat detect_format(const std::string& path) {
  const std::string name = lower(fs::path(path).filename().string());
  if (ends_with(name, ".npy")) return DataFormat::kNpy;
  if (ends_with(name, ".csv") || ends_with(name, ".csv.gz") || ends_with(name, ".txt"))
    return DataFormat::kCsv;
  if (ends_with(name, ".gz") || name.find("-ubyte") != std::string::npos ||
      name.find(".idx") != std::string::npos || ends_with(name, "ubyte"))
    return DataFormat::kIdx;
  throw std::invalid_argument(path +
                              ": cannot tell the data format from the file name (.npy, .csv, "
                              "IDX -ubyte[.gz]); give the format explicitly");
}

const char* data_format_name(DataFormat format) {
  switch (format) {
    case DataFormat::kIdx:
      return "idx";
    case DataFormat::kNpy:
      return "npy";
    case DataFormat::kCsv:
      return "csv";
    case DataFormat::kAuto:
    default:
      return "auto";
  }
}

bool parse_data_format(const std::string& name, DataFormat* format) {
  for (DataFormat f : {DataFormat::kAuto, DataFormat::kIdx, DataFormat::kNpy, DataFormat::kCsv})
    if (name == data_format_name(f)) {
      *format = f;
      return true;
    }
  return false;
}

Dataset load_dataset(const std::string& path, const std::string& labels_path, DataFormat format,
                     const std::string& label_column) {
  if (format == DataFormat::kAuto) format = detect_format(path);
  if (format != DataFormat::kCsv && !label_column.empty())
    throw std::invalid_argument(path + ": a label column applies to CSV files only");
  if (format == DataFormat::kCsv && !labels_path.empty())
    throw std::invalid_argument(path + ": CSV labels come from a column, not a labels file");
  switch (format) {
    case DataFormat::kIdx:
      return data::read_idx(path, labels_path);
    case DataFormat::kNpy:
      return data::read_npy_dataset(path, labels_path);
    case DataFormat::kCsv:
    default:
      return data::read_csv_dataset(path, label_column);
  }
}

void set_normalisation(DataSplits* splits) {
  const Dataset& train = splits->train;
  float scale = 1.0f / 255.0f, offset = 0.0f;
  if (!train.is_u8()) {
    const auto [lo, hi] = std::minmax_element(train.f32.begin(), train.f32.end());
    const double min = *lo, range = static_cast<double>(*hi) - *lo;
    // range is exact in double for float inputs, so max maps to 1 up to the float roundings.
    const double s = range > 0.0 ? 1.0 / range : 1.0;
    scale = static_cast<float>(s);
    offset = static_cast<float>(-min * s);
  }
  for (Dataset* d : {&splits->train, &splits->validation, &splits->test}) {
    d->scale = scale;
    d->offset = offset;
  }
}

DataSplits load_splits(const DataOptions& options) {
  // Checked before anything is read, so a typo costs no load time.
  if (!(options.validation_fraction >= 0.0 && options.validation_fraction < 1.0))
    throw std::invalid_argument("data: validation fraction must be in [0, 1), got " +
                                std::to_string(options.validation_fraction));
  const ResolvedSources s = resolve_sources(options);
  DataSplits splits;
  splits.train = load_dataset(s.train, s.train_labels, s.format, options.label_column);
  if (!s.test.empty()) {
    splits.test = load_dataset(s.test, s.test_labels, s.format, options.label_column);
    if (splits.test.dim != splits.train.dim)
      throw std::runtime_error(s.test + ": rows of " + std::to_string(splits.test.dim) +
                               " values, but the train rows (" + s.train + ") have " +
                               std::to_string(splits.train.dim));
  }
  split_validation(&splits, options.validation_fraction, options.seed);
  set_normalisation(&splits);
  return splits;
}

}  // namespace fusedvae

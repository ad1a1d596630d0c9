// @brief The data a run's configuration names, through the data front end (host/data/load.h).
#include <stdexcept>

#include "host/cli/commands.h"
#include "host/data/load.h"

namespace fusedvae::cli {

DataSplits load_run_data(const RunConfig& config) {
  DataOptions options;
  if (!parse_data_format(config.data.format, &options.format))
    throw std::invalid_argument("--format: expected auto, idx, npy or csv, got '" +
                                config.data.format + "'");
  options.directory = config.data.dir;
  options.train_path = config.data.train_file;
  options.train_labels_path = config.data.train_labels;
  options.test_path = config.data.test_file;
  options.test_labels_path = config.data.test_labels;
  options.label_column = config.data.label_column;
  options.validation_fraction = config.data.validation_fraction;
  options.seed = config.train.seed;
  return load_splits(options);
}

std::string run_data_format(const RunConfig& config) {
  if (config.data.train_file.empty()) return data_format_name(DataFormat::kIdx);
  DataFormat format = DataFormat::kAuto;
  if (parse_data_format(config.data.format, &format) && format != DataFormat::kAuto)
    return data_format_name(format);
  return data_format_name(detect_format(config.data.train_file));
}

}  // namespace fusedvae::cli

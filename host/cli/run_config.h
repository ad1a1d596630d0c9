// @brief The resolved configuration of a run: every training, model and data setting under one
// name that is at once the command-line flag (--name) and the config.json key.
//
// Precedence: built-in defaults < --config FILE.json < flags given on the command line. The
// resolved configuration is written to <run-dir>/config.json with every key, so that
// `fusedvae train --config <run-dir>/config.json` reproduces the run.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/train/train_config.h"

namespace CLI {
class App;
}

namespace fusedvae::cli {

// Where the data comes from (host/data/load.h describes the sources and formats).
struct DataFlags {
  std::string dir;              // --data; empty with no --train: Fashion-MNIST (Debian package)
  std::string train_file;       // --train (instead of --data)
  std::string train_labels;     // --train-labels
  std::string test_file;        // --test
  std::string test_labels;      // --test-labels
  std::string label_column;     // --label-column (CSV)
  std::string format = "auto";  // --format
  float validation_fraction = 0.0f;  // --validation-fraction
};

struct RunConfig {
  TrainConfig train;
  DataFlags data;
  std::string device = "auto";  // auto | cpu | gpu
  int log_every = 50;           // steps between loss read-backs (and metrics lines)
};

enum class FieldKind { kInt, kFloat, kString, kBool, kIntList, kUint64 };

// One setting: its flag / key name, help text and how to read and write it as JSON. `set` checks
// the value and throws std::invalid_argument naming the key.
struct Field {
  std::string name;
  FieldKind kind;
  std::string help;
  std::function<nlohmann::json(const RunConfig&)> get;
  std::function<void(RunConfig&, const nlohmann::json&)> set;
};

const std::vector<Field>& run_config_fields();
const Field* find_field(const std::string& name);

// Every key, in the order of run_config_fields().
nlohmann::ordered_json to_json(const RunConfig& config);
// Applies the keys of a JSON object over `config`. Unknown keys, wrong types and bad values are
// std::invalid_argument naming the key (and `source`).
void apply_json(const nlohmann::json& object, const std::string& source, RunConfig* config);
RunConfig read_config_file(const std::string& path, const RunConfig& base);
// A config file may also say where the run goes ("run-dir": "runs/x", as --run-dir; the flag wins).
// It is not a setting of the run, so config.json does not hold it. Empty when absent.
constexpr const char* kRunDirKey = "run-dir";
std::string read_config_run_dir(const std::string& path);
// Cross-field checks (logvar-min < logvar-max, and the like).
void validate(const RunConfig& config);

// Parses a flag's text as the field's kind ("400,200" for lists, true/false/1/0 for booleans).
nlohmann::json parse_flag_value(const Field& field, const std::string& text);
// A float as the shortest decimal that reads back as the same float (0.001, not 0.0010000000475);
// null for NaN and infinities, which JSON cannot hold.
nlohmann::json float_to_json(float value);

// Registers every field as an option of `app`, storing the text of the flags actually given in
// `given` (name -> text); the defaults come from `defaults` and are shown by --help.
class FlagSet {
 public:
  void add_to(CLI::App& app, const RunConfig& defaults);
  // Applies the flags given on the command line over `config`.
  void apply(RunConfig* config) const;
  // Names of the flags given on the command line.
  std::vector<std::string> given() const;
  // Applies the one given flag `name` over `config`.
  static void apply_one(const FlagSet& flags, const std::string& name, RunConfig* config);

 private:
  struct Slot {
    const Field* field;
    std::string text;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<void*> options_;  // CLI::Option*, parallel to slots_

  void apply_slot(size_t i, RunConfig* config) const;
};

}  // namespace fusedvae::cli

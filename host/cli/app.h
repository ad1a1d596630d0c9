// @brief The fusedvae command line (CLI11): subcommands train, eval, sample and reconstruct.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "host/cli/commands.h"
#include "host/cli/dyad_command.h"

namespace fusedvae::cli {

struct CommandLine {
  std::string
      command;  // train | eval | sample | reconstruct | dyad | dyad-score; empty after --help
  TrainRequest train;
  EvalRequest eval;
  SampleRequest sample;
  ReconstructRequest reconstruct;
  DyadRunConfig dyad;
  DyadScoreRequest dyad_score;
  std::string help;  // the help text when --help was asked for
};

// Parses the arguments after the program name. Resolves the train configuration: defaults, then
// --config FILE.json, then the flags given; with --resume RUN_DIR the run's own config.json, where
// only --epochs, --device and --log-every may differ. Throws std::invalid_argument (one line) on
// any bad flag or value.
CommandLine parse_command_line(const std::vector<std::string>& args);

// The configuration --resume RUN_DIR continues: the run's config.json, with each setting named in
// `given` applied by `apply` where it may differ on resume (epochs, device, log-every); any other
// that would change the run's trajectory is std::invalid_argument naming it. (The CLI's flags and
// fusedvae.train's keyword settings both come through here.)
RunConfig resume_config(const std::string& run_dir, const std::vector<std::string>& given,
                        const std::function<void(const std::string&, RunConfig*)>& apply);

// Parses and runs. Returns the process exit code; errors are thrown (main reports them).
int run_cli(const std::vector<std::string>& args, std::ostream& out, bool terminal,
            const DataLoader& loader);

}  // namespace fusedvae::cli

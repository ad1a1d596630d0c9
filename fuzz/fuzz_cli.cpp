// @brief libFuzzer harness: the command line. The input is split at NUL bytes into arguments and
// parsed as `fusedvae ARGS...` would parse them (nothing is trained or written: parsing resolves
// the configuration only; --config and --resume may read files).
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "host/cli/app.h"

FUSEDVAE_FUZZ_TARGET(cli) {
  std::vector<std::string> args(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0')
      args.emplace_back();
    else
      args.back().push_back(static_cast<char>(data[i]));
  }
  fusedvae::fuzz::expect_no_crash([&] { fusedvae::cli::parse_command_line(args); });
  return 0;
}

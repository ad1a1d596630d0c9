// @brief The fusedvae executable: runs the command line and turns any error into one line.
#include <unistd.h>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "host/cli/app.h"
#include "host/cli/stop_signals.h"
#include "host/io/printable.h"

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    return fusedvae::cli::run_cli(args, std::cout, isatty(STDOUT_FILENO) != 0,
                                  fusedvae::cli::load_run_data);
  } catch (const fusedvae::cli::Stopped& e) {
    std::cout.flush();
    std::cerr << "fusedvae: " << e.what() << std::endl;
    return 128 + e.signal;
  } catch (const std::exception& e) {
    std::cout.flush();
    // One line whatever the message quotes (the messages escape input text themselves too).
    std::cerr << "fusedvae: error: " << fusedvae::io::printable(e.what(), 2000) << std::endl;
    return 1;
  }
}

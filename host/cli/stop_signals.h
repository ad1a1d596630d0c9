// @brief A clean stop on SIGINT (Ctrl-C) and SIGTERM: training finishes the step it is in, keeps
// its last checkpoint and says how to resume.
#pragma once

#include <csignal>
#include <stdexcept>
#include <string>

namespace fusedvae::cli {

// While one exists, SIGINT and SIGTERM only record that a stop was asked for; a second signal ends
// the process at once (the default action), which the checkpoints survive. The previous handlers
// come back when it is destroyed.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // 0, or the number of the first signal received.
  static int requested();

 private:
  struct sigaction saved_int_ {};
  struct sigaction saved_term_ {};
};

// Thrown when a run stops on a signal; main prints the message and exits with 128 + signal.
struct Stopped : std::runtime_error {
  Stopped(const std::string& message, int signal) : std::runtime_error(message), signal(signal) {}
  int signal;
};

const char* signal_name(int signal);

}  // namespace fusedvae::cli

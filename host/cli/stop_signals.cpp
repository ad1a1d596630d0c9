// @brief SIGINT/SIGTERM recorded in a flag that the training loop reads at step boundaries.
#include "host/cli/stop_signals.h"

namespace fusedvae::cli {
namespace {

volatile std::sig_atomic_t g_requested = 0;

extern "C" void record_stop(int signal) {
  if (g_requested == 0) g_requested = signal;
  // The next one takes the default action: a user who presses Ctrl-C twice means it.
  std::signal(signal, SIG_DFL);
}

}  // namespace

StopSignals::StopSignals() {
  g_requested = 0;
  struct sigaction action {};
  action.sa_handler = record_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &saved_int_);
  sigaction(SIGTERM, &action, &saved_term_);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &saved_int_, nullptr);
  sigaction(SIGTERM, &saved_term_, nullptr);
}

int StopSignals::requested() {
  return g_requested;
}

const char* signal_name(int signal) {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "a signal";
  }
}

}  // namespace fusedvae::cli

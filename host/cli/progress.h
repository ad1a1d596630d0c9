// @brief What the user sees while training: one carriage-return-updated progress bar per epoch
// on a terminal, plain log lines otherwise (pipes, files, CI logs).
#pragma once

#include <ostream>
#include <string>

namespace fusedvae::cli {

struct ProgressSample {
  int batch = 0;  // batches done in this epoch
  double images_per_s = 0;
  double eta_s = 0;                                           // for the rest of the epoch
  double loss = 0, recon = 0, kl = 0, kl_weight = 0, lr = 0;  // of the last logged step
  double running_loss = 0;  // mean of the epoch's logged losses so far
  unsigned long long step = 0;
};

class Progress {
 public:
  Progress(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {}
  // Ends a bar left on screen (an error stopped the epoch) so the error starts on its own line.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void begin_epoch(int epoch, int epochs, int batches);
  void update(const ProgressSample& s);
  // Ends the epoch's bar (if any) and prints the summary line.
  void end_epoch(const std::string& summary);
  // Prints a line of its own without breaking a bar in progress.
  void note(const std::string& line);
  // Ends a bar in progress with a newline (nothing for plain lines), before text on stderr.
  void break_line();

 private:
  std::ostream& out_;
  bool terminal_;
  int epoch_ = 0, epochs_ = 0, batches_ = 0;
  size_t last_width_ = 0;  // characters of the bar on screen, to blank leftovers
};

std::string format_duration(double seconds);  // "1:05", "1:02:03"

}  // namespace fusedvae::cli

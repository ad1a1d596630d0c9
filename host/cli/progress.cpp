// @brief Progress bar and plain progress lines.
#include "host/cli/progress.h"

#include <cmath>
#include <cstdio>

namespace fusedvae::cli {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long total = std::lround(seconds);
  char text[32];
  if (total >= 3600)
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, (total / 60) % 60,
                  total % 60);
  else
    std::snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
  return text;
}

Progress::~Progress() {
  if (terminal_ && last_width_ > 0) out_ << '\n' << std::flush;
}

void Progress::begin_epoch(int epoch, int epochs, int batches) {
  epoch_ = epoch;
  epochs_ = epochs;
  batches_ = batches;
  last_width_ = 0;
}

void Progress::update(const ProgressSample& s) {
  char line[256];
  if (terminal_) {
    constexpr int kBarWidth = 24;
    const int filled =
        batches_ > 0 ? static_cast<int>(kBarWidth * static_cast<double>(s.batch) / batches_) : 0;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < kBarWidth) bar += '>';
    bar.resize(kBarWidth, ' ');
    std::snprintf(line, sizeof line, "epoch %d/%d [%s] %d/%d  %.0f img/s  ETA %s  loss %.3f",
                  epoch_ + 1, epochs_, bar.c_str(), s.batch, batches_, s.images_per_s,
                  format_duration(s.eta_s).c_str(), s.running_loss);
    std::string text = line;
    const size_t width = text.size();
    if (width < last_width_) text.append(last_width_ - width, ' ');
    last_width_ = width;
    out_ << '\r' << text << std::flush;
  } else {
    std::snprintf(
        line, sizeof line,
        "epoch %d/%d step %llu (%d/%d) loss %.4f recon %.4f kl %.4f kl_weight %.4g lr %.4g "
        "%.0f img/s",
        epoch_ + 1, epochs_, s.step, s.batch, batches_, s.loss, s.recon, s.kl, s.kl_weight, s.lr,
        s.images_per_s);
    out_ << line << '\n' << std::flush;
  }
}

void Progress::end_epoch(const std::string& summary) {
  if (terminal_ && last_width_ > 0) out_ << '\r' << std::string(last_width_, ' ') << '\r';
  last_width_ = 0;
  out_ << summary << '\n' << std::flush;
}

void Progress::break_line() {
  if (terminal_ && last_width_ > 0) out_ << '\n' << std::flush;
  last_width_ = 0;
}

void Progress::note(const std::string& line) {
  if (terminal_ && last_width_ > 0) out_ << '\n';
  last_width_ = 0;
  out_ << line << '\n' << std::flush;
}

}  // namespace fusedvae::cli
